package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeConfigurations runs Microsoft's Node.js IoT Hub service SDK
// (azure-iothub, unmodified; compat/node/configurations.test.js) against a
// hub on 127.0.0.1:443: addConfiguration, getConfiguration(s),
// updateConfiguration, removeConfiguration, and an edge deployment the hub
// applies to the device it targets.
func TestNodeConfigurations(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iothub")
	// Port 443 in turn with the other tests that need it: take its lock,
	// then hand the port to the hub.
	ln := sdktest.Listen(t, "127.0.0.1:443")
	ln.Close()
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
		if err := <-served; err != nil {
			t.Errorf("hub serve: %v", err)
		}
		if err := h.Close(); err != nil {
			t.Errorf("hub close: %v", err)
		}
	})
	content, err := json.Marshal(configurationFixture(t, "base-tempsensor.json").Content.ModulesContent)
	if err != nil {
		t.Fatal(err)
	}
	creds := h.Credentials()
	runCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, "--test", "--test-reporter=spec", filepath.Join(dir, "configurations.test.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"OUTPOST_TEST_CS="+creds.ConnectionString,
		"NODE_EXTRA_CA_CERTS="+creds.CAFile,
		"OUTPOST_TEST_CONTENT="+string(content),
		"OUTPOST_TEST_AGENT="+registry.AgentModule,
		"NO_COLOR=1",
	)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if runCtx.Err() != nil {
		t.Fatalf("node --test did not finish in 2 minutes:\n%s", out)
	}
	if err != nil {
		t.Fatalf("azure-iothub configurations against the hub failed (%v):\n%s", err, out)
	}
	t.Logf("node --test:\n%s", out)
}
