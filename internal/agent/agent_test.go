package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/runtime"
)

func num(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	}
	return -1
}

func str(v any) string { s, _ := v.(string); return s }

func mod1(f *agenttest.Fixture, version string) map[string]any {
	return map[string]any{"image": f.Image, "version": version, "startupOrder": 1, "restartPolicy": "always",
		"env": map[string]any{"TEST_DEPLOYMENT": "d1"}}
}

func mod2(f *agenttest.Fixture) map[string]any {
	return map[string]any{"image": f.Image, "startupOrder": 2, "restartPolicy": "on-failure",
		"createOptions": map[string]any{"Cmd": []string{"exit", "3"}}}
}

// TestDeployment runs a deployment end to end on each runtime: hub, registry,
// agent, real instances.
func TestDeployment(t *testing.T) {
	for _, kind := range agenttest.Kinds(t) {
		t.Run(kind, func(t *testing.T) { testDeployment(t, kind) })
	}
}

func testDeployment(t *testing.T, kind string) {
	f := agenttest.New(t, kind)
	f.Deploy(t, map[string]any{"m1": mod1(f, "1"), "m2": mod2(f)})
	deployed := time.Now()
	r := f.Start(t, nil)

	took := agenttest.Eventually(t, 20*time.Second, "m1 running at the hub", func() bool {
		return str(f.ModuleReported(t, "m1")["runtimeStatus"]) == "running"
	})
	t.Logf("%s: agent start → m1 running, reported at the hub: %v", kind, took)
	_ = deployed
	agenttest.Eventually(t, 10*time.Second, "m1's env in its logs", func() bool {
		return strings.Contains(r.Logs(t, "m1"), "ready")
	})
	logs := r.Logs(t, "m1")
	host := f.Owner.HostName()
	for _, want := range []string{
		"IOTEDGE_DEVICEID=dev", "IOTEDGE_MODULEID=m1", "IOTEDGE_IOTHUBHOSTNAME=" + host,
		"IOTEDGE_GATEWAYHOSTNAME=gw.test", "IOTEDGE_AUTHSCHEME=sasToken", "IOTEDGE_APIVERSION=2019-01-30",
		"IOTEDGE_MODULEGENERATIONID=", "IOTEDGE_WORKLOADURI=unix://", "OUTPOST_DEVICEID=dev", "OUTPOST_MODULEID=m1",
		"TEST_DEPLOYMENT=d1", "TEST_FROM_IMAGE=yes",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("m1's logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "IOTEDGE_MODULEGENERATIONID=\n") {
		t.Errorf("no generation id:\n%s", logs)
	}
	// The workload socket exists and answers (501 until the workload API comes).
	sock := filepath.Join(f.DataDir, "workload", "m1", "workload.sock")
	wantURI := "IOTEDGE_WORKLOADURI=unix:///var/run/iotedge/workload.sock"
	if kind == runtime.KindProcess {
		wantURI = "IOTEDGE_WORKLOADURI=unix://" + sock
	}
	if !strings.Contains(logs, wantURI+"\n") {
		t.Errorf("m1's logs lack %q:\n%s", wantURI, logs)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	if resp, err := hc.Get("http://workload/trust-bundle"); err != nil || resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("workload socket: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// m2 exits with 3 at once: back-off, counted, reported, m1 unaffected.
	agenttest.Eventually(t, 20*time.Second, "m2 restarted twice, exit code 3 at the hub", func() bool {
		m := f.ModuleReported(t, "m2")
		return num(m["restartCount"]) >= 2 && num(m["exitCode"]) == 3 && m["lastExitTimeUtc"] != nil
	})
	rep := f.Reported(t)
	if ds, _ := rep["lastDesiredStatus"].(map[string]any); num(ds["code"]) != 200 {
		t.Errorf("lastDesiredStatus = %v", rep["lastDesiredStatus"])
	}
	if num(rep["lastDesiredVersion"]) < 1 {
		t.Errorf("lastDesiredVersion = %v", rep["lastDesiredVersion"])
	}
	m1 := f.ModuleReported(t, "m1")
	if str(m1["runtimeStatus"]) != "running" || !strings.HasPrefix(str(m1["imageDigest"]), "sha256:") || m1["lastStartTimeUtc"] == nil {
		t.Errorf("m1 at the hub: %v", m1)
	}
	first, _ := r.Module("m1")

	// A new version re-creates m1.
	f.Deploy(t, map[string]any{"m1": mod1(f, "2"), "m2": mod2(f)})
	took = agenttest.Eventually(t, 10*time.Second, "m1 re-created", func() bool {
		m, _ := r.Module("m1")
		return m.Version == "2" && m.RuntimeStatus == agent.StatusRunning && m.Pid != first.Pid && m.Pid != 0
	})
	t.Logf("%s: new version at the hub → m1 re-created and running: %v", kind, took)

	// status: stopped.
	stopped := mod1(f, "2")
	stopped["status"] = "stopped"
	f.Deploy(t, map[string]any{"m1": stopped, "m2": mod2(f)})
	agenttest.Eventually(t, 10*time.Second, "m1 stopped at the hub", func() bool {
		return str(f.ModuleReported(t, "m1")["runtimeStatus"]) == "stopped"
	})
	if st, err := r.Runtime.State(context.Background(), "m1"); err != nil || st.Running {
		t.Errorf("m1 after status stopped: %+v %v", st, err)
	}

	// An image that does not exist, and a registry that is down: those
	// modules in back-off, saying why, the others fine.
	missing := f.Registry + "/nosuch:1"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String() + "/mod:1" // nothing listens there once closed
	l.Close()
	f.Deploy(t, map[string]any{"m1": mod1(f, "2"), "m2": mod2(f),
		"m3": map[string]any{"image": missing, "startupOrder": 0},
		"m4": map[string]any{"image": down, "startupOrder": 0}})
	agenttest.Eventually(t, 15*time.Second, "m3 and m4 in back-off naming the image and the cause, m1 running", func() bool {
		m3, m4 := f.ModuleReported(t, "m3"), f.ModuleReported(t, "m4")
		return str(m3["runtimeStatus"]) == "backoff" && strings.Contains(str(m3["statusDescription"]), missing) &&
			str(m4["runtimeStatus"]) == "backoff" && strings.Contains(str(m4["statusDescription"]), down) &&
			strings.Contains(str(m4["statusDescription"]), "connection refused") &&
			str(f.ModuleReported(t, "m1")["runtimeStatus"]) == "running"
	})
	t.Logf("%s: registry down: %s", kind, str(f.ModuleReported(t, "m4")["statusDescription"]))

	// Removing a module stops and removes it.
	f.Deploy(t, map[string]any{"m1": mod1(f, "2")})
	agenttest.Eventually(t, 10*time.Second, "m2, m3 and m4 gone", func() bool {
		mods, _ := f.Reported(t)["modules"].(map[string]any)
		_, has2 := mods["m2"]
		_, has3 := mods["m3"]
		_, has4 := mods["m4"]
		_, err := r.Runtime.State(context.Background(), "m2")
		return !has2 && !has3 && !has4 && err != nil
	})

	// An invalid deployment (written straight into the $edgeAgent twin: the hub
	// checks what `deploy` sends) is refused with 400 naming the field.
	patch := `{"properties":{"desired":{"modules":{"m1":{"restartPolicy":"sometimes"}}}}}`
	if _, err := f.Owner.PatchTwin(context.Background(), f.DeviceID, agent.AgentModule, []byte(patch), ""); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 10*time.Second, "lastDesiredStatus 400", func() bool {
		ds, _ := f.Reported(t)["lastDesiredStatus"].(map[string]any)
		return num(ds["code"]) == 400 && strings.Contains(str(ds["description"]), "modules.m1.restartPolicy")
	})
	// So are invalid createOptions, and a module id the hub would not take.
	patch = `{"properties":{"desired":{"modules":{"m1":{"restartPolicy":"always","settings":{"createOptions":"{\"Healthcheck\":{\"Test\":[\"PING\"]}}"}},` +
		`"bad/id":{"type":"docker","settings":{"image":"x:1"}}}}}}`
	if _, err := f.Owner.PatchTwin(context.Background(), f.DeviceID, agent.AgentModule, []byte(patch), ""); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 10*time.Second, "lastDesiredStatus 400 naming createOptions and the module id", func() bool {
		ds, _ := f.Reported(t)["lastDesiredStatus"].(map[string]any)
		d := str(ds["description"])
		return num(ds["code"]) == 400 && strings.Contains(d, "modules.m1.settings.createOptions.Healthcheck.Test") &&
			strings.Contains(d, "modules.bad/id")
	})
	ds, _ := f.Reported(t)["lastDesiredStatus"].(map[string]any)
	t.Logf("%s: invalid deployment: %s", kind, str(ds["description"]))
	if m, _ := r.Module("m1"); m.RuntimeStatus != agent.StatusRunning {
		t.Errorf("m1 after an invalid deployment: %+v", m)
	}
}

// TestShutdownOrderAndAdopt stops the agent without stopping its modules (a
// crash), starts another over the same data dir (it adopts the instance),
// then stops it (modules stop in reverse startup order).
func TestShutdownOrderAndAdopt(t *testing.T) {
	for _, kind := range agenttest.Kinds(t) {
		t.Run(kind, func(t *testing.T) {
			f := agenttest.New(t, kind)
			a := mod1(f, "1")
			b := mod1(f, "1")
			b["startupOrder"] = 2
			f.Deploy(t, map[string]any{"a": a, "b": b})
			r := f.Start(t, func(c *agent.Config) { c.KeepInstances = true })
			agenttest.Eventually(t, 20*time.Second, "a and b running", func() bool {
				ma, _ := r.Module("a")
				mb, _ := r.Module("b")
				return ma.RuntimeStatus == agent.StatusRunning && mb.RuntimeStatus == agent.StatusRunning
			})
			before, _ := r.Module("a")
			if mb, _ := r.Module("b"); mb.StartedAt.Before(before.StartedAt) {
				t.Errorf("b (startupOrder 2) started at %v, before a (1) at %v", mb.StartedAt, before.StartedAt)
			}
			r.Stop(t)

			r2 := f.Start(t, nil)
			agenttest.Eventually(t, 20*time.Second, "a and b adopted", func() bool {
				ma, _ := r2.Module("a")
				mb, _ := r2.Module("b")
				return ma.RuntimeStatus == agent.StatusRunning && mb.RuntimeStatus == agent.StatusRunning
			})
			after, _ := r2.Module("a")
			if after.Pid != before.Pid {
				t.Errorf("a was re-created, not adopted: pid %d, then %d", before.Pid, after.Pid)
			}
			list, err := r2.Runtime.List(context.Background())
			if err != nil || len(list) != 2 {
				t.Errorf("runtime.List after adoption: %d instances (%v), want 2", len(list), err)
			}

			r2.Stop(t)
			sa, err1 := r2.Runtime.State(context.Background(), "a")
			sb, err2 := r2.Runtime.State(context.Background(), "b")
			if err1 != nil || err2 != nil || sa.Running || sb.Running {
				t.Fatalf("after stop: %+v %v, %+v %v", sa, err1, sb, err2)
			}
			if sb.FinishedAt.After(sa.FinishedAt) {
				t.Errorf("b (startupOrder 2) stopped at %v, after a (1) at %v", sb.FinishedAt, sa.FinishedAt)
			}
		})
	}
}

// TestBackoff checks the back-off formula.
func TestBackoff(t *testing.T) {
	for n, want := range []time.Duration{10, 20, 40, 80, 160, 300, 300} {
		if got := agent.Backoff(10*time.Second, 300*time.Second, n); got != want*time.Second {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want*time.Second)
		}
	}
}

// TestRestartCountReset: an instance that ran for ResetAfter before it exited
// restarts with its count back at 0; one that crashes at once counts up.
func TestRestartCountReset(t *testing.T) {
	f := agenttest.New(t, runtime.KindProcess)
	f.Deploy(t, map[string]any{
		"long":  map[string]any{"image": f.Image, "createOptions": map[string]any{"Cmd": []string{"live", "400ms", "1"}}},
		"short": map[string]any{"image": f.Image, "createOptions": map[string]any{"Cmd": []string{"live", "10ms", "1"}}},
	})
	r := f.Start(t, func(c *agent.Config) {
		c.BackoffBase = 50 * time.Millisecond
		c.BackoffMax = 100 * time.Millisecond
		c.ResetAfter = 300 * time.Millisecond
	})
	agenttest.Eventually(t, 20*time.Second, "short restarted 4 times", func() bool {
		m, _ := r.Module("short")
		return m.RestartCount >= 4
	})
	started := time.Now()
	agenttest.Eventually(t, 20*time.Second, "long restarted", func() bool {
		m, _ := r.Module("long")
		return m.ExitCode != nil && m.RestartCount == 1
	})
	time.Sleep(2*time.Second - time.Since(started)) // several more runs of 400 ms
	if m, _ := r.Module("long"); m.RestartCount > 1 || m.ExitCode == nil {
		t.Errorf("long ran past ResetAfter each time, yet restartCount = %d", m.RestartCount)
	}
}

// TestDeployToRunning measures a new deployment at the hub (a changed
// version) → the module's new instance running, image cached.
func TestDeployToRunning(t *testing.T) {
	for _, kind := range agenttest.Kinds(t) {
		t.Run(kind, func(t *testing.T) {
			f := agenttest.New(t, kind)
			f.Deploy(t, map[string]any{"m": mod1(f, "0")})
			r := f.Start(t, nil)
			agenttest.Eventually(t, 20*time.Second, "m running", func() bool {
				m, _ := r.Module("m")
				return m.RuntimeStatus == agent.StatusRunning
			})
			const n = 10
			var total, worst time.Duration
			var times []time.Duration
			for i := 1; i <= n; i++ {
				prev, _ := r.Module("m")
				start := time.Now()
				f.Deploy(t, map[string]any{"m": mod1(f, fmt.Sprint(i))})
				// Looked at every millisecond: Eventually's 20 ms would add 10 ms on
				// average to what is measured.
				for m, _ := r.Module("m"); m.RuntimeStatus != agent.StatusRunning || m.Pid == 0 || m.Pid == prev.Pid; m, _ = r.Module("m") {
					if time.Since(start) > 10*time.Second {
						t.Fatalf("m not re-created after 10 s: %+v", m)
					}
					time.Sleep(time.Millisecond)
				}
				d := time.Since(start)
				times = append(times, d)
				total += d
				worst = max(worst, d)
			}
			slices.Sort(times)
			t.Logf("%s: deployment applied at the hub → new instance running (old one stopped first), image cached: median %v, mean %v, worst %v over %d",
				kind, (times[n/2-1]+times[n/2])/2, total/n, worst, n)
		})
	}
}

// TestImageGC: an image no module uses any more is removed once older than
// ImageGCAge (from the image store, or on docker from the engine); the one
// in use stays.
func TestImageGC(t *testing.T) {
	for _, kind := range agenttest.Kinds(t) {
		t.Run(kind, func(t *testing.T) { testImageGC(t, kind) })
	}
}

func testImageGC(t *testing.T, kind string) {
	f := agenttest.New(t, kind)
	f.Deploy(t, map[string]any{"m": map[string]any{"image": f.Image}})
	r := f.Start(t, func(c *agent.Config) {
		c.ImageGCAge = time.Nanosecond
		c.ImageGCInterval = 50 * time.Millisecond
	})
	// has tells whether the device still has an image: the image store's, or
	// the engine's.
	has := func(ref string) bool {
		if p, ok := r.Runtime.(runtime.ImagePuller); ok {
			_, err := p.InspectImage(context.Background(), ref)
			return err == nil
		}
		_, err := r.Images.Get(ref)
		return err == nil
	}
	agenttest.Eventually(t, 20*time.Second, "m running", func() bool {
		m, _ := r.Module("m")
		return m.RuntimeStatus == agent.StatusRunning
	})
	time.Sleep(200 * time.Millisecond) // a few GC rounds: the image in use stays
	if !has(f.Image) {
		t.Fatal("the image in use was collected")
	}
	other := f.Registry + "/mod:2"
	f.PushImage(t, other, "2")
	f.Deploy(t, map[string]any{"m": map[string]any{"image": other}})
	agenttest.Eventually(t, 20*time.Second, "the old image collected", func() bool {
		m, _ := r.Module("m")
		return m.Image == other && m.RuntimeStatus == agent.StatusRunning && !has(f.Image)
	})
	if !has(other) {
		t.Error("the image in use was collected")
	}
}

// TestRegistryDownUsesCachedImage: with the registry gone, a module whose
// version changes is re-created from the image the device has (the image
// store's, or the engine's on docker).
func TestRegistryDownUsesCachedImage(t *testing.T) {
	for _, kind := range agenttest.Kinds(t) {
		t.Run(kind, func(t *testing.T) {
			f := agenttest.New(t, kind)
			f.Deploy(t, map[string]any{"m": mod1(f, "1")})
			r := f.Start(t, nil)
			agenttest.Eventually(t, 20*time.Second, "m running", func() bool {
				m, _ := r.Module("m")
				return m.RuntimeStatus == agent.StatusRunning
			})
			first, _ := r.Module("m")
			f.StopRegistry()
			f.Deploy(t, map[string]any{"m": mod1(f, "2")})
			agenttest.Eventually(t, 20*time.Second, "m re-created from the cached image", func() bool {
				m, _ := r.Module("m")
				return m.Version == "2" && m.RuntimeStatus == agent.StatusRunning && m.Pid != 0 && m.Pid != first.Pid
			})
			if m, _ := r.Module("m"); m.ImageDigest != first.ImageDigest {
				t.Errorf("image digest %s, then %s", first.ImageDigest, m.ImageDigest)
			}
		})
	}
}

// TestRegistryCredentials pulls from a registry that wants a password, with
// the deployment's registryCredentials, on each runtime (docker: the engine
// pulls with the credentials the agent hands it); without them the module
// is in back-off with a description that says so.
func TestRegistryCredentials(t *testing.T) {
	for _, kind := range agenttest.Kinds(t) {
		t.Run(kind, func(t *testing.T) {
			f := agenttest.New(t, kind)
			ref := f.PrivateRegistry(t, "deployer", "s3cret")
			host, _, _ := strings.Cut(ref, "/")
			f.DeployManifest(t, map[string]any{"schemaVersion": "1.0",
				"modules": map[string]any{"m": map[string]any{"image": ref}}})
			r := f.Start(t, nil)
			agenttest.Eventually(t, 20*time.Second, "m in back-off for want of credentials", func() bool {
				m, _ := r.Module("m")
				return m.RuntimeStatus == agent.StatusBackoff && m.Description != ""
			})
			m, _ := r.Module("m")
			t.Logf("without credentials: %s", m.Description)
			if !strings.Contains(m.Description, "401") && !strings.Contains(m.Description, "no basic auth credentials") ||
				!strings.Contains(m.Description, "credentials used: none (anonymous)") || strings.Count(m.Description, "pull ") != 1 {
				t.Errorf("the description does not say once that credentials are wanted and none were given: %s", m.Description)
			}
			f.DeployManifest(t, map[string]any{"schemaVersion": "1.0",
				"registryCredentials": map[string]any{"private": map[string]any{"address": host, "username": "deployer", "password": "s3cret"}},
				"modules":             map[string]any{"m": map[string]any{"image": ref}}})
			agenttest.Eventually(t, 30*time.Second, "m running, pulled with the deployment's credentials", func() bool {
				m, _ := r.Module("m")
				return m.RuntimeStatus == agent.StatusRunning && strings.HasPrefix(m.ImageDigest, "sha256:")
			})
		})
	}
}
