package daemon_test

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeModuleMessages runs compat/node/messages.test.js: Microsoft's
// Node.js module SDK, unmodified, as modules a and b of a real daemon: a's
// sendOutputEvent('out1') goes through a WHERE route to b's inputMessage
// with its properties, and through a $upstream route to the hub, where it
// is read as `outpost messages watch` reads it (a long poll on
// GET /devices/{id}/messages). The broker listens on 127.0.0.1:8883 (the
// SDK takes no port), shared with the other SDK tests through sdktest.
func TestNodeModuleMessages(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iot-device", "azure-iot-device-mqtt")
	ln := sdktest.Listen(t, sdktest.SDKBroker)
	f := agenttest.New(t, runtime.KindProcess)
	keys := map[string]string{}
	for _, id := range []string{"a", "b"} {
		m, err := f.Owner.CreateModule(t.Context(), hubapi.Module{DeviceID: f.DeviceID, ModuleID: id})
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = m.Authentication.SymmetricKey.PrimaryKey
	}
	f.DeployManifest(t, map[string]any{"schemaVersion": "1.0",
		"modules": map[string]any{
			"a": map[string]any{"image": f.Image, "restartPolicy": "always"},
			"b": map[string]any{"image": f.Image, "restartPolicy": "always"},
		},
		"routes": map[string]any{
			"alerts": `FROM /messages/modules/a/outputs/out1 WHERE temperature > 30 AND site = 'north yard' INTO BrokeredEndpoint("/modules/b/inputs/in1")`,
			"up":     `FROM /messages/modules/a/outputs/out1 INTO $upstream`,
		},
	})
	cfg := config(t, f)
	cfg.BrokerListener, cfg.BrokerListen, cfg.GatewayHostName = ln, "", "localhost"
	d, _ := start(t, cfg)
	agenttest.Eventually(t, 60*time.Second, "the routes in $edgeHub's lastDesiredStatus", func() bool { return f.RoutesInForce(t) })

	cs := func(id string) string {
		return f.Hub.DeviceConnectionString(f.DeviceID, id, keys[id]) + ";GatewayHostName=localhost"
	}
	out := sdktest.RunNodeTest(t, node, dir, "messages.test.js", 3*time.Minute,
		"OUTPOST_A_CS="+cs("a"), "OUTPOST_B_CS="+cs("b"), "OUTPOST_CA="+d.CA().CertFile(),
		"OUTPOST_DEVICE="+f.DeviceID, "NODE_OPTIONS=--dns-result-order=ipv4first")
	if !strings.Contains(out, "SENT-ALL") {
		t.Fatalf("node did not send everything:\n%s", out)
	}

	// At the hub, as `outpost messages watch` reads them: a long poll.
	var got []hubapi.Message
	var after uint64
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		list, err := f.Owner.Messages(t.Context(), f.DeviceID, "a", after, 100, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, list.Messages...)
		after = list.Next
	}
	var ids []string
	for _, m := range got {
		ids = append(ids, m.SystemProperties["$.mid"])
	}
	if strings.Join(ids, ",") != "cold-1,hot-1,last" {
		t.Fatalf("messages at the hub %q, want cold-1,hot-1,last", ids)
	}
	if m := got[1]; m.OutputName != "out1" || m.Properties["site"] != "north yard" || m.SystemProperties["$.ct"] != "application/json" || string(m.Body) != `{"temperature":35}` {
		t.Fatalf("hot-1 at the hub: %+v", m)
	}
}
