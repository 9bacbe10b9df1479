package hub_test

import (
	"testing"

	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeRegistrySDK runs the rest of the registry surface of Microsoft's
// Node.js service SDK (azure-iothub, unmodified; compat/node/registry.test.js)
// against a hub of its own: bulk operations, statistics, updates without
// keys, leaf devices, twin identity fields and limits, twin replace. The SDK
// only speaks to port 443, so the hub listens on 127.0.0.1:443 as
// "localhost", taking the port in turn with the other tests that need it.
func TestNodeRegistrySDK(t *testing.T) {
	sdktest.NodeDir(t, "azure-iothub") // skip early without node
	h := startSDKHub(t)
	creds := h.Credentials()
	runNode(t, "registry.test.js", "OUTPOST_TEST_CS="+creds.ConnectionString, "NODE_EXTRA_CA_CERTS="+creds.CAFile)
}

// TestNodeScopesSDK runs parent and child devices through azure-iothub
// (compat/node/scopes.test.js): deviceScope and parentScopes as IoT Hub sets
// them, in devices, twins and queries.
func TestNodeScopesSDK(t *testing.T) {
	sdktest.NodeDir(t, "azure-iothub")
	h := startSDKHub(t)
	creds := h.Credentials()
	runNode(t, "scopes.test.js", "OUTPOST_TEST_CS="+creds.ConnectionString, "NODE_EXTRA_CA_CERTS="+creds.CAFile)
}
