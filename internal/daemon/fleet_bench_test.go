package daemon_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/twin"
)

var (
	fleetDevices = flag.Int("fleet.devices", 1000, "BenchmarkFleetRollout: devices in the fleet")
	fleetChanged = flag.Int("fleet.changed", 100, "BenchmarkFleetRollout: devices whose tag changes in each rollout")
	fleetDaemons = flag.Int("fleet.daemons", 5, "BenchmarkFleetRollout: of the changed devices, how many are real daemons (process runtime); the rest are simulated")
)

// BenchmarkFleetRollout measures an automatic deployment's rollout: a hub
// with -fleet.devices devices, every one of them syncing (-fleet.daemons real
// daemons on the process runtime, the others simulated: a long-poll sync and
// a reported upload as the daemon does); two deployments, "ring-a" (module web
// version 1) and "ring-b" (version 2), targeting tags.ring. Each rollout
// moves -fleet.changed devices (the real daemons among them) to the other
// ring and times it until every one of them reports, at the hub, that it runs
// the other deployment: lastDesiredVersion the current one, status 200, web
// running.
//
//	go test -run '^$' -bench FleetRollout -benchtime 5x ./internal/daemon
func BenchmarkFleetRollout(b *testing.B) {
	n, changed, real := *fleetDevices, *fleetChanged, *fleetDaemons
	if changed > n || real > changed {
		b.Fatalf("need -fleet.daemons ≤ -fleet.changed ≤ -fleet.devices")
	}
	f := agenttest.New(b, runtime.KindProcess) // the registry and module image
	h := hubtest.Start(b, hubtest.Options{Limits: hub.Limits{MaxConnsPerIP: -1}})
	owner := h.Client(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ring := range []string{"a", "b"} {
		version := map[string]string{"a": "1", "b": "2"}[ring]
		m, _, err := deployment.Parse(fmt.Appendf(nil, `{"schemaVersion":"1.0","modules":{"web":{"image":%q,"version":%q,"env":{"RING":%q}}}}`, f.Image, version, ring), "m.json")
		if err != nil {
			b.Fatal(err)
		}
		content, err := m.ModulesContent()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := owner.CreateConfiguration(ctx, hubapi.Configuration{ID: "ring-" + ring, TargetCondition: "tags.ring='" + ring + "'", Priority: 1,
			Content: hubapi.ConfigurationContent{ModulesContent: content}}); err != nil {
			b.Fatal(err)
		}
	}
	reg := h.Registry()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		ids[i] = fmt.Sprintf("fleet-%04d", i)
		d, err := reg.CreateDevice(hubapi.Device{DeviceID: ids[i]})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := reg.UpdateTwin(ids[i], "", "", func(t *twin.Twin) (bool, error) {
			return t.PatchTags([]byte(`{"ring":"a"}`), time.Now())
		}); err != nil {
			b.Fatal(err)
		}
		cs := h.DeviceConnectionString(ids[i], "", d.Authentication.SymmetricKey.PrimaryKey)
		if i < real {
			startFleetDaemon(b, h, cs)
			continue
		}
		c, err := hubclient.New(cs, h.CAFile)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			simulateDevice(ctx, c, ids[i])
		}()
	}
	defer wg.Wait()
	defer cancel()
	start := time.Now()
	waitRing(b, reg, ids, "1")
	b.Logf("%d devices, %d real daemons: all run ring-a %v after the last was created", n, real, time.Since(start).Round(time.Millisecond))

	ring := "a"
	b.ResetTimer()
	for range b.N {
		ring = map[string]string{"a": "b", "b": "a"}[ring]
		start := time.Now()
		tagRing(b, owner, ids[:changed], ring)
		waitRing(b, reg, ids[:changed], map[string]string{"a": "1", "b": "2"}[ring])
		b.Logf("%d devices moved to ring-%s: all run it after %v", changed, ring, time.Since(start).Round(time.Millisecond))
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/rollout")
	b.ReportMetric(0, "ns/op")
}

// tagRing sets tags.ring on devices through the hub's API, 10 at a time.
func tagRing(b *testing.B, owner *hubclient.Client, ids []string, ring string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := owner.PatchTwin(context.Background(), id, "", []byte(`{"tags":{"ring":"`+ring+`"}}`), ""); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}

// waitRing waits (up to 5 minutes) until every device's agent reports, at
// the hub, that it runs module web at version.
func waitRing(b *testing.B, reg *registry.Registry, ids []string, version string) {
	deadline := time.Now().Add(5 * time.Minute)
	left := ids
	for len(left) > 0 {
		var still []string
		for _, id := range left {
			if !runsVersion(reg, id, version) {
				still = append(still, id)
			}
		}
		left = still
		if time.Now().After(deadline) {
			b.Fatalf("%d devices still not running web %s after 5 minutes, such as %s", len(left), version, left[0])
		}
		if len(left) > 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func runsVersion(reg *registry.Registry, id, version string) bool {
	t, err := reg.GetTwin(id, registry.AgentModule)
	if err != nil {
		return false
	}
	m, _, err := deployment.FromAgentDesired(t.DesiredJSON())
	if err != nil || m.Modules["web"].Version != version {
		return false
	}
	var rep struct {
		LastDesiredVersion int64 `json:"lastDesiredVersion"`
		LastDesiredStatus  struct {
			Code int `json:"code"`
		} `json:"lastDesiredStatus"`
		Modules map[string]struct {
			RuntimeStatus string `json:"runtimeStatus"`
		} `json:"modules"`
	}
	if json.Unmarshal(t.ReportedJSON(), &rep) != nil {
		return false
	}
	return rep.LastDesiredVersion == t.DesiredVersion() && rep.LastDesiredStatus.Code == 200 && rep.Modules["web"].RuntimeStatus == "running"
}

// startFleetDaemon runs a real daemon for a device until the benchmark ends.
func startFleetDaemon(b *testing.B, h *hubtest.Hub, cs string) {
	sock, err := os.MkdirTemp("", "outpostd")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sock) })
	dir := b.TempDir()
	d, err := daemon.New(daemon.Config{
		ConnectionString: cs, CAFile: h.CAFile, DataDir: dir, Runtime: runtime.KindProcess,
		MgmtSocket: filepath.Join(sock, "mgmt.sock"), GatewayHostName: "gw.test", BrokerListen: "127.0.0.1:0",
		BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second, StopGrace: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("daemon: %v", err)
		}
	})
}

// simulateDevice plays a device as the daemon speaks to the hub: a long-poll
// sync, and for each new deployment in its $edgeAgent twin a reported patch
// saying it runs every module of it.
func simulateDevice(ctx context.Context, c *hubclient.Client, id string) {
	cursor, seq, applied := "", int64(0), int64(0)
	for ctx.Err() == nil {
		s, err := c.Sync(ctx, id, cursor, 30*time.Second)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		cursor = s.Cursor
		for _, raw := range s.Twins {
			var t twin.Twin
			if t.UnmarshalJSON(raw) != nil || t.ModuleID != registry.AgentModule || t.DesiredVersion() == applied {
				continue
			}
			m, _, err := deployment.FromAgentDesired(t.DesiredJSON())
			if err != nil {
				continue
			}
			mods := map[string]any{}
			for name, mod := range m.Modules {
				mods[name] = map[string]any{"runtimeStatus": "running", "version": mod.Version}
			}
			patch, _ := json.Marshal(map[string]any{"lastDesiredVersion": t.DesiredVersion(), "lastDesiredStatus": map[string]any{"code": 200}, "modules": mods})
			seq++
			if _, err := c.UploadReported(ctx, id, hubapi.ReportedBatch{Session: "sim", Patches: []hubapi.ReportedPatch{{Seq: seq, ModuleID: registry.AgentModule, Patch: patch}}}); err == nil {
				applied = t.DesiredVersion()
			}
		}
	}
}
