package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
)

// logsRunning runs outpost logs args… until the test ends.
func logsRunning(t *testing.T, args ...string) (out, errOut *syncBuffer, done chan int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut, done = &syncBuffer{}, &syncBuffer{}, make(chan int, 1)
	ios := &IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut, noColor: true}
	go func() { done <- Run(ctx, ios, append([]string{"logs"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("logs %q exited %d: %s", args, code, errOut)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("logs %q did not stop when cancelled", args)
		}
	})
	return out, errOut, done
}

// TestLogsFollowAcrossRestartAndRecreate: logs -f goes on across a restart
// (outpost restart) and a re-create (a deployment of another image), says
// so on stderr, and prints each instance's lines once.
func TestLogsFollowAcrossRestartAndRecreate(t *testing.T) {
	f := agenttest.New(t, "process")
	f.Deploy(t, map[string]any{"web": map[string]any{"image": f.Image, "version": "1"}})
	sock := startDaemon(t, f)
	agenttest.Eventually(t, 30*time.Second, "web running", func() bool {
		_, out, _ := run(t, "list", "--mgmt-socket", sock)
		return strings.Contains(out, "running")
	})

	out, errOut, done := logsRunning(t, "web", "-f", "--mgmt-socket", sock)
	count := func(s string) int { return strings.Count(out.String(), s+"\n") }
	agenttest.Eventually(t, 20*time.Second, "the first instance's lines", func() bool { return count("ready") == 1 })

	if code, _, e := run(t, "restart", "web", "--mgmt-socket", sock); code != 0 {
		t.Fatalf("restart: %d %s", code, e)
	}
	agenttest.Eventually(t, 30*time.Second, "the restarted instance's lines and the marker", func() bool {
		return count("ready") == 2 && strings.Contains(errOut.String(), "--- web restarted (instance pid ")
	})
	if count("got SIGTERM") != 1 {
		t.Errorf("the first instance's last line is missing or doubled:\n%s", out)
	}

	f.PushImage(t, f.Registry+"/mod:2", "two")
	f.Deploy(t, map[string]any{"web": map[string]any{"image": f.Registry + "/mod:2", "version": "2"}})
	agenttest.Eventually(t, 30*time.Second, "the re-created instance's lines and the marker", func() bool {
		return count("TEST_VARIANT=two") == 1 && count("ready") == 3 && strings.Contains(errOut.String(), "--- web re-created ("+f.Registry+"/mod:2@sha256:")
	})
	select {
	case code := <-done:
		t.Fatalf("logs -f stopped (%d): %s", code, errOut)
	default:
	}
	// Each instance's lines once: the environment is printed once by each.
	if n := count("IOTEDGE_MODULEID=web"); n != 3 {
		t.Errorf("%d instances' first lines, want 3:\n%s", n, out)
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if strings.Contains(out.String(), "---") {
		t.Errorf("a marker on stdout:\n%s", out)
	}
}

// TestLogsAll: --all prints every module's lines prefixed with its name,
// with and without -f; -f on a module not deployed is not found.
func TestLogsAll(t *testing.T) {
	f := agenttest.New(t, "process")
	f.Deploy(t, map[string]any{
		"web":    map[string]any{"image": f.Image},
		"sensor": map[string]any{"image": f.Image},
	})
	sock := startDaemon(t, f)
	agenttest.Eventually(t, 30*time.Second, "both modules' lines", func() bool {
		code, out, _ := run(t, "logs", "--all", "--mgmt-socket", sock)
		return code == 0 && strings.Contains(out, "web    | ready\n") && strings.Contains(out, "sensor | ready\n")
	})
	code, out, _ := run(t, "logs", "--all", "--tail", "1", "--mgmt-socket", sock)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "sensor | ") || !strings.HasPrefix(lines[1], "web    | ") {
		t.Errorf("logs --all --tail 1: %d\n%s", code, out)
	}

	// On a terminal the names are coloured, the lines not.
	ios, _, cout, cerr := TestIO()
	ios.SetTerminal(true, true)
	ios.noColor = false
	if code := Run(context.Background(), ios, []string{"logs", "--all", "--mgmt-socket", sock}); code != 0 {
		t.Fatalf("logs --all on a terminal: %d %s", code, cerr)
	}
	if s := cout.String(); !strings.Contains(s, "\x1b[") || !strings.Contains(s, "\x1b[m | ready\n") {
		t.Errorf("logs --all on a terminal: names not coloured:\n%q", s)
	}

	fout, _, _ := logsRunning(t, "--all", "-f", "--mgmt-socket", sock)
	agenttest.Eventually(t, 20*time.Second, "both modules' lines, followed", func() bool {
		s := fout.String()
		return strings.Contains(s, "web    | IOTEDGE_MODULEID=web\n") && strings.Contains(s, "sensor | IOTEDGE_MODULEID=sensor\n")
	})
	// A module deployed later is followed too.
	f.Deploy(t, map[string]any{
		"web":    map[string]any{"image": f.Image},
		"sensor": map[string]any{"image": f.Image},
		"late":   map[string]any{"image": f.Image},
	})
	agenttest.Eventually(t, 30*time.Second, "the later module's lines", func() bool {
		return strings.Contains(fout.String(), "late   | IOTEDGE_MODULEID=late\n")
	})

	code, _, errOut := run(t, "logs", "nosuch", "-f", "--mgmt-socket", sock)
	if code != ExitNotFound || !strings.Contains(errOut, "no module nosuch") {
		t.Errorf("logs nosuch -f: %d %s", code, errOut)
	}
	code, _, errOut = run(t, "logs", "web", "--all", "--mgmt-socket", sock)
	if code != ExitUsage || !strings.Contains(errOut, "--all takes no MODULE") {
		t.Errorf("logs web --all: %d %s", code, errOut)
	}
}

// TestLogsFollowAcrossDaemonRestart: logs -f outlives its daemon: it says
// when the daemon goes and comes back, and goes on with the module's lines.
func TestLogsFollowAcrossDaemonRestart(t *testing.T) {
	f := agenttest.New(t, "process")
	f.Deploy(t, map[string]any{"web": map[string]any{"image": f.Image}})
	sock := filepath.Join(t.TempDir(), "mgmt.sock")
	args := []string{"daemon", "--connection-string", f.DeviceCS, "--ca", f.Hub.CAFile, "--data", f.DataDir,
		"--runtime", "process", "--mgmt-socket", sock, "--gateway-hostname", "gw.test", "--broker-listen", "127.0.0.1:0"}
	start := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		ios, _, _, errOut := TestIO()
		done := make(chan int, 1)
		go func() { done <- Run(ctx, ios, args) }()
		stopped := false
		stop = func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("daemon exited %d: %s", code, errOut)
				}
			case <-time.After(30 * time.Second):
				t.Error("the daemon did not stop within 30 s")
			}
		}
		t.Cleanup(stop)
		return stop
	}
	stop := start()
	agenttest.Eventually(t, 30*time.Second, "web running", func() bool {
		_, out, _ := run(t, "list", "--mgmt-socket", sock)
		return strings.Contains(out, "running")
	})
	out, errOut, _ := logsRunning(t, "web", "-f", "--mgmt-socket", sock)
	count := func(s string) int { return strings.Count(out.String(), s+"\n") }
	agenttest.Eventually(t, 20*time.Second, "the first instance's lines", func() bool { return count("ready") == 1 })

	stop()
	agenttest.Eventually(t, 20*time.Second, "the marker of the daemon gone", func() bool {
		return strings.Contains(errOut.String(), "--- lost the daemon (")
	})
	start()
	agenttest.Eventually(t, 30*time.Second, "the daemon back and the module's new lines", func() bool {
		return strings.Contains(errOut.String(), "--- the daemon answers again ---") && count("ready") == 2
	})
	if n := count("IOTEDGE_MODULEID=web"); n != 2 {
		t.Errorf("%d instances' first lines, want 2:\n%s\nstderr:\n%s", n, out, errOut)
	}
}
