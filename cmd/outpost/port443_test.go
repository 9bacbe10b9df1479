//go:build linux

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHubServeUnprivileged runs `outpost hub serve --listen 127.0.0.1:443`
// as an unprivileged user (nobody, when the test runs as root): binding a
// port below 1024 is refused (EACCES), and an address given with --listen
// does not fall back: the hub exits 1 with the exact fixes.
func TestHubServeUnprivileged(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if start, _ := strconv.Atoi(strings.TrimSpace(string(b))); start <= 443 {
			t.Skipf("any user may bind port 443 here (net.ipv4.ip_unprivileged_port_start=%d): no EACCES to meet", start)
		}
	}
	data := filepath.Join(t.TempDir(), "hub")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, outpost, "hub", "serve", "--data", data, "--listen", "127.0.0.1:443")
	cmd.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null")
	if os.Geteuid() == 0 {
		const nobody = 65534
		// nobody must reach the binary and own the data dir's parent.
		if err := os.Chmod(filepath.Dir(outpost), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Dir(data), nobody, nobody); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Dir(filepath.Dir(data)), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Env = append(cmd.Env, "HOME=/nonexistent")
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the hub did not exit: it bound 127.0.0.1:443 unprivileged?\n%s", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1\n%s", err, out)
	}
	for _, want := range []string{
		"listen on 127.0.0.1:443: permission denied: a port below 1024 needs root or the capability CAP_NET_BIND_SERVICE",
		`sudo setcap cap_net_bind_service=+ep "$(command -v outpost)"`,
		"or run it as root",
		"--listen ADDR",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a failed start left the data dir %s (%v)", data, err)
	}
}
