package moduleclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// TestTwinReportDesired: a module connects through the daemon's workload
// API and broker, reads its twin, reports (the hub sees it), gets each
// desired change made at the hub once and in order, and a bad patch comes
// back as an *Error naming the fault.
func TestTwinReportDesired(t *testing.T) {
	d := newDevice(t)
	d.patchDesired(t, map[string]any{"interval": 5})
	// the daemon has synced the change before the module connects
	agenttest.Eventually(t, 20*time.Second, "the desired property at the device", func() bool {
		tw, err := d.daemon.Syncer().Twin(d.module)
		return err == nil && tw.DesiredVersion() >= 2
	})
	c := d.connect(t)
	var got desiredLog
	c.OnDesired(got.add)

	ctx := t.Context()
	tw, err := c.Twin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tw.Desired.Values["interval"] != float64(5) || tw.Desired.Version < 2 {
		t.Fatalf("twin desired %+v", tw.Desired)
	}
	if _, ok := tw.Reported.Values["$version"]; ok {
		t.Errorf("$version left in the reported values: %v", tw.Reported.Values)
	}

	v1, err := c.UpdateReported(ctx, map[string]any{"interval": 5, "temp": 21.5})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := c.UpdateReported(ctx, struct {
		Temp float64 `json:"temp"`
	}{22})
	if err != nil {
		t.Fatal(err)
	}
	if v2 != v1+1 {
		t.Errorf("reported versions %d then %d", v1, v2)
	}
	agenttest.Eventually(t, 20*time.Second, "the reported properties at the hub", func() bool {
		r := d.hubReported(t)
		return r["temp"] == float64(22) && r["interval"] == float64(5)
	})
	tw, err = c.Twin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tw.Reported.Version != v2 || tw.Reported.Values["temp"] != float64(22) {
		t.Errorf("twin reported %+v, want $version %d", tw.Reported, v2)
	}

	// Desired changes at the hub: each once, in order.
	const n = 5
	for i := 1; i <= n; i++ {
		d.patchDesired(t, map[string]any{"interval": 10 + i})
	}
	d.patchDesired(t, map[string]any{"interval": nil})
	agenttest.Eventually(t, 20*time.Second, "the desired patches", func() bool {
		_, vers := got.snapshot()
		return len(vers) > 0 && vers[len(vers)-1] == tw.Desired.Version+n+1
	})
	patches, vers := got.snapshot()
	// Changes that reach the device together may come as one patch; each
	// comes once, in order, and the last leaves interval removed.
	state := map[string]any{"interval": float64(5)}
	for i, p := range patches {
		if i > 0 && vers[i] <= vers[i-1] {
			t.Errorf("versions out of order: %v", vers)
		}
		for k, v := range p {
			if v == nil {
				delete(state, k)
			} else {
				state[k] = v
			}
		}
	}
	if _, ok := state["interval"]; !ok && len(patches) == n+1 {
		// every change came separately: check each value
		for i := 0; i < n; i++ {
			if patches[i]["interval"] != float64(11+i) {
				t.Errorf("patch %d: %v", i, patches[i])
			}
		}
	}
	if _, ok := state["interval"]; ok {
		t.Errorf("after the patches %v, interval is still %v", patches, state["interval"])
	}

	// Concurrent reports: each answered (its own request id), and the
	// last of each worker's is what the twin has. ($version is not
	// checked for uniqueness: when the device syncs, its twin is the hub's
	// with the queued patches on top, which may number them anew.)
	const workers, each = 8, 20
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				_, err := c.UpdateReported(ctx, map[string]any{fmt.Sprintf("w%d", w): i})
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tw, err = c.Twin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for w := range workers {
		if got := tw.Reported.Values[fmt.Sprintf("w%d", w)]; got != float64(each-1) {
			t.Errorf("w%d is %v after the concurrent reports, want %d", w, got, each-1)
		}
	}
	agenttest.Eventually(t, 20*time.Second, "the concurrent reports at the hub", func() bool {
		r := d.hubReported(t)
		for w := range workers {
			if r[fmt.Sprintf("w%d", w)] != float64(each-1) {
				return false
			}
		}
		return true
	})

	// A bad patch: an *Error with the broker's message; the twin unchanged.
	_, err = c.UpdateReported(ctx, map[string]any{"bad key": 1})
	var me *moduleclient.Error
	if !errors.As(err, &me) || me.Status != 400 || !strings.Contains(me.Error(), "bad key") {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := c.UpdateReported(ctx, []int{1}); err == nil || !strings.Contains(err.Error(), "JSON object") {
		t.Errorf("an array: %v", err)
	}

	// A call whose context ends returns its error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Twin(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Twin: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Twin(ctx); !errors.Is(err, moduleclient.ErrClosed) {
		t.Errorf("Twin after Close: %v", err)
	}
}
