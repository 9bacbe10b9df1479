package mgmt_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/mgmt"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// serve runs the API of r's agent on a socket and returns a client for it.
func serve(t *testing.T, r *agenttest.Running) *mgmtclient.Client {
	t.Helper()
	c, _ := serveStoppable(t, r)
	return c
}

// serveStoppable is serve that also returns a func stopping the API.
func serveStoppable(t *testing.T, r *agenttest.Running) (*mgmtclient.Client, context.CancelFunc) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mgmt.sock")
	l, err := mgmt.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = mgmt.New(r.Agent, "hub.test", nil).Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return mgmtclient.New(sock), cancel
}

func TestListLogsRestartStatus(t *testing.T) {
	f := agenttest.New(t, runtime.KindProcess)
	f.Deploy(t, map[string]any{
		"m1": map[string]any{"image": f.Image, "startupOrder": 1},
		"m2": map[string]any{"image": f.Image, "restartPolicy": "on-failure", "createOptions": map[string]any{"Cmd": []string{"exit", "3"}}},
	})
	r := f.Start(t, func(c *agent.Config) { c.BackoffBase = time.Hour })
	c := serve(t, r)
	ctx := t.Context()

	fi, err := os.Stat(c.Socket())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	var mods []mgmtclient.Module
	agenttest.Eventually(t, 20*time.Second, "m1 running, m2 in back-off", func() bool {
		mods, err = c.Modules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(mods) == 2 && mods[0].Status == "running" && mods[1].Status == "backoff"
	})
	if m := mods[1]; m.ExitCode == nil || *m.ExitCode != 3 || m.Image != f.Image {
		t.Errorf("m2: %+v", m)
	}
	if mods[0].StartedAt.IsZero() || mods[0].Pid == 0 {
		t.Errorf("m1: %+v", mods[0])
	}

	// Logs, then follow: the stream ends when the instance is restarted.
	agenttest.Eventually(t, 10*time.Second, "m1 ready", func() bool {
		rc, err := c.Logs(ctx, "m1", mgmtclient.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		return strings.Contains(string(b), "IOTEDGE_MODULEID=m1") && strings.Contains(string(b), "ready")
	})
	rc, err := c.Logs(ctx, "m1", mgmtclient.LogOptions{Tail: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if n := strings.Count(string(b), "\n"); n != 1 {
		t.Errorf("tail 1 gave %d lines: %q", n, b)
	}
	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	defer fcancel()
	follow, err := c.Logs(fctx, "m1", mgmtclient.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	// The logs live in the agent's log dir, so a followed stream goes on across a
	// restart: the old instance's last line, then the new one's first.
	got := make(chan string, 1)
	go func() {
		defer follow.Close()
		sc := bufio.NewScanner(follow)
		var seen []string
		term := false
		for sc.Scan() {
			seen = append(seen, sc.Text())
			term = term || sc.Text() == "got SIGTERM"
			if term && sc.Text() == "ready" {
				break
			}
		}
		got <- strings.Join(seen, "\n")
	}()

	before := mods[0].Pid
	if err := c.Restart(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	mods, _ = c.Modules(ctx)
	if mods[0].Pid == before || mods[0].Status != "running" {
		t.Errorf("after restart: %+v (pid before %d)", mods[0], before)
	}
	select {
	case s := <-got:
		if !strings.Contains(s, "got SIGTERM") {
			t.Errorf("followed logs: %q", s)
		}
	case <-fctx.Done():
		t.Error("the followed log stream did not show the restart")
	}
	// m2's back-off is an hour: restart starts it now.
	if err := c.Restart(ctx, "m2"); err != nil {
		t.Errorf("restart m2: %v", err)
	}
	agenttest.Eventually(t, 10*time.Second, "m2 exited again", func() bool {
		mods, _ = c.Modules(ctx)
		return mods[1].Status == "backoff" && mods[1].ExitCode != nil
	})

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DeviceID != "dev" || st.Runtime != "process" || st.Isolated || !st.Connected || len(st.Twins) == 0 {
		t.Errorf("status: %+v", st)
	}
	// Each twin's versions as the hub last sent them: m1's are the hub's own.
	hub, err := f.Owner.GetTwin(ctx, f.DeviceID, "m1")
	if err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 20*time.Second, "m1's twin at the hub in /status", func() bool {
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tv := range st.Twins {
			if tv.ModuleID == "m1" {
				return tv.HubDesiredVersion == hub.DesiredVersion() && tv.HubReportedVersion == hub.ReportedVersion() &&
					tv.DesiredVersion == hub.DesiredVersion() && !tv.HubSeenAt.IsZero() && !tv.HubSeenAt.After(st.LastSync) && tv.QueuedReports == 0
			}
		}
		return false
	})

	// Errors.
	err = c.Restart(ctx, "nosuch")
	var me *mgmtclient.Error
	if !errors.As(err, &me) || me.Status != 404 || !errors.Is(err, mgmtclient.ErrNotFound) {
		t.Errorf("restart of an unknown module: %v", err)
	}
	if _, err := c.Logs(ctx, "nosuch", mgmtclient.LogOptions{}); !errors.Is(err, mgmtclient.ErrNotFound) {
		t.Errorf("logs of an unknown module: %v", err)
	}
	gone := mgmtclient.New(filepath.Join(t.TempDir(), "none.sock"))
	_, err = gone.Modules(ctx)
	var ue *mgmtclient.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(ue.Hint(), "systemctl status outpost") {
		t.Errorf("no daemon: %v", err)
	}
}

func TestListenRefusesALiveSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "m.sock")
	l, err := mgmt.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := mgmt.Listen(sock); err == nil {
		t.Fatal("a second Listen on a live socket succeeded")
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if got, _ := mgmt.ParseSince("10m", now); !got.Equal(now.Add(-10 * time.Minute)) {
		t.Errorf("10m: %v", got)
	}
	if got, _ := mgmt.ParseSince("2026-01-01T11:00:00Z", now); !got.Equal(now.Add(-time.Hour)) {
		t.Errorf("RFC 3339: %v", got)
	}
	if _, err := mgmt.ParseSince("yesterday", now); err == nil {
		t.Error("yesterday parsed")
	}
}

// TestListenLeavesWhatIsNotAStaleSocket checks what Listen does with what it
// finds at the socket's path: nothing or a stale socket is fine (the stale
// one replaced), a live socket is ErrInUse, and a file, a directory or a
// symbolic link is ErrNotSocket and stays as it was.
func TestListenLeavesWhatIsNotAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	listen := func(path string) error {
		t.Helper()
		l, err := mgmt.Listen(path)
		if err == nil {
			fi, serr := os.Stat(path)
			if serr != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
				t.Errorf("Listen(%s) made %v (%v), want a socket of mode 0600", path, fi.Mode(), serr)
			}
			l.Close()
		}
		return err
	}

	if err := listen(filepath.Join(dir, "new", "mgmt.sock")); err != nil {
		t.Errorf("nothing there: %v", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	if err := listen(stale); err != nil {
		t.Errorf("a stale socket: %v", err)
	}

	live := filepath.Join(dir, "live.sock")
	ll, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	if err := listen(live); !errors.Is(err, mgmt.ErrInUse) || !strings.Contains(err.Error(), live) {
		t.Errorf("a live socket: %v, want ErrInUse naming %s", err, live)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the live socket is gone: %v", err)
	}

	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{file: "a regular file", link: "a symbolic link", sub: "a directory"} {
		err := listen(path)
		if !errors.Is(err, mgmt.ErrNotSocket) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), kind) {
			t.Errorf("%s at the path: %v, want ErrNotSocket naming it", kind, err)
		}
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("%s at the path is gone: %v", kind, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the file holds %q (%v)", b, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(left) > 0 {
		t.Errorf("temporary sockets left: %v", left)
	}
}
