package hub_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeRegistrySDK runs the rest of the registry surface of Microsoft's
// Node.js service SDK (azure-iothub, unmodified; compat/node/registry.test.js)
// against a hub of its own: bulk operations, statistics, updates without
// keys, leaf devices, twin identity fields and limits, twin replace. The SDK
// only speaks to port 443, so the hub listens on 127.0.0.1:443 as
// "localhost", taking the port in turn with the other tests that need it.
func TestNodeRegistrySDK(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iothub")
	const addr = "127.0.0.1:443"
	probe, err := net.Listen("tcp", addr)
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("the Node SDK only speaks to port 443 and this process may not listen there (run as root): %v", err)
	}
	if err == nil {
		probe.Close()
	}
	sdktest.Listen(t, addr).Close() // hold the port's lock for the test; the hub listens itself

	h, _, err := hub.Open(hub.Config{DataDir: t.TempDir(), Listen: addr, HostName: "localhost"})
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

	runCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, "--test", "--test-reporter=spec", filepath.Join(dir, "registry.test.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OUTPOST_TEST_CS="+creds.ConnectionString, "NODE_EXTRA_CA_CERTS="+creds.CAFile, "NO_COLOR=1")
	cmd.WaitDelay = 5 * time.Second // node --test runs the file in a child that may hold the pipes
	out, err := cmd.CombinedOutput()
	if runCtx.Err() != nil {
		t.Fatalf("node --test did not finish in 60 s:\n%s", out)
	}
	if err != nil {
		t.Fatalf("azure-iothub's registry calls against the hub failed (%v):\n%s", err, out)
	}
	t.Logf("node --test:\n%s", out)
}
