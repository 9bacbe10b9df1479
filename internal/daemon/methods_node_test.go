package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/cli"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeMethods: direct methods from the service to a module and back,
// through a real hub and daemon. A module written with Microsoft's Node.js
// module SDK (azure-iot-device + azure-iot-device-mqtt, unmodified;
// compat/node/methods.test.js) answers onMethod('reboot') on the daemon's
// broker, called by the service SDK (azure-iothub)
// Client.invokeDeviceMethod(device, module, …): the answer comes back; a
// slow handler gives 504 and its late answer is dropped with a log; a
// module that is gone gives 404 DeviceNotOnline. Then `outpost method
// invoke` calls $edgeAgent's ping, RestartModule and GetModuleLogs, which
// the daemon answers itself, and with the daemon stopped the device is not
// online. The SDKs take no ports: the hub listens on 127.0.0.1:443 as
// "localhost" and the broker on 127.0.0.1:8883 (taken in turn with other
// tests through sdktest), so it needs root, node and compat/node/node_modules.
func TestNodeMethods(t *testing.T) {
	node, dir, ln, f := sdkFixture(t)
	ctx := t.Context()
	m, err := f.Owner.CreateModule(ctx, hubapi.Module{DeviceID: f.DeviceID, ModuleID: "nodemethods"})
	if err != nil {
		t.Fatal(err)
	}
	f.Deploy(t, map[string]any{"sensor": map[string]any{"image": f.Image, "restartPolicy": "always"}})
	cfg := config(t, f)
	cfg.BrokerListener, cfg.GatewayHostName = ln, "localhost"
	logs := &logBuffer{t: t}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	d, stop := start(t, cfg)
	agenttest.Eventually(t, 60*time.Second, "sensor running and nodemethods synced", func() bool {
		mods, _ := d.Syncer().Modules()
		synced := false
		for _, sm := range mods {
			synced = synced || sm.ModuleID == "nodemethods"
		}
		return synced && f.ModuleReported(t, "sensor")["runtimeStatus"] == "running"
	})

	moduleCS := (&identity.ConnectionString{HostName: "localhost", DeviceID: f.DeviceID, ModuleID: "nodemethods",
		SharedAccessKey: m.Authentication.SymmetricKey.PrimaryKey, GatewayHostName: "localhost"}).String()
	out := sdktest.RunNodeTest(t, node, dir, "methods.test.js", 3*time.Minute,
		"OUTPOST_TEST_CS="+f.Hub.ConnectionString, "NODE_EXTRA_CA_CERTS="+f.Hub.CAFile,
		"OUTPOST_TEST_DEVICE="+f.DeviceID, "OUTPOST_MODULE_CS="+moduleCS, "OUTPOST_CA="+d.CA().CertFile())
	t.Logf("node --test:\n%s", out)
	if logs.count("method response to no call waiting", "module=nodemethods") == 0 {
		t.Error("the slow handler's late answer was not logged as dropped")
	}

	// $edgeAgent's methods, through the CLI.
	invoke := func(args ...string) (int, string, string) {
		t.Helper()
		ios, _, stdout, stderr := cli.TestIO()
		code := cli.Run(ctx, ios, append([]string{"method", "invoke", "--hub", f.Hub.ConnectionString, "--ca", f.Hub.CAFile}, args...))
		return code, stdout.String(), stderr.String()
	}
	agent := f.DeviceID + "/$edgeAgent"
	if code, stdout, stderr := invoke(agent, "ping", "-o", "json"); code != 0 || !jsonEq(stdout, `{"status":200,"payload":null}`) {
		t.Fatalf("ping: exit %d\n%s%s", code, stdout, stderr)
	}
	before := d.Agent().Modules()[0]
	if code, stdout, stderr := invoke(agent, "RestartModule", "--payload", `{"schemaVersion":"1.0","id":"sensor"}`); code != 0 || !strings.Contains(stderr, "status 200") {
		t.Fatalf("RestartModule: exit %d\n%s%s", code, stdout, stderr)
	}
	agenttest.Eventually(t, 60*time.Second, "sensor restarted and running", func() bool {
		now := d.Agent().Modules()[0]
		return now.StartedAt.After(before.StartedAt) && now.RuntimeStatus == "running"
	})
	if logs.count("module restarted by a direct method", "module=sensor") != 1 {
		t.Error("the restart is not in the daemon's log")
	}
	var got []struct{ ID, Payload string }
	agenttest.Eventually(t, 30*time.Second, "sensor's log through GetModuleLogs", func() bool {
		code, stdout, stderr := invoke(agent, "GetModuleLogs", "-o", "json", "--payload",
			`{"schemaVersion":"1.0","items":[{"id":"^sens","filter":{"tail":5,"since":"1 hour"}}],"encoding":"none","contentType":"text"}`)
		var res hubapi.MethodResult
		if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.Status != 200 {
			t.Fatalf("GetModuleLogs: exit %d\n%s%s", code, stdout, stderr)
		}
		if err := json.Unmarshal(res.Payload, &got); err != nil {
			t.Fatal(err)
		}
		return len(got) == 1 && got[0].ID == "sensor" && strings.Contains(got[0].Payload, "ready")
	})
	// Bad input is named: by the CLI before it asks, by the daemon after.
	if code, _, stderr := invoke(agent, "RestartModule", "--payload", `{"id":`); code != 2 || !strings.Contains(stderr, "--payload") {
		t.Errorf("bad JSON payload: exit %d %s", code, stderr)
	}
	if code, stdout, stderr := invoke(agent, "RestartModule", "-o", "json", "--payload", `{"schemaVersion":"1.0","id":"nosuch"}`); code != 0 || !strings.Contains(stdout, `"status": 404`) || !strings.Contains(stdout, `no module \"nosuch\"`) {
		t.Errorf("restart of an unknown module: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, _ := invoke(agent, "GetModuleLogs", "-o", "json", "--payload", `{"items":[{"id":"sensor","filter":{"loglevel":3}}]}`); code != 0 || !strings.Contains(stdout, "payload.items[0].filter.loglevel is not supported") {
		t.Errorf("an unsupported filter: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := invoke(agent, "Reboot", "-o", "json"); code != 0 || !strings.Contains(stdout, `"status": 501`) {
		t.Errorf("an unknown $edgeAgent method: exit %d\n%s", code, stdout)
	}

	// The daemon stops: the device is not online.
	stop()
	_, err = f.Owner.InvokeMethod(context.Background(), f.DeviceID, "$edgeAgent", hubapi.MethodRequest{MethodName: "ping"})
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 404 || he.Code != "DeviceNotOnline" {
		t.Fatalf("ping with the daemon stopped: %v", err)
	}
	if code, _, stderr := invoke(agent, "ping"); code != 3 || !strings.Contains(stderr, "is the daemon running on") {
		t.Errorf("CLI ping with the daemon stopped: exit %d %s", code, stderr)
	}
}

func jsonEq(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}
