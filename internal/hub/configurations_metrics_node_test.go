package hub_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeDeploymentMetrics runs Microsoft's Node.js IoT Hub service SDK
// (azure-iothub, unmodified; compat/node/metrics.test.js) against a hub on
// 127.0.0.1:443 as "localhost": a deployment's custom metric over
// configurations.[[id]].status counts the device it is applied to, and
// createQuery(...).nextAsTwin() finds that device's $edgeAgent twin.
func TestNodeDeploymentMetrics(t *testing.T) {
	runNodeConfigurationsTest(t, "metrics.test.js")
}

// runNodeConfigurationsTest runs a Node test file of compat/node against a
// hub on 127.0.0.1:443 (the SDK always connects to port 443) with
// OUTPOST_TEST_CS, NODE_EXTRA_CA_CERTS and OUTPOST_TEST_CONTENT (the
// base-tempsensor fixture's modulesContent) set, and env.
func runNodeConfigurationsTest(t *testing.T, file string, env ...string) {
	node, dir := sdktest.NodeDir(t, "azure-iothub")
	sdktest.Listen(t, "127.0.0.1:443").Close() // the port's lock, for this test; the hub listens itself
	h := hubtest.Start(t, hubtest.Options{Listen: "127.0.0.1:443", HostName: "localhost"})
	content, err := json.Marshal(configurationFixture(t, "base-tempsensor.json").Content.ModulesContent)
	if err != nil {
		t.Fatal(err)
	}
	out := sdktest.RunNodeTest(t, node, dir, file, 2*time.Minute, append([]string{
		"OUTPOST_TEST_CS=" + h.ConnectionString,
		"NODE_EXTRA_CA_CERTS=" + h.CAFile,
		"OUTPOST_TEST_CONTENT=" + string(content),
	}, env...)...)
	t.Logf("node --test %s:\n%s", file, out)
}
