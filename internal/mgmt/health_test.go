package mgmt_test

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// TestLastHealthCheck: GET /modules and the module events carry each
// module's last health check, with why it failed.
func TestLastHealthCheck(t *testing.T) {
	f := agenttest.New(t, runtime.KindProcess)
	f.Deploy(t, map[string]any{"m": map[string]any{"image": f.Image, "restartPolicy": "never", "createOptions": map[string]any{
		"Healthcheck": map[string]any{
			"Test":     []string{"CMD", "/mod", "exit", "3"},
			"Interval": int64(100 * time.Millisecond),
			"Retries":  1000, // failing, never unhealthy: only the result changes
		}}}})
	r := f.Start(t, nil)
	c := serve(t, r)
	ctx := t.Context()
	ch, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failed := func(h *mgmtclient.HealthCheck) bool {
		return h != nil && !h.OK && !h.At.IsZero() && strings.Contains(h.Output, "exited with code 3: exiting with 3")
	}
	ev := waitEvent(t, ch, "a module event with a failed check", func(ev mgmtclient.Event) bool {
		if ev.Type == mgmtclient.EventSnapshot && len(ev.Modules) == 1 {
			return failed(ev.Modules[0].LastHealthCheck)
		}
		return ev.Type == mgmtclient.EventModule && failed(ev.Module.LastHealthCheck)
	})
	mods, err := c.Modules(ctx)
	if err != nil || len(mods) != 1 || !failed(mods[0].LastHealthCheck) || mods[0].Status != "running" {
		t.Fatalf("GET /modules: %+v %v (event: %+v)", mods, err, ev)
	}
}
