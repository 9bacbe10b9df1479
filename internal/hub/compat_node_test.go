package hub_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
)

// TestNodeServiceSDK runs Microsoft's Node.js IoT Hub service SDK
// (azure-iothub, unmodified; compat/node/iothub.test.js) against a hub over
// HTTPS. The SDK always connects to port 443 of the connection string's
// HostName, so the hub listens on 127.0.0.1:443 as "localhost": the test
// needs root (or CAP_NET_BIND_SERVICE), node, and compat/node/node_modules,
// which ./scripts/test installs. With CI set, any of them missing fails the
// test; otherwise it is skipped.
func TestNodeServiceSDK(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "compat", "node")
	ci := os.Getenv("CI") != ""
	missing := func(format string, a ...any) {
		t.Helper()
		if ci {
			t.Fatalf(format, a...)
		}
		t.Skipf(format+" (./scripts/test installs it)", a...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "azure-iothub")); err != nil {
		missing("the npm packages of compat/node are not installed: %v", err)
	}

	h, _, err := hub.Open(hub.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:443", HostName: "localhost"})
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("the Node SDK only speaks to port 443 and this process may not listen there (run as root): %v", err)
	}
	if err != nil {
		t.Fatalf("start hub: %v", err)
	}
	serveCtx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.Serve(serveCtx) }()
	t.Cleanup(func() {
		stopServe()
		if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("hub serve: %v", err)
		}
		if err := h.Close(); err != nil {
			t.Errorf("hub close: %v", err)
		}
	})
	creds := h.Credentials()
	if creds.CAFile == "" {
		t.Fatal("the hub has no CA file")
	}

	runCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, "--test", "--test-reporter=spec", filepath.Join("compat", "node", "iothub.test.js"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"OUTPOST_TEST_CS="+creds.ConnectionString,
		"NODE_EXTRA_CA_CERTS="+creds.CAFile,
		"NO_COLOR=1",
	)
	cmd.WaitDelay = 5 * time.Second // node --test runs the file in a child that may hold the pipes
	out, err := cmd.CombinedOutput()
	if runCtx.Err() != nil {
		t.Fatalf("node --test did not finish in 60 s:\n%s", out)
	}
	if err != nil {
		t.Fatalf("azure-iothub against the hub failed (%v):\n%s", err, out)
	}
	t.Logf("node --test:\n%s", out)
}
