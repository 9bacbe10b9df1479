// Package sdktest is what tests running Microsoft's Azure IoT SDKs share:
// compat/node with its npm packages, and port 8883. The Node module SDK
// only connects to port 8883, so every test that runs it needs
// 127.0.0.1:8883 for itself, one test after the other (go test runs
// packages in parallel), for the whole test (a test may close the port and
// listen on it again, as a restarting daemon does).
package sdktest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
)

// SDKBroker is the address the Azure IoT SDKs connect to, with a gateway
// host name of localhost: MQTT over TLS is always port 8883.
const SDKBroker = "127.0.0.1:8883"

// Wait is how long Listen waits for a port another test holds (the
// daemon's Node module test holds 8883 for a minute or two under -race).
const Wait = 3 * time.Minute

// Listen takes addr for the rest of the test: a lock file in the temp dir
// that tests of every package take in turn (waiting up to Wait), then a
// listener on addr (itself retried until the deadline, for programs that
// do not take the lock). When the port stays taken the test is skipped,
// saying so loudly: what it covers went untested.
func Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	deadline := time.Now().Add(Wait)
	skip := func(err error) {
		t.Helper()
		t.Skipf("SKIPPED, NOT TESTED: %s stayed taken for %v (%v); the Azure IoT SDKs only connect to port 8883: free it (another broker? `ss -ltnp 'sport = 8883'`) and run again", addr, Wait, err)
	}
	name := filepath.Join(os.TempDir(), "outpost-test-port-"+strings.NewReplacer(":", "_", "[", "", "]", "").Replace(addr)+".lock")
	lock, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("port lock: %v", err)
	}
	t.Cleanup(func() { lock.Close() }) // releases the lock
	for {
		taken, err := tryLock(lock)
		if err != nil {
			t.Fatalf("port lock %s: %v", name, err)
		}
		if taken {
			break
		}
		if time.Now().After(deadline) {
			skip(fmt.Errorf("another test holds %s", name))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			t.Cleanup(func() { l.Close() })
			return l
		}
		if time.Now().After(deadline) {
			skip(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// NodeDir returns node's path and compat/node's directory, once node and
// these npm packages of compat/node are installed (./scripts/test installs
// them). Without them the test is skipped, or fails when CI is set.
func NodeDir(t testing.TB, packages ...string) (node, dir string) {
	t.Helper()
	_, file, _, _ := goruntime.Caller(0)
	dir = filepath.Join(filepath.Dir(file), "..", "..", "compat", "node")
	missing := func(format string, a ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, a...)
		}
		t.Skipf(format+" (./scripts/test installs it)", a...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed: %v", err)
	}
	for _, pkg := range packages {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg)); err != nil {
			missing("the npm packages of compat/node are not installed: %v", err)
		}
	}
	return node, dir
}

// RunNodeTest runs `node --test` on script (a file of compat/node) with env
// added to this process's environment, giving it timeout, and fails the
// test with node's output when it fails; it returns that output.
func RunNodeTest(t testing.TB, node, dir, script string, timeout time.Duration, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", filepath.Join(dir, script))
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	cmd.WaitDelay = 5 * time.Second // node --test runs the file in a child that may hold the pipes
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("node --test %s did not finish in %v:\n%s", script, timeout, out)
	}
	if err != nil {
		t.Fatalf("node --test %s failed (%v):\n%s", script, err, out)
	}
	return string(out)
}
