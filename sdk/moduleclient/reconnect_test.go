package moduleclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// TestTokenRenewal: with a 3 s token the client signs a new one through
// the workload API and reconnects with it before the old one expires,
// again and again, while the module keeps reporting; nothing it reports is
// lost.
func TestTokenRenewal(t *testing.T) {
	d := newDevice(t)
	d.setEnv(t)
	ctx := t.Context()
	cfg, err := moduleclient.ConfigFromEnvironment(ctx, moduleclient.WithTokenTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var signs atomic.Int64
	sign := cfg.Signer
	cfg.Signer = func(ctx context.Context, data string) (string, error) {
		signs.Add(1)
		return sign(ctx, data)
	}
	c, err := moduleclient.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	var events []string
	c.OnConnectionChange(func(up bool, why error) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprint(up, " ", why))
	})
	renewals := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range events {
			if strings.Contains(e, "renewing the SAS token") {
				n++
			}
		}
		return n
	}
	i := 0
	agenttest.Eventually(t, 60*time.Second, "three token renewals", func() bool {
		i++
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := c.UpdateReported(rctx, map[string]any{"n": i}); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		return renewals() >= 3
	})
	if s := signs.Load(); s < 4 {
		t.Errorf("%d tokens signed through the workload API, want ≥ 4 (one per connection)", s)
	}
	agenttest.Eventually(t, 20*time.Second, "the last report at the hub", func() bool {
		return d.hubReported(t)["n"] == float64(i)
	})
	mu.Lock()
	t.Logf("%d reports, %d signs, connection events %q", i, signs.Load(), events)
	mu.Unlock()
}

// TestDaemonRestart: the daemon stops and starts again (on the same
// broker address) while a desired change is made at the hub; the client
// reconnects by itself, gets that change once, and reports again.
func TestDaemonRestart(t *testing.T) {
	d := newDevice(t)
	c := d.connect(t)
	var got desiredLog
	c.OnDesired(got.add)
	ctx := t.Context()
	tw, err := c.Twin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateReported(ctx, map[string]any{"before": true}); err != nil {
		t.Fatal(err)
	}
	var downs atomic.Int64
	c.OnConnectionChange(func(up bool, _ error) {
		if !up {
			downs.Add(1)
		}
	})

	d.stop()
	agenttest.Eventually(t, 20*time.Second, "the client to see the broker go", func() bool { return downs.Load() > 0 })
	d.patchDesired(t, map[string]any{"interval": 42})
	// A call whose deadline passes while the daemon is down returns its
	// context's error.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if _, err := c.Twin(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Twin with the daemon down: %v, want the deadline's error", err)
	}
	cancel()
	// A report made while the daemon is down waits for it.
	reported := make(chan error, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		_, err := c.UpdateReported(rctx, map[string]any{"during": true})
		reported <- err
	}()
	d.start(t, nil)

	agenttest.Eventually(t, 60*time.Second, "the desired change made while the daemon was down", func() bool {
		p, _ := got.snapshot()
		return len(p) > 0
	})
	if err := <-reported; err != nil {
		t.Fatalf("report across the restart: %v", err)
	}
	// nothing more comes: the change came once
	if _, err := c.UpdateReported(ctx, map[string]any{"after": true}); err != nil {
		t.Fatal(err)
	}
	patches, vers := got.snapshot()
	if len(patches) != 1 || patches[0]["interval"] != float64(42) || vers[0] != tw.Desired.Version+1 {
		t.Errorf("desired after the restart: %v %v (was $version %d)", patches, vers, tw.Desired.Version)
	}
	agenttest.Eventually(t, 20*time.Second, "the reports at the hub", func() bool {
		r := d.hubReported(t)
		return r["before"] == true && r["during"] == true && r["after"] == true
	})
}
