package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDaemonExecsDaemonBinary: with outpost-daemon installed beside outpost (as the
// release archives and packages hold them), `outpost daemon` replaces itself with it —
// the same process, so systemd's readiness notification and SIGTERM work as before —
// and hands it the configuration it read, which keeps the device's key out of the
// process's arguments. Configuration errors are still the CLI's (exit 2 with its hint),
// and outpost-daemon run alone says to run `outpost daemon`.
func TestDaemonExecsDaemonBinary(t *testing.T) {
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "outpost-daemon"), "../outpost-daemon").CombinedOutput(); err != nil {
		t.Fatalf("build outpost-daemon: %v\n%s", err, out)
	}
	b, err := os.ReadFile(outpost)
	if err != nil {
		t.Fatal(err)
	}
	op := filepath.Join(bin, "outpost")
	if err := os.WriteFile(op, b, 0o755); err != nil {
		t.Fatal(err)
	}

	hp := startHub(t, t.TempDir())
	code, devCS, errOut := hp.cli(t, "device", "create", "edge-1")
	devCS = strings.TrimSpace(devCS)
	if code != 0 || !strings.Contains(devCS, "SharedAccessKey=") {
		t.Fatalf("device create: %d %q %s", code, devCS, errOut)
	}
	key := devCS[strings.Index(devCS, "SharedAccessKey=")+len("SharedAccessKey="):]

	notify := filepath.Join(t.TempDir(), "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	data := t.TempDir()
	cmd := exec.Command(op, "daemon", "--connection-string", devCS, "--ca", hp.ca, "--data", data,
		"--runtime", "process", "--mgmt-socket", filepath.Join(data, "mgmt.sock"), "--broker-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null", "NOTIFY_SOCKET="+notify)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	// killedLog stops the daemon and returns its log, once nothing writes it.
	killedLog := func() string {
		cmd.Process.Kill()
		<-done
		return stderr.String()
	}

	buf := make([]byte, 64)
	nc.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, err := nc.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("readiness notification: %q %v; the daemon's log:\n%s", buf[:n], err, killedLog())
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if exe, err := os.Readlink("/proc/" + pid + "/exe"); err != nil || exe != filepath.Join(bin, "outpost-daemon") {
		t.Errorf("process %s runs %q (%v), want %s", pid, exe, err, filepath.Join(bin, "outpost-daemon"))
	}
	if args, err := os.ReadFile("/proc/" + pid + "/cmdline"); err != nil || bytes.Contains(args, []byte(key)) {
		t.Errorf("the daemon's arguments hold the device key (%v): %q", err, args)
	}
	c := exec.Command(op, "status", "--mgmt-socket", filepath.Join(data, "mgmt.sock"))
	c.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null")
	if out, err := c.CombinedOutput(); err != nil {
		t.Errorf("outpost status: %v\n%s", err, out)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not stop on SIGTERM:\n%s", killedLog())
	}

	run := func(name string, args ...string) (int, string) {
		c := exec.Command(name, args...)
		c.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null")
		out, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := run(op, "daemon", "--connection-string", hp.cs, "--data", t.TempDir()); code != 2 ||
		!strings.Contains(out, "the daemon needs a device's") || !strings.Contains(out, "outpost device create") || !strings.Contains(out, "Run 'outpost daemon --help'") {
		t.Errorf("outpost daemon with the owner's connection string: exit %d\n%s", code, out)
	}
	if code, out := run(filepath.Join(bin, "outpost-daemon")); code != 2 || !strings.Contains(out, "outpost daemon") {
		t.Errorf("outpost-daemon alone: exit %d\n%s", code, out)
	}
}
