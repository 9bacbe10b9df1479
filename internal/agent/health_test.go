package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/agent/agenttest"
)

// TestHealthChecks runs modules with health checks on each runtime: one that
// stays healthy, one that turns unhealthy under on-unhealthy (stopped and
// restarted, counted), one that turns unhealthy under on-failure (reported,
// left running), and one whose failures fall in its start period.
func TestHealthChecks(t *testing.T) {
	for _, kind := range agenttest.Kinds(t) {
		t.Run(kind, func(t *testing.T) { testHealthChecks(t, kind) })
	}
}

func testHealthChecks(t *testing.T, kind string) {
	f := agenttest.New(t, kind)
	checked := func(policy string, healthyFor time.Duration, startPeriod time.Duration) map[string]any {
		until := time.Now().Add(healthyFor).UnixMilli()
		return map[string]any{"image": f.Image, "restartPolicy": policy, "createOptions": map[string]any{
			"Healthcheck": map[string]any{
				"Test":        []string{"CMD", "/mod", "healthy-until", fmt.Sprint(until)},
				"Interval":    int64(100 * time.Millisecond),
				"Timeout":     int64(5 * time.Second),
				"StartPeriod": int64(startPeriod),
				"Retries":     2,
			}}}
	}
	f.Deploy(t, map[string]any{
		"fine":    checked("on-unhealthy", time.Hour, 0),
		"sick":    checked("on-unhealthy", 2*time.Second, 0),
		"ailing":  checked("on-failure", 2*time.Second, 0),
		"patient": checked("on-unhealthy", 0, time.Hour),
	})
	r := f.Start(t, nil)
	agenttest.Eventually(t, 30*time.Second, "all four running", func() bool {
		for _, m := range r.Agent.Modules() {
			if m.RuntimeStatus != agent.StatusRunning {
				return false
			}
		}
		return len(r.Agent.Modules()) == 4
	})
	fine, _ := r.Module("fine")
	ailing, _ := r.Module("ailing")

	agenttest.Eventually(t, 30*time.Second, "ailing reported unhealthy at the hub, naming the check's output", func() bool {
		m := f.ModuleReported(t, "ailing")
		return str(m["runtimeStatus"]) == "unhealthy" &&
			strings.Contains(str(m["statusDescription"]), "2 health checks failed in a row") &&
			strings.Contains(str(m["statusDescription"]), "exited with code 1: unhealthy since")
	})
	if m, _ := r.Module("ailing"); m.Pid != ailing.Pid || m.RestartCount != 0 {
		t.Errorf("ailing (on-failure) was restarted for being unhealthy: %+v", m)
	}
	agenttest.Eventually(t, 30*time.Second, "sick restarted for being unhealthy, at the hub", func() bool {
		m := f.ModuleReported(t, "sick")
		return num(m["restartCount"]) >= 1 && strings.Contains(str(m["statusDescription"]), "unhealthy")
	})
	sick, _ := r.Module("sick")
	t.Logf("sick: %s, %d restarts: %s", sick.RuntimeStatus, sick.RestartCount, sick.Description)

	for _, name := range []string{"fine", "patient"} {
		m, _ := r.Module(name)
		if m.RuntimeStatus != agent.StatusRunning || m.RestartCount != 0 {
			t.Errorf("%s: %+v", name, m)
		}
	}
	// The last check of each, with why it failed.
	if m, _ := r.Module("fine"); m.LastHealthCheck == nil || !m.LastHealthCheck.OK || m.LastHealthCheck.At.IsZero() || m.LastHealthCheck.Output != "" {
		t.Errorf("fine's last health check: %+v", m.LastHealthCheck)
	}
	if m, _ := r.Module("ailing"); m.LastHealthCheck == nil || m.LastHealthCheck.OK ||
		!strings.Contains(m.LastHealthCheck.Output, "exited with code 1: unhealthy since") {
		t.Errorf("ailing's last health check: %+v", m.LastHealthCheck)
	}
	if m, _ := r.Module("fine"); m.Pid != fine.Pid {
		t.Errorf("fine was restarted: pid %d, then %d", fine.Pid, m.Pid)
	}
	if st, err := r.Runtime.State(context.Background(), "ailing"); err != nil || !st.Running {
		t.Errorf("ailing's instance: %+v %v", st, err)
	}
}
