// Package e2e drives the real outpost binary's terminal UI in tmux against
// a real hub: what a user sees and types, keys through tmux send-keys and
// the screen through capture-pane.
package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// deadline bounds each wait for the screen; no correct run comes near it.
const deadline = 60 * time.Second

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-tui-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "outpost")
	if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/outpost").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build outpost: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// pane is a tmux session on a server of its own running one command.
type pane struct {
	t      *testing.T
	socket string
}

func startPane(t *testing.T, w, h int, env []string, args ...string) *pane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (scripts/test installs it: apt-get install tmux)")
	}
	p := &pane{t: t, socket: filepath.Join(t.TempDir(), "tmux.sock")}
	script := "env " + strings.Join(quoteAll(env), " ") + " " + strings.Join(quoteAll(append([]string{binary}, args...)), " ") +
		"; echo EXIT=$?; sleep 600"
	p.tmux("new-session", "-d", "-s", "t", "-x", fmt.Sprint(w), "-y", fmt.Sprint(h), script)
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", p.socket, "kill-server").Run() })
	return p
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return out
}

func (p *pane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (p *pane) screen() string { return p.tmux("capture-pane", "-p", "-t", "t") }

// keys sends tmux key names one by one.
func (p *pane) keys(keys ...string) {
	p.t.Helper()
	for _, k := range keys {
		p.tmux("send-keys", "-t", "t", k)
	}
}

// waitFor waits until the screen shows every one of want, and returns how
// long that took and the screen.
func (p *pane) waitFor(want ...string) (time.Duration, string) {
	p.t.Helper()
	start := time.Now()
	for {
		s := p.screen()
		ok := true
		for _, w := range want {
			if !strings.Contains(s, w) {
				ok = false
			}
		}
		if ok {
			return time.Since(start), s
		}
		if time.Since(start) > deadline {
			p.t.Fatalf("the screen never showed %q; it shows:\n%s", want, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTwinLive: the real binary on a real hub. A desired patch made with the
// CLI appears in the open twin view; an edit made in the TUI lands at the
// hub with the next version and the etag the TUI shows; q leaves the
// terminal as it was.
func TestTwinLive(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	ctx := context.Background()
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d1", ModuleID: "m1"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"OUTPOST_CONNECTION_STRING=" + h.ConnectionString, "OUTPOST_CA=" + h.CAFile, "OUTPOST_CONFIG=/dev/null", "NO_COLOR=1"}
	cli := func(args ...string) {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("outpost %v: %v\n%s", args, err, out)
		}
	}
	cli("twin", "patch", "d1/m1", "--desired", `{"interval": 5}`)

	p := startPane(t, 120, 40, env, "tui", "d1/m1")
	p.waitFor(`"interval": 5`, "version 2")

	cli("twin", "patch", "d1/m1", "--desired", `{"interval": 7}`)
	took, _ := p.waitFor(`"interval": 7`, "version 3")
	t.Logf("a CLI patch showed in the open twin view after %s", took)

	// Edit in place: delete line 5 ("interval"), send.
	p.keys("i", "Down", "Down", "Down", "Down", "C-k")
	p.waitFor(`"interval": null`)
	p.keys("C-s")
	_, s := p.waitFor("sent: twin d1/m1 is at version 4")
	tw, err := c.GetTwin(ctx, "d1", "m1")
	if err != nil {
		t.Fatal(err)
	}
	if tw.Version != 4 || string(tw.DesiredJSON()) != "{}" || !strings.Contains(s, "etag "+tw.ETag) {
		t.Fatalf("hub twin version %d desired %s etag %s; the screen:\n%s", tw.Version, tw.DesiredJSON(), tw.ETag, s)
	}

	p.keys("q")
	_, s = p.waitFor("EXIT=0")
	if strings.Contains(s, "twin d1/m1") || strings.Contains(s, "\x1b") {
		t.Fatalf("the TUI left its screen behind after q:\n%s", s)
	}
}

// TestNotATerminal: with stdout not a terminal, exit code 2 and a message.
func TestNotATerminal(t *testing.T) {
	cmd := exec.Command(binary, "tui", "--hub", "HostName=h;SharedAccessKeyName=owner;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "needs a terminal") {
		t.Fatalf("outpost tui | cat: %v\n%s", err, out)
	}
}

// TestKeysTypedAtOnce: keys that reach the program in one read ("jjj"
// pasted by tmux in one write) are each a key: the cursor moves three rows.
func TestKeysTypedAtOnce(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	ctx := context.Background()
	for i := range 5 {
		if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: fmt.Sprintf("dev-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"OUTPOST_CONNECTION_STRING=" + h.ConnectionString, "OUTPOST_CA=" + h.CAFile, "OUTPOST_CONFIG=/dev/null", "NO_COLOR=1"}
	p := startPane(t, 120, 30, env, "tui")
	p.waitFor("▸ dev-0", "dev-4")
	p.keys("jjj") // one send-keys: one write to the terminal
	p.waitFor("▸ dev-3")
	p.keys("q")
	p.waitFor("EXIT=0")
}
