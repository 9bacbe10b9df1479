package daemon_test

import (
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/cli"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeLeafMessages runs compat/node/leafmessages.test.js: a leaf device
// written with Microsoft's Node.js device SDK (azure-iot-device +
// azure-iot-device-mqtt, unmodified), a child of the daemon's edge device,
// connects to the daemon's broker (GatewayHostName=localhost). Online, its
// sendEvent goes through the route FROM /messages/* WHERE NOT
// IS_DEFINED($connectionModuleId) INTO $upstream to the hub, filed under the
// leaf (as `outpost messages list LEAF` reads them), and its
// onDeviceMethod answers azure-iothub's invokeDeviceMethod(leafId, …),
// handed by the hub to the edge device; disconnected, the call is 404103.
// Then with the hub stopped the leaf's sendEvent is still acknowledged, also
// after the daemon restarts with the hub stopped, and the messages reach the
// hub, in order, once it is back. The hub listens on
// 127.0.0.1:443 as "localhost" and the broker on 127.0.0.1:8883 (shared with
// the other SDK tests through sdktest): it needs root, node and
// compat/node/node_modules.
func TestNodeLeafMessages(t *testing.T) {
	node, dir, ln, f := sdkFixture(t)
	ctx := t.Context()
	edge, err := f.Owner.GetDevice(ctx, f.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	const leafID = "sensor-1"
	leaf, err := f.Owner.CreateDevice(ctx, hubapi.Device{DeviceID: leafID, Capabilities: &hubapi.Capabilities{}, DeviceScope: edge.DeviceScope})
	if err != nil {
		t.Fatal(err)
	}
	f.DeployManifest(t, map[string]any{"schemaVersion": "1.0",
		"modules": map[string]any{"sensor": map[string]any{"image": f.Image, "restartPolicy": "always"}},
		"routes": map[string]any{
			"leaves": `FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream`,
		},
	})
	cfg := config(t, f)
	cfg.BrokerListener, cfg.BrokerListen, cfg.GatewayHostName = ln, "", "localhost"
	logs := &logBuffer{t: t}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	d, stop := start(t, cfg)
	agenttest.Eventually(t, 60*time.Second, "the routes in force and the leaf known to the daemon", func() bool {
		_, cerr := d.Syncer().Child(leafID)
		return cerr == nil && f.RoutesInForce(t)
	})

	leafCS := (&identity.ConnectionString{HostName: "localhost", DeviceID: leafID,
		SharedAccessKey: leaf.Authentication.SymmetricKey.PrimaryKey, GatewayHostName: "localhost"}).String()
	runPhase := func(phase, tag string) {
		t.Helper()
		out := sdktest.RunNodeTest(t, node, dir, "leafmessages.test.js", 3*time.Minute,
			"OUTPOST_PHASE="+phase, "OUTPOST_TAG="+tag, "OUTPOST_LEAF_CS="+leafCS, "OUTPOST_CA="+d.CA().CertFile(),
			"OUTPOST_TEST_CS="+f.Hub.ConnectionString, "NODE_EXTRA_CA_CERTS="+f.Hub.CAFile,
			"NODE_OPTIONS=--dns-result-order=ipv4first")
		t.Logf("node --test (%s):\n%s", tag, out)
		if !strings.Contains(out, "SENT "+tag) {
			t.Fatalf("node (%s) did not send:\n%s", tag, out)
		}
	}
	// waitAtHub reads the leaf's messages at the hub until want (their
	// $.mid, in order) are there.
	waitAtHub := func(owner *hubclient.Client, want string) {
		t.Helper()
		var got []string
		var after uint64
		deadline := time.Now().Add(60 * time.Second)
		for strings.Join(got, ",") != want && time.Now().Before(deadline) {
			list, err := owner.Messages(ctx, leafID, "", after, 100, 5*time.Second)
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for _, m := range list.Messages {
				if m.DeviceID != leafID || m.ModuleID != "" || m.Properties["phase"] == "" || m.SystemProperties["$.ct"] != "application/json" {
					t.Fatalf("a leaf message at the hub: %+v", m)
				}
				got = append(got, m.SystemProperties["$.mid"])
			}
			after = list.Next
		}
		if strings.Join(got, ",") != want {
			t.Fatalf("the leaf's messages at the hub: %q, want %s", got, want)
		}
	}

	runPhase("online", "online")
	waitAtHub(f.Owner, "online-1,online-2")
	if list, err := f.Owner.Messages(ctx, f.DeviceID, "", 0, 100, 0); err != nil || len(list.Messages) != 0 {
		t.Fatalf("the edge device's own messages: %d, %v (the leaf's are filed under the leaf)", len(list.Messages), err)
	}

	// The hub stops: the leaf still sends, and its messages wait on the
	// edge device.
	f.Hub.Stop()
	runPhase("offline", "offline")
	// The daemon restarts with the hub still stopped: it boots offline, the
	// leaf connects again (its key is kept on the device) and sends.
	stop()
	ln.Close()
	if cfg.BrokerListener, err = net.Listen("tcp", sdktest.SDKBroker); err != nil { // this test holds the port's lock
		t.Fatal(err)
	}
	d, _ = start(t, cfg)
	runPhase("offline", "boot")
	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.Hub.DataDir, Listen: sdkHub, HostName: "localhost"})
	waitAtHub(h2.Client(t), "online-1,online-2,offline-1,offline-2,boot-1,boot-2")
	// As an operator reads them: outpost messages list LEAF.
	ios, _, stdout, stderr := cli.TestIO()
	if code := cli.Run(ctx, ios, []string{"messages", "list", leafID, "-o", "json", "--hub", h2.ConnectionString, "--ca", h2.CAFile}); code != 0 {
		t.Fatalf("outpost messages list %s: exit %d: %s", leafID, code, stderr)
	}
	var listed []struct {
		DeviceID         string            `json:"deviceId"`
		SystemProperties map[string]string `json:"systemProperties"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &listed); err != nil || len(listed) != 6 || listed[0].DeviceID != leafID || listed[5].SystemProperties["$.mid"] != "boot-2" {
		t.Fatalf("outpost messages list %s -o json: %v\n%s", leafID, err, stdout)
	}
	if n := logs.count("rejected a queued message"); n != 0 {
		t.Errorf("%d messages refused by the hub", n)
	}
}

// sdkHub is where the hub listens for the Azure SDKs, which take no port:
// 127.0.0.1:443, as "localhost".
const sdkHub = "127.0.0.1:443"

// sdkFixture is the set-up of the tests that run the Azure Node.js SDKs
// against a hub and a daemon: node and compat/node (with the service and
// device SDKs), the locks of the hub's port (kept until the test ends) and
// of the broker's (sdktest.SDKBroker, its listener returned for the
// daemon), and a hub on sdkHub with the device and a registry.
func sdkFixture(t *testing.T) (node, dir string, broker net.Listener, f *agenttest.Fixture) {
	t.Helper()
	node, dir = sdktest.NodeDir(t, "azure-iothub", "azure-iot-device", "azure-iot-device-mqtt")
	sdktest.Listen(t, sdkHub).Close() // the lock stays ours until the test ends
	broker = sdktest.Listen(t, sdktest.SDKBroker)
	f = agenttest.NewWithHub(t, runtime.KindProcess, hubtest.Options{Listen: sdkHub, HostName: "localhost"})
	return node, dir, broker, f
}
