package daemon_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeLeaf: a leaf device written with Microsoft's Node.js device SDK
// (azure-iot-device + azure-iot-device-mqtt, unmodified;
// compat/node/leaf.test.js) connects to its parent edge device's daemon
// with GatewayHostName=localhost and the device CA trusted, as IoT Edge's
// transparent gateway. With the hub up it reads its twin, reports (the
// report is at the hub) and gets a desired change made at the hub; with the
// hub stopped it still reads its twin and reports; with the daemon
// restarted while the hub is still stopped, the same; and once the hub is
// back, the reports made offline reach it. The SDKs take no ports: the hub
// listens on 127.0.0.1:443 as "localhost" and the broker on 127.0.0.1:8883
// (taken in turn with other tests through sdktest), so it needs node and
// compat/node/node_modules.
func TestNodeLeaf(t *testing.T) {
	node, dir, ln, f := sdkFixture(t)
	ctx := t.Context()
	edge, err := f.Owner.GetDevice(ctx, f.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := f.Owner.CreateDevice(ctx, hubapi.Device{DeviceID: "leaf", DeviceScope: edge.DeviceScope, Capabilities: &hubapi.Capabilities{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Owner.PatchTwin(ctx, "leaf", "", []byte(`{"properties":{"desired":{"greeting":"hello"}}}`), ""); err != nil {
		t.Fatal(err)
	}
	cfg := config(t, f)
	cfg.BrokerListener, cfg.GatewayHostName = ln, "localhost"
	logs := &logBuffer{t: t}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	d, stop := start(t, cfg)
	agenttest.Eventually(t, 60*time.Second, "the leaf at the device", func() bool {
		_, err := d.Syncer().Child("leaf")
		return err == nil
	})
	leafCS := (&identity.ConnectionString{HostName: "localhost", DeviceID: "leaf",
		SharedAccessKey: leaf.Authentication.SymmetricKey.PrimaryKey, GatewayHostName: "localhost"}).String()
	run := func(phase string) {
		t.Helper()
		out := sdktest.RunNodeTest(t, node, dir, "leaf.test.js", 3*time.Minute,
			"OUTPOST_LEAF_PHASE="+phase, "OUTPOST_LEAF_CS="+leafCS, "OUTPOST_CA="+d.CA().CertFile(),
			"OUTPOST_TEST_CS="+f.Hub.ConnectionString, "NODE_EXTRA_CA_CERTS="+f.Hub.CAFile)
		t.Logf("node --test leaf.test.js (%s):\n%s", phase, out)
	}
	run("online")
	if n := logs.count(`msg="broker: child connected"`, "child=leaf"); n == 0 {
		t.Error("the broker did not log the leaf's connection")
	}

	// The hub stops: the leaf reads its twin and reports, on the device.
	addr := f.Hub.Addr().String()
	f.Hub.Stop()
	run("offline")

	// The daemon restarts with the hub still down: it boots offline.
	stop()
	ln.Close()
	cfg.BrokerListener, err = net.Listen("tcp", sdktest.SDKBroker) // this test holds the port's lock
	if err != nil {
		t.Fatal(err)
	}
	d, _ = start(t, cfg)
	run("restarted")
	if st, err := d.Syncer().Outbox(); err != nil || st.Patches < 2 {
		t.Fatalf("outbox with the hub down: %+v %v, want the leaf's 2 reports", st, err)
	}

	// The hub is back: the reports made offline reach it.
	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.Hub.DataDir, Listen: addr, HostName: "localhost"})
	owner := h2.Client(t)
	agenttest.Eventually(t, 60*time.Second, "the leaf's offline reports at the hub", func() bool {
		tw, err := owner.GetTwin(ctx, "leaf", "")
		return err == nil && tw.Reported()["phase"] == "restarted"
	})
}
