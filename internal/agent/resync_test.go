package agent_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// TestReportedStateSurvivesResets: the hub's copy of the agent's status is
// right again soon after the device's numbering starts over (a daemon on a
// wiped data dir) and after the device identity is deleted and created again
// with the same credentials.
func TestReportedStateSurvivesResets(t *testing.T) {
	f := agenttest.New(t, runtime.KindProcess)
	f.Deploy(t, map[string]any{"m1": mod1(f, "1")})
	r := f.Start(t, nil)
	running := func() bool { return str(f.ModuleReported(t, "m1")["runtimeStatus"]) == "running" }
	agenttest.Eventually(t, 20*time.Second, "m1 running at the hub", running)
	r.Stop(t) // stops m1 and reports it stopped
	if running() {
		t.Fatalf("m1 still running at the hub after the agent stopped it: %v", f.ModuleReported(t, "m1"))
	}

	// Wipe the data dir: the new daemon numbers its patches from 1 again.
	if err := os.RemoveAll(f.DataDir); err != nil {
		t.Fatal(err)
	}
	r = f.Start(t, nil)
	took := agenttest.Eventually(t, 20*time.Second, "m1 running at the hub after a wiped data dir", running)
	t.Logf("wiped data dir: m1 running at the hub %v after the start", took)

	// Delete the device and create it again with the same key: the new $edgeAgent
	// twin starts empty, and must get the whole status, not only what
	// changes from now on.
	cs, err := identity.ParseConnectionString(f.DeviceCS)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.Owner.DeleteDevice(ctx, f.DeviceID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Owner.CreateDevice(ctx, hubapi.Device{DeviceID: f.DeviceID, Authentication: &hubapi.Authentication{Type: "sas",
		SymmetricKey: &hubapi.SymmetricKey{PrimaryKey: cs.SharedAccessKey, SecondaryKey: cs.SharedAccessKey}}}); err != nil {
		t.Fatal(err)
	}
	f.Deploy(t, map[string]any{"m1": mod1(f, "1")})
	took = agenttest.Eventually(t, 20*time.Second, "the whole status in the new $edgeAgent twin", func() bool {
		rep := f.Reported(t)
		rt, _ := rep["runtime"].(map[string]any)
		return running() && rt["platform"] != nil && rep["lastDesiredStatus"] != nil
	})
	t.Logf("re-created device: whole status at the hub %v after the deployment", took)
	r.Stop(t)
}
