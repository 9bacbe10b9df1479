package cli

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// startDaemon runs `outpost daemon` in this process over the fixture's
// device and returns its management socket; it is stopped when the test
// ends, and must exit 0.
func startDaemon(t *testing.T, f *agenttest.Fixture) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mgmt.sock")
	runDaemon(t, sock, "--connection-string", f.DeviceCS, "--ca", f.Hub.CAFile, "--restart-backoff", "100ms",
		"--data", f.DataDir, "--runtime", "process", "--mgmt-socket", sock, "--gateway-hostname", "gw.test")
	return sock
}

// runDaemon runs `outpost daemon args…` in this process until the test ends,
// when it must exit 0, and waits for its management socket at sock.
func runDaemon(t *testing.T, sock string, args ...string) {
	t.Helper()
	ios, _, _, errOut := TestIO()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Run(ctx, ios, append([]string{"daemon"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("daemon exited %d:\n%s", code, errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("the daemon did not stop within 30 s")
		}
	})
	agenttest.Eventually(t, 10*time.Second, "the management socket", func() bool {
		select {
		case code := <-done:
			t.Fatalf("daemon exited %d:\n%s", code, errOut.String())
		default:
		}
		_, err := os.Stat(sock)
		return err == nil
	})
}

func TestDaemonAndLocalCommands(t *testing.T) {
	f := agenttest.New(t, "process")
	f.Deploy(t, map[string]any{
		"web":  map[string]any{"image": f.Image, "startupOrder": 1},
		"fail": map[string]any{"image": f.Image, "restartPolicy": "never", "createOptions": map[string]any{"Cmd": []string{"exit", "3"}}},
	})
	sock := startDaemon(t, f)

	agenttest.Eventually(t, 20*time.Second, "web running in outpost list", func() bool {
		code, out, _ := run(t, "list", "--mgmt-socket", sock)
		return code == 0 && strings.Contains(out, "running") && strings.Contains(out, "failed (exit 3)")
	})
	code, out, _ := run(t, "list", "--mgmt-socket", sock)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "UPTIME") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	code, out, _ = run(t, "list", "--mgmt-socket", sock, "-o", "json")
	var mods []mgmtclient.Module
	if err := json.Unmarshal([]byte(out), &mods); code != 0 || err != nil || len(mods) != 2 || mods[1].Name != "web" || mods[1].Status != "running" {
		t.Fatalf("list -o json: %d %v\n%s", code, err, out)
	}

	agenttest.Eventually(t, 10*time.Second, "web's logs", func() bool {
		_, out, _ := run(t, "logs", "web", "--mgmt-socket", sock)
		return strings.Contains(out, "IOTEDGE_MODULEID=web") && strings.Contains(out, "IOTEDGE_GATEWAYHOSTNAME=gw.test")
	})
	code, out, _ = run(t, "logs", "web", "--tail", "1", "--since", "1h", "--mgmt-socket", sock)
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("logs --tail 1: %d %q", code, out)
	}

	code, out, errOut := run(t, "restart", "web", "--mgmt-socket", sock)
	if code != 0 || out != "" || !strings.Contains(errOut, "restarted web") {
		t.Errorf("restart: %d %q %s", code, out, errOut)
	}
	code, out, errOut = run(t, "restart", "web", "--mgmt-socket", sock, "-o", "json")
	var res doneResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res != (doneResult{Action: "restarted", ModuleID: "web"}) {
		t.Errorf("restart -o json: %d %q %s", code, out, errOut)
	}
	code, _, errOut = run(t, "restart", "nosuch", "--mgmt-socket", sock)
	if code != ExitNotFound || !strings.Contains(errOut, "nosuch") {
		t.Errorf("restart nosuch: %d %s", code, errOut)
	}

	code, out, _ = run(t, "status", "--mgmt-socket", sock)
	if code != 0 || !strings.Contains(out, "connected:  yes") || !strings.Contains(out, "$edgeAgent") || !strings.Contains(out, "runtime:    process (not isolated") {
		t.Errorf("status: %d\n%s", code, out)
	}
	code, out, _ = run(t, "status", "--mgmt-socket", sock, "-o", "json")
	var st mgmtclient.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || !st.Connected || st.DeviceID != "dev" {
		t.Errorf("status -o json: %d %v\n%s", code, err, out)
	}

	// check, against this daemon and hub.
	data := t.TempDir()
	os.Chmod(data, 0o700)
	// It takes the daemon's flags, those it does not use too, so that the
	// daemon's command line checks as it is.
	code, out, errOut = run(t, "check", "--connection-string", f.DeviceCS, "--ca", f.Hub.CAFile, "--data", data,
		"--runtime", "process", "--broker-listen", "127.0.0.1:0", "--mgmt-socket", sock,
		"--restart-backoff", "100ms", "--gateway-hostname", "gw.test", "--log-level", "debug")
	if code != 0 || strings.Count(out, "✓") != 8 || !strings.Contains(out, "can sign tokens as that module") || !strings.Contains(out, "✓ device CA: none yet") {
		t.Errorf("check: %d\n%s%s", code, out, errOut)
	}
	// A busy broker port, a data dir open to all, no daemon: ✗ with what to do.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(data, 0o755)
	code, out, _ = run(t, "check", "--hub", f.DeviceCS, "--ca", f.Hub.CAFile, "--data", data,
		"--runtime", "process", "--broker-listen", l.Addr().String(), "--mgmt-socket", filepath.Join(data, "none.sock"),
		"--device-ca-cert", f.Hub.CAFile, "--device-ca-key", f.Hub.CAFile, "-o", "json")
	var results []checkResult
	if err := json.Unmarshal([]byte(out), &results); err != nil || code != ExitFailure {
		t.Fatalf("check with problems: %d %v\n%s", code, err, out)
	}
	failed := map[string]checkResult{}
	for _, r := range results {
		if !r.OK {
			failed[r.Name] = r
		}
	}
	for _, name := range []string{"broker port", "data dir", "daemon", "device CA"} {
		if r, ok := failed[name]; !ok || r.Hint == "" {
			t.Errorf("check %s: want ✗ with a hint, got %+v", name, r)
		}
	}
	if !strings.Contains(failed["device CA"].Detail, f.Hub.CAFile) {
		t.Errorf("check device CA does not name the file: %+v", failed["device CA"])
	}
	if len(failed) != 4 {
		t.Errorf("check: %d failures, want 4: %+v", len(failed), failed)
	}
}

// TestDaemonMgmtSocketGuards checks that the daemon replaces only a stale
// socket at --mgmt-socket: with a daemon answering there it says another
// daemon is running, and a file there is left alone and named.
func TestDaemonMgmtSocketGuards(t *testing.T) {
	f := agenttest.New(t, "process")
	sock := startDaemon(t, f)
	daemon := func(sock string) (int, string) {
		code, _, errOut := run(t, "daemon", "--connection-string", f.DeviceCS, "--ca", f.Hub.CAFile,
			"--data", t.TempDir(), "--runtime", "process", "--mgmt-socket", sock)
		return code, errOut
	}
	code, errOut := daemon(sock)
	if code != ExitFailure || !strings.Contains(errOut, "another daemon is running?") || !strings.Contains(errOut, sock) {
		t.Errorf("a second daemon on a live socket: exit %d\n%s", code, errOut)
	}
	if code, _, _ := run(t, "status", "--mgmt-socket", sock); code != 0 {
		t.Errorf("the first daemon does not answer any more: status exit %d", code)
	}

	file := filepath.Join(t.TempDir(), "important.txt")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, errOut = daemon(file)
	if code != ExitFailure || !strings.Contains(errOut, file+": not a socket but a regular file") || !strings.Contains(errOut, "--mgmt-socket") {
		t.Errorf("a daemon on a regular file: exit %d\n%s", code, errOut)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the file at --mgmt-socket holds %q (%v)", b, err)
	}
}

func TestLocalCommandsWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{{"list"}, {"logs", "m"}, {"restart", "m"}, {"status"}} {
		code, _, errOut := run(t, append(args, "--mgmt-socket", sock)...)
		if code != ExitUnavailable || !strings.Contains(errOut, "is the daemon running? try: systemctl status outpost") {
			t.Errorf("%v: exit %d\n%s", args, code, errOut)
		}
	}
}

func TestDaemonRefusesBadInput(t *testing.T) {
	code, _, errOut := run(t, "daemon", "--connection-string", "HostName=h;SharedAccessKeyName=owner;SharedAccessKey=YWJj", "--data", t.TempDir())
	if code != ExitUsage || !strings.Contains(errOut, "device") {
		t.Errorf("service connection string: %d %s", code, errOut)
	}
	code, _, errOut = run(t, "daemon", "--connection-string", "HostName=h;DeviceId=d;SharedAccessKey=YWJj", "--restart-backoff", "10m")
	if code != ExitUsage || !strings.Contains(errOut, "back-off") {
		t.Errorf("bad back-off: %d %s", code, errOut)
	}
	code, _, errOut = run(t, "daemon", "--connection-string", "HostName=h;DeviceId=d;SharedAccessKey=YWJj", "--runtime", "vm")
	if code != ExitUsage || !strings.Contains(errOut, "--runtime") {
		t.Errorf("bad runtime: %d %s", code, errOut)
	}
	code, _, errOut = run(t, "daemon", "--connection-string", "HostName=h;DeviceId=d;SharedAccessKey=YWJj", "--log-level", "loud")
	if code != ExitUsage || !strings.Contains(errOut, `invalid --log-level "loud"`) {
		t.Errorf("bad log level: %d %s", code, errOut)
	}
	t.Setenv("OUTPOST_CONNECTION_STRING", "")
	code, _, errOut = run(t, "daemon", "--data", t.TempDir())
	if code != ExitUsage || !strings.Contains(errOut, "connection string") {
		t.Errorf("no connection string: %d %s", code, errOut)
	}
}

func TestSDNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if err := sdNotifyReady(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("got %q %v", buf[:n], err)
	}
}
