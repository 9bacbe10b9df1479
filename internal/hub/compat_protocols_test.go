package hub_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeProtocols runs Microsoft's Node.js SDKs (unmodified;
// compat/node/protocols.test.js) against what the hub does not speak: the
// service client's AMQP (5671) and AMQP over WebSocket (443), a device's
// MQTT over WebSocket (443). Each must fail at its first attempt with a
// message that says what to use instead: the hub logs every attempt, and
// exactly one of each is allowed (the SDKs retry transient errors for
// minutes). And the documented failure of a hub on another port than 443:
// the SDK resolves "localhost:PORT" as a host name (ENOTFOUND).
func TestNodeProtocols(t *testing.T) {
	sdktest.NodeDir(t, "azure-iothub", "azure-iot-device", "azure-iot-device-mqtt") // skip early without node
	h := startSDKHub(t)
	other := hubtest.Start(t, hubtest.Options{}) // 127.0.0.1:0, HostName localhost:PORT

	// One CA file for both hubs.
	var cas []byte
	for _, f := range []string{h.Credentials().CAFile, other.CAFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cas = append(cas, b...)
	}
	caFile := filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(caFile, cas, 0o600); err != nil {
		t.Fatal(err)
	}
	out := runNode(t, "protocols.test.js",
		"OUTPOST_TEST_CS="+h.Credentials().ConnectionString,
		"OUTPOST_TEST_PORT_CS="+other.ConnectionString,
		"NODE_EXTRA_CA_CERTS="+caFile)

	for _, c := range []struct {
		what  string
		parts []string
	}{
		{"AMQPS", []string{"refused an AMQP connection", "transport=AMQPS", "err=<nil>"}},
		{"AMQP over WebSocket", []string{"refused an AMQP connection", `transport="AMQP over WebSocket"`, "err=<nil>"}},
		{"MQTT over WebSocket", []string{"refused a request at /$iothub/websocket", "MQTT over WebSocket"}},
	} {
		if n := h.logs.Count(c.parts...); n != 1 {
			t.Errorf("the hub refused %d connections over %s, want 1 (the SDK tried again?); hub log:\n%s", n, c.what, h.logs)
		}
	}
	if !strings.Contains(out, "failed after") {
		t.Errorf("node printed no failure times:\n%s", out)
	}
}
