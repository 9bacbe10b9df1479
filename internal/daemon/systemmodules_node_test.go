package daemon_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeSystemModuleTwins reads a device's system module twins with
// Microsoft's Node.js service SDK (azure-iothub, unmodified;
// compat/node/systemmodules.test.js) after an IoT Edge deployment, once a real
// daemon runs it: registry.getModuleTwin(dev, '$edgeAgent') and '$edgeHub'
// give the deployment and the routes as given, and the status the device
// reported, in IoT Edge's shapes. The SDK connects to port 443 only, so the
// hub listens on 127.0.0.1:443 as "localhost" (taken in turn with other tests
// through sdktest's lock): it needs root, node and compat/node/node_modules.
func TestNodeSystemModuleTwins(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iothub")
	sdktest.Listen(t, "127.0.0.1:443").Close() // the lock stays ours until the test ends
	f := agenttest.NewWithHub(t, runtime.KindProcess, hubtest.Options{Listen: "127.0.0.1:443", HostName: "localhost"})
	manifest := agenttest.IoTEdgeManifest(map[string]any{"sensor": agenttest.IoTEdgeModule(f.Image)}, map[string]any{
		"upstream": "FROM /messages/* INTO $upstream",
		"toFilter": map[string]any{"route": `FROM /messages/modules/sensor/outputs/out INTO BrokeredEndpoint("/modules/sensor/inputs/in")`, "priority": 1, "timeToLiveSecs": 3600},
	})
	b, _ := json.Marshal(manifest)
	if _, err := f.Owner.ApplyConfiguration(t.Context(), f.DeviceID, b); err != nil {
		t.Fatal(err)
	}
	start(t, config(t, f))
	agenttest.Eventually(t, 60*time.Second, "sensor running and $edgeHub's status at the hub", func() bool {
		hub, err := f.Owner.GetTwin(t.Context(), f.DeviceID, "$edgeHub")
		return err == nil && hub.Reported()["lastDesiredVersion"] != nil && f.ModuleReported(t, "sensor")["runtimeStatus"] == "running"
	})

	out := sdktest.RunNodeTest(t, node, dir, "systemmodules.test.js", 60*time.Second,
		"OUTPOST_TEST_CS="+f.Hub.ConnectionString, "NODE_EXTRA_CA_CERTS="+f.Hub.CAFile,
		"OUTPOST_TEST_DEVICE="+f.DeviceID, "OUTPOST_TEST_IMAGE="+f.Image)
	t.Logf("node --test:\n%s", out)
}
