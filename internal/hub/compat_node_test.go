package hub_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// sdkHub is a hub where Microsoft's SDKs look for IoT Hub: HTTPS on
// 127.0.0.1:443 and AMQPS on 127.0.0.1:5671, as "localhost".
type sdkHub struct {
	*hub.Hub
	logs *hubtest.LogBuffer
}

// startSDKHub starts a hub on 127.0.0.1:443 (and 5671 for AMQP), which the
// Node SDK tests of every package take in turn (sdktest.Listen), and stops
// it when the test ends. The SDKs connect to no other port: the test needs
// root (or CAP_NET_BIND_SERVICE), else it is skipped.
func startSDKHub(t *testing.T) *sdkHub {
	t.Helper()
	ln := sdktest.Listen(t, "127.0.0.1:443")
	amqpLn := sdktest.Listen(t, "127.0.0.1:5671")
	logs := &hubtest.LogBuffer{}
	h, _, err := hub.Open(hub.Config{DataDir: t.TempDir(), Listener: ln, AMQPListener: amqpLn, HostName: "localhost",
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("start hub: %v", err)
	}
	serve(t, h)
	if h.Credentials().CAFile == "" {
		t.Fatal("the hub has no CA file")
	}
	return &sdkHub{Hub: h, logs: logs}
}

// serve serves h until the test ends, then closes it.
func serve(t *testing.T, h *hub.Hub) {
	t.Helper()
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
}

// runNode runs `node --test` on a file of compat/node with env added, and
// fails the test with its output when it fails.
func runNode(t *testing.T, file string, env ...string) string {
	t.Helper()
	node, dir := sdktest.NodeDir(t, "azure-iothub", "azure-iot-device", "azure-iot-device-mqtt")
	out := sdktest.RunNodeTest(t, node, dir, file, 2*time.Minute, env...)
	t.Logf("node --test %s:\n%s", file, out)
	return out
}

// TestNodeServiceSDK runs Microsoft's Node.js IoT Hub service SDK
// (azure-iothub, unmodified; compat/node/iothub.test.js) against a hub over
// HTTPS. The SDK always connects to port 443 of the connection string's
// HostName, so the hub listens on 127.0.0.1:443 as "localhost": the test
// needs root (or CAP_NET_BIND_SERVICE), node, and compat/node/node_modules,
// which ./scripts/test installs. With CI set, any of them missing fails the
// test; otherwise it is skipped.
func TestNodeServiceSDK(t *testing.T) {
	sdktest.NodeDir(t, "azure-iothub") // skip early without node
	h := startSDKHub(t)
	creds := h.Credentials()
	runNode(t, "iothub.test.js", "OUTPOST_TEST_CS="+creds.ConnectionString, "NODE_EXTRA_CA_CERTS="+creds.CAFile)
}
