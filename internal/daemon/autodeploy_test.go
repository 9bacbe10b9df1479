package daemon_test

import (
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// TestDaemonAutomaticDeployment runs a real daemon (process runtime) on a
// device no deployment targets, then tags the device at the hub: the hub
// applies the automatic deployment whose condition now matches, the daemon
// runs its module, and the deployment's metrics count the device's agent
// reporting success. Tagged out of the condition, the device keeps running it.
func TestDaemonAutomaticDeployment(t *testing.T) {
	f := agenttest.New(t, runtime.KindProcess)
	ctx := t.Context()
	m, _, err := deployment.Parse([]byte(`{"schemaVersion":"1.0","modules":{"web":{"image":"`+f.Image+`","desired":{"greeting":"hi"}}}}`), "m.json")
	if err != nil {
		t.Fatal(err)
	}
	content, err := m.ModulesContent()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Owner.CreateConfiguration(ctx, hubapi.Configuration{
		ID: "north", TargetCondition: "tags.site='north'", Priority: 5,
		Content: hubapi.ConfigurationContent{ModulesContent: content},
	}); err != nil {
		t.Fatal(err)
	}
	cfg := config(t, f)
	start(t, cfg)
	agenttest.Eventually(t, 60*time.Second, "the daemon reports its first (empty) state", func() bool {
		_, ok := f.Reported(t)["lastDesiredStatus"]
		return ok
	})
	if f.ModuleReported(t, "web") != nil {
		t.Fatal("the device runs web before any deployment targets it")
	}

	if _, err := f.Owner.PatchTwin(ctx, f.DeviceID, "", []byte(`{"tags":{"site":"north"}}`), ""); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 60*time.Second, "web running on the device", func() bool {
		return f.ModuleReported(t, "web")["runtimeStatus"] == "running"
	})
	agenttest.Eventually(t, 60*time.Second, "the deployment counts the device as reported successful", func() bool {
		c, err := f.Owner.GetConfiguration(ctx, "north")
		return err == nil && c.SystemMetrics.Results[hubapi.MetricReportedSucceeded] == 1 && c.SystemMetrics.Results[hubapi.MetricApplied] == 1
	})

	// Out of the condition: no longer targeted, still running.
	if _, err := f.Owner.PatchTwin(ctx, f.DeviceID, "", []byte(`{"tags":{"site":"south"}}`), ""); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 60*time.Second, "the deployment no longer targets the device", func() bool {
		c, err := f.Owner.GetConfiguration(ctx, "north")
		return err == nil && c.SystemMetrics.Results[hubapi.MetricTargeted] == 0
	})
	if st := f.ModuleReported(t, "web")["runtimeStatus"]; st != "running" {
		t.Fatalf("web is %v once the device is no longer targeted; it keeps its last deployment", st)
	}
}
