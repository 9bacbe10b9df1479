package agent_test

import (
	"encoding/json"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// TestReportedShape checks the $edgeAgent reported properties against the
// fields IoT Edge's agent writes (its doc/reported_states_during_deployment.md):
// what tools compare to tell a deployment succeeded.
func TestReportedShape(t *testing.T) {
	f := agenttest.New(t, runtime.KindProcess)
	f.Deploy(t, map[string]any{"m1": mod1(f, "1")})
	r := f.Start(t, func(c *agent.Config) { c.BrokerRunning = func() bool { return true } })
	defer r.Stop(t)
	agenttest.Eventually(t, 20*time.Second, "m1 running at the hub", func() bool {
		return str(f.ModuleReported(t, "m1")["runtimeStatus"]) == "running" && f.Reported(t)["lastDesiredStatus"] != nil
	})
	b, _ := json.Marshal(f.Reported(t))
	var rep struct {
		SchemaVersion      string
		Version            struct{ Version, Commit string }
		LastDesiredVersion int64
		LastDesiredStatus  struct{ Code int }
		Runtime            struct {
			Type     string
			Platform struct{ OS, Architecture string }
		}
		SystemModules map[string]struct {
			RuntimeStatus, Status, RestartPolicy, Type, LastStartTimeUtc string
			Settings                                                     struct{ Image string }
		}
		Modules map[string]struct {
			RuntimeStatus, Status, RestartPolicy, Type, Version, LastStartTimeUtc string
			RestartCount                                                          *int
			Settings                                                              struct{ Image, ImageHash string }
			ImageDigest                                                           string
		}
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.SchemaVersion != agent.ReportedSchemaVersion || rep.Version.Version == "" || rep.LastDesiredStatus.Code != 200 || rep.LastDesiredVersion < 1 ||
		rep.Runtime.Platform.OS != goruntime.GOOS || rep.Runtime.Platform.Architecture != goruntime.GOARCH || rep.Runtime.Type != "process" {
		t.Errorf("reported: %s", b)
	}
	for _, name := range []string{"edgeAgent", "edgeHub"} {
		s := rep.SystemModules[name]
		if s.RuntimeStatus != "running" || s.Type != "docker" || s.Settings.Image == "" || s.LastStartTimeUtc == "" {
			t.Errorf("systemModules.%s = %+v", name, s)
		}
	}
	if hub := rep.SystemModules["edgeHub"]; hub.Status != "running" || hub.RestartPolicy != "always" {
		t.Errorf("systemModules.edgeHub = %+v", hub)
	}
	// A deployment succeeded, by IoT Edge's rule: desired status = runtimeStatus, desired image = reported image.
	m := rep.Modules["m1"]
	if m.Status != "running" || m.RuntimeStatus != m.Status || m.Settings.Image != f.Image || m.RestartPolicy != "always" || m.Type != "docker" ||
		m.Version != "1" || m.RestartCount == nil || m.LastStartTimeUtc == "" || m.Settings.ImageHash == "" || m.Settings.ImageHash != m.ImageDigest {
		t.Errorf("modules.m1 = %+v", m)
	}
}
