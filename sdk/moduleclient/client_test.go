package moduleclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
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
	// Eventually, not at once: a sync answer taken before the outbox was
	// acknowledged can leave the device's twin behind its last reports
	// until the next sync (the syncer's apply, reported to the lead).
	agenttest.Eventually(t, 20*time.Second, "the concurrent reports in the twin", func() bool {
		tw, err := c.Twin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for w := range workers {
			if tw.Reported.Values[fmt.Sprintf("w%d", w)] != float64(each-1) {
				return false
			}
		}
		return true
	})
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

// TestNewWithConnectionString: New with a module connection string (its
// key) and the device CA connects; a wrong key, or a module the device
// does not have, is refused at once with the broker's reason rather than
// retried.
func TestNewWithConnectionString(t *testing.T) {
	d := newDevice(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	mod, err := d.f.Owner.GetModule(ctx, d.f.DeviceID, d.module)
	if err != nil {
		t.Fatal(err)
	}
	cs := func(module, key string) string {
		return "HostName=" + d.f.Hub.HostName() + ";DeviceId=" + d.f.DeviceID + ";ModuleId=" + module + ";SharedAccessKey=" + key + ";GatewayHostName=localhost"
	}
	cfg := moduleclient.Config{ConnectionString: cs(d.module, mod.Authentication.SymmetricKey.PrimaryKey), BrokerAddress: d.brokerAddr, CAPEM: d.daemon.CA().TrustBundle()}
	agenttest.Eventually(t, 20*time.Second, "the device to know the module's key", func() bool {
		mods, err := d.daemon.Syncer().Modules()
		return err == nil && len(mods) > 0
	})
	c, err := moduleclient.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateReported(ctx, map[string]any{"by": "key"}); err != nil {
		t.Fatal(err)
	}
	c.Close()

	for _, tc := range []struct {
		cs, want string
	}{
		{cs(d.module, "d3Jvbmcga2V5IHdyb25nIGtleQ=="), "bad user name or password"},
		{cs("nosuch", mod.Authentication.SymmetricKey.PrimaryKey), "not Authorized"},
	} {
		bad := cfg
		bad.ConnectionString = tc.cs
		_, err := moduleclient.New(ctx, bad)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want %q at once", tc.cs, err, tc.want)
		}
	}
	// the device CA is checked: another CA's certificate does not verify
	other := cfg
	other.CAPEM = selfSignedCA(t)
	if _, err := moduleclient.New(ctx, other); err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("another CA: %v", err)
	}
}

// selfSignedCA is a CA certificate (PEM) that issued nothing the broker
// has.
func selfSignedCA(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
