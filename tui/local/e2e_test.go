package local_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// hang bounds each wait of the end-to-end test: reaching it is a hang, not
// a slow machine.
const hang = 2 * time.Minute

// pane is an `outpost tui` running in a tmux session of its own.
type pane struct {
	t       *testing.T
	socket  string // tmux's server socket, private to the test
	session string
}

func (p *pane) tmux(args ...string) (string, error) {
	out, err := exec.Command("tmux", append([]string{"-S", p.socket}, args...)...).CombinedOutput()
	return string(out), err
}

// capture is what the pane shows now.
func (p *pane) capture() string {
	out, err := p.tmux("capture-pane", "-p", "-t", p.session)
	if err != nil {
		p.t.Fatalf("tmux capture-pane: %v: %s", err, out)
	}
	return out
}

// waitFor waits until the pane shows what ok accepts, and returns it.
func (p *pane) waitFor(what string, ok func(screen string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(hang)
	for {
		s := p.capture()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waiting for %s; the pane shows:\n%s", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *pane) waitText(want ...string) string {
	p.t.Helper()
	return p.waitFor(strings.Join(want, ", "), func(s string) bool {
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	})
}

func (p *pane) keys(keys ...string) {
	p.t.Helper()
	if out, err := p.tmux(append([]string{"send-keys", "-t", p.session}, keys...)...); err != nil {
		p.t.Fatalf("tmux send-keys: %v: %s", err, out)
	}
}

var outboxRe = regexp.MustCompile(`Outbox\s+(\d+) patch`)

var agentTwinRe = regexp.MustCompile(`\$edgeAgent (\d+)/(\d+)(?: ↑(\d+))? hub (\d+)/(\d+)`)

// agentTwin is $edgeAgent's twin as the Twins line shows it: the cached
// desired and reported versions, the reports queued, the hub's versions.
func agentTwin(s string) (d, r, queued, hubD, hubR int, ok bool) {
	m := agentTwinRe.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, 0, 0, 0, false
	}
	n := make([]int, 6)
	for i := 1; i < 6; i++ {
		n[i], _ = strconv.Atoi(m[i])
	}
	return n[1], n[2], n[3], n[4], n[5], true
}

// outbox is the number of patches the pane says wait in the outbox; 0 for
// "empty".
func outbox(s string) (int, bool) {
	if m := outboxRe.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, true
	}
	return 0, strings.Contains(s, "Outbox  empty")
}

// TestEndToEndOffline drives the real binary in tmux against a real hub
// and daemon (process runtime): connected; the hub stopped → offline; the
// outbox rising as $edgeAgent reports the module's restarts (made from the
// view, confirmed); the module's logs; the hub back → the outbox drained to
// 0.
func TestEndToEndOffline(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install -y tmux; scripts/test installs it)")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "outpost")
	build := exec.Command("go", "build", "-o", bin, "./cmd/outpost")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	f := agenttest.New(t, runtime.KindProcess)
	f.Deploy(t, map[string]any{"tempsensor": map[string]any{"image": f.Image, "restartPolicy": "always"}})
	// unix socket paths are short: not under the test's long temp dir
	sockDir, err := os.MkdirTemp("", "tuie2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	mgmtSock := filepath.Join(sockDir, "mgmt.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	brokerAddr := l.Addr().String()
	l.Close()
	log, err := os.Create(filepath.Join(tmp, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(bin, "daemon", "--connection-string", f.DeviceCS, "--ca", f.Hub.CAFile,
		"--data", f.DataDir, "--runtime", f.Kind, "--mgmt-socket", mgmtSock,
		"--broker-listen", brokerAddr, "--gateway-hostname", "localhost", "--log-level", "debug",
		"--restart-backoff", "100ms")
	daemon.Stdout, daemon.Stderr = log, log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		_ = daemon.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("daemon log:\n%s", b)
		}
	})
	mc := mgmtclient.New(mgmtSock)
	agenttest.Eventually(t, hang, "the daemon connected, tempsensor running", func() bool {
		st, err := mc.Status(t.Context())
		if err != nil || !st.Connected {
			return false
		}
		mods, err := mc.Modules(t.Context())
		return err == nil && len(mods) == 1 && mods[0].Status == "running"
	})

	p := &pane{t: t, socket: filepath.Join(sockDir, "tmux"), session: "tui"}
	cmd := fmt.Sprintf("env HOME=%s NO_COLOR=1 TERM=xterm-256color %s tui --mgmt-socket %s; sleep 600", tmp, bin, mgmtSock)
	if out, err := p.tmux("new-session", "-d", "-s", p.session, "-x", "100", "-y", "30", cmd); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = p.tmux("kill-server") })

	p.waitText("● connected", "Device  dev", "tempsensor", "running", "Outbox  empty")

	hubData, hubAddr := f.Hub.DataDir, f.Hub.Addr().String()
	f.Hub.Stop()
	p.waitText("○ offline since", "last error")
	// outpost status says why too
	if out, err := exec.Command(bin, "status", "--mgmt-socket", mgmtSock).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "connected:  no") || !strings.Contains(string(out), "last error: ") {
		t.Errorf("outpost status offline: %v\n%s", err, out)
	}

	// Each restart, confirmed, makes $edgeAgent report the module's status:
	// the reports wait in the outbox.
	last := 0
	for i := range 2 {
		p.keys("R")
		p.waitText("Restart module tempsensor?")
		p.keys("y")
		s := p.waitFor(fmt.Sprintf("the outbox above %d after restart %d", last, i+1), func(s string) bool {
			n, ok := outbox(s)
			return ok && n > last && strings.Contains(s, "held until the hub is back")
		})
		last, _ = outbox(s)
	}
	// $edgeAgent's twin: its reports queued are the outbox's, each one
	// reported $version past the hub's, which are as last seen.
	p.waitFor("$edgeAgent's reports queued, the hub's versions as last seen", func(s string) bool {
		n, _ := outbox(s)
		d, r, q, hd, hr, ok := agentTwin(s)
		return ok && q == n && q > 0 && r == hr+q && d == hd && strings.Contains(s, "hub's last seen")
	})

	// The module's logs, with the hub still away.
	p.keys("L")
	p.waitText("logs of tempsensor", "tick")
	p.keys("Escape")
	p.waitText("MODULE")

	hubtest.Start(t, hubtest.Options{DataDir: hubData, Listen: hubAddr})
	s := p.waitFor("connected, the outbox drained to 0", func(s string) bool {
		n, ok := outbox(s)
		return ok && n == 0 && strings.Contains(s, "● connected")
	})
	if !strings.Contains(s, "last drained") {
		t.Errorf("the outbox line does not say how it drained:\n%s", s)
	}
	// The hub has every report: its versions are the cached ones, current.
	p.waitFor("$edgeAgent's twin at the hub as on the device", func(s string) bool {
		d, r, q, hd, hr, ok := agentTwin(s)
		return ok && q == 0 && d == hd && r == hr && strings.Contains(s, "hub's as of")
	})

	p.keys("q")
	p.waitFor("the tui gone, the shell's screen back", func(s string) bool {
		return !strings.Contains(s, "Outbox")
	})
}
