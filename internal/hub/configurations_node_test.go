package hub_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeConfigurations runs Microsoft's Node.js IoT Hub service SDK
// (azure-iothub, unmodified; compat/node/configurations.test.js) against a
// hub on 127.0.0.1:443 as "localhost" (the SDK always connects to port 443):
// addConfiguration, getConfiguration(s), updateConfiguration (with an etag,
// a stale one, and forceUpdate), removeConfiguration, and an edge deployment
// the hub applies to the device it targets.
func TestNodeConfigurations(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iothub")
	sdktest.Listen(t, "127.0.0.1:443").Close() // the port's lock, for this test; the hub listens itself
	h := hubtest.Start(t, hubtest.Options{Listen: "127.0.0.1:443", HostName: "localhost"})
	content, err := json.Marshal(configurationFixture(t, "base-tempsensor.json").Content.ModulesContent)
	if err != nil {
		t.Fatal(err)
	}
	out := sdktest.RunNodeTest(t, node, dir, "configurations.test.js", 2*time.Minute,
		"OUTPOST_TEST_CS="+h.ConnectionString,
		"NODE_EXTRA_CA_CERTS="+h.CAFile,
		"OUTPOST_TEST_CONTENT="+string(content),
		"OUTPOST_TEST_AGENT="+registry.AgentModule,
	)
	t.Logf("node --test configurations.test.js:\n%s", out)
}
