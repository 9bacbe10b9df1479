package moduleclient_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/image"
	"github.com/outpost-edge/outpost/sdk"
	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// TestTempsensor runs the tempsensor fixture (what `outpost init` makes)
// under the daemon: it reports its interval and readings through the SDK,
// and a desired interval set at the hub takes effect without a restart.
func TestTempsensor(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH: the module is built with it")
	}
	d, l := newFixtureWith(t, "tempsensor", func(f *agenttest.Fixture, brokerAddr string) map[string]any {
		return map[string]any{"image": buildTempsensor(t, f.Registry), "restartPolicy": "always",
			"env": map[string]any{"INTERVAL": "1", moduleclient.EnvBrokerAddress: brokerAddr}}
	})
	d.start(t, l)
	running := func() (started time.Time, restarts int) {
		for _, m := range d.daemon.Agent().Modules() {
			if m.Name == "tempsensor" && m.RuntimeStatus == "running" {
				return m.StartedAt, m.RestartCount
			}
		}
		return time.Time{}, -1
	}
	agenttest.Eventually(t, 60*time.Second, "tempsensor's interval and a reading at the hub", func() bool {
		r := d.hubReported(t)
		_, ok := r["reading"].(map[string]any)
		return r["interval"] == float64(1) && ok
	})
	started, restarts := running()
	if restarts != 0 {
		t.Fatalf("tempsensor restarted %d times", restarts)
	}

	d.patchDesired(t, map[string]any{"interval": 0.25})
	agenttest.Eventually(t, 30*time.Second, "the desired interval reported", func() bool {
		return d.hubReported(t)["interval"] == float64(0.25)
	})
	if s, n := running(); !s.Equal(started) || n != 0 {
		t.Errorf("tempsensor was restarted to apply the interval: started %v then %v, %d restarts", started, s, n)
	}
	// readings keep coming at the new interval
	first, _ := d.hubReported(t)["reading"].(map[string]any)
	agenttest.Eventually(t, 30*time.Second, "a newer reading", func() bool {
		r, _ := d.hubReported(t)["reading"].(map[string]any)
		return r != nil && r["timeCreated"] != first["timeCreated"]
	})
}

// buildTempsensor builds fixtures/modules/tempsensor, with the SDK written
// next to it as `outpost init` writes it, for this machine and pushes it to
// registry.
func buildTempsensor(t *testing.T, registry string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../fixtures/modules/tempsensor")); err != nil {
		t.Fatal(err)
	}
	if err := sdk.WriteModule(filepath.Join(dir, sdk.Dir)); err != nil {
		t.Fatal(err)
	}
	m, err := image.LoadModule(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Repository = registry + "/tempsensor"
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	res, err := image.BuildModule(ctx, m, image.BuildOptions{Platforms: []string{"linux/" + goruntime.GOARCH}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	digest, err := image.Push(ctx, res.Reference, res.Artifact(), image.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Reference.Context().Digest(digest.String()).String()
}
