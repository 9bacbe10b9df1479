package hub_test

import (
	"testing"

	"github.com/outpost-edge/outpost/internal/registry"
)

// TestNodeConfigurations runs Microsoft's Node.js IoT Hub service SDK
// (azure-iothub, unmodified; compat/node/configurations.test.js) against a
// hub on 127.0.0.1:443 as "localhost" (the SDK always connects to port 443):
// addConfiguration, getConfiguration(s), updateConfiguration (with an etag,
// a stale one, and forceUpdate), removeConfiguration, and an edge
// deployment, a device configuration and a module configuration the hub
// applies to the device, device twin and module twin they target
// (getModuleTwin shows the module configuration's desired properties).
func TestNodeConfigurations(t *testing.T) {
	runNodeConfigurationsTest(t, "configurations.test.js", "OUTPOST_TEST_AGENT="+registry.AgentModule)
}
