package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeDeviceRefused runs Microsoft's Node.js device SDK (azure-iot-device
// with azure-iot-device-mqtt, unmodified; compat/node/protocols.test.js) as
// a device, not a module, against the broker on 127.0.0.1:8883, where the
// SDK takes a HostName of localhost to be: the broker refuses it at its
// first attempt (one refusal in the log, naming the device and saying the
// edge device itself does not connect to its own broker as a device) and the
// SDK does not try again.
func TestNodeDeviceRefused(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iot-device", "azure-iot-device-mqtt")
	ln := sdktest.Listen(t, sdktest.SDKBroker)
	f := setup(t, fixtureOptions{listener: ln})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, f.ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	cs := (&identity.ConnectionString{HostName: "localhost", DeviceID: "d", SharedAccessKey: f.keys[""]}).String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker log:\n%s", f.logs)
		}
	})
	out := sdktest.RunNodeTest(t, node, dir, "protocols.test.js", time.Minute,
		"OUTPOST_TEST_DEVICE_CS="+cs, "NODE_EXTRA_CA_CERTS="+caFile, "NODE_OPTIONS=--dns-result-order=ipv4first")
	t.Logf("node --test protocols.test.js:\n%s", out)
	if n := f.logs.Count("refused a connection", "client_id=d ", "this edge device", "connected as a device"); n != 1 {
		t.Fatalf("the broker refused the device %d times, want 1 (the SDK tried again?); log:\n%s", n, f.logs)
	}
	if !strings.Contains(out, "failed after") {
		t.Errorf("node printed no failure time:\n%s", out)
	}
}
