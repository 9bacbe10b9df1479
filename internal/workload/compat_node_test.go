package workload_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeModuleClient runs Microsoft's Node.js module client
// (azure-iot-device, unmodified; compat/node/workload.js): its
// ModuleClient.fromEnvironment reads the trust bundle from the module's
// workload socket and its IotEdgeAuthenticationProvider signs the module's
// SAS token there, which the hub accepts as the module's. The same SDK set
// up as another module, or with a stale generation id, is refused. It needs
// node and compat/node/node_modules (./scripts/test installs them); with CI
// set, either missing fails the test, otherwise it is skipped.
func TestNodeModuleClient(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iot-device")

	f := setup(t)
	m1 := f.module(t, "m1")
	type result struct {
		CA, SAS, Host, ModuleID, Error string
	}
	run := func(module, genID string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "workload.js"))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(),
			"IOTEDGE_WORKLOADURI=unix://"+f.sockets["m1"],
			"IOTEDGE_DEVICEID=dev",
			"IOTEDGE_MODULEID="+module,
			"IOTEDGE_IOTHUBHOSTNAME="+f.hub.HostName(),
			"IOTEDGE_GATEWAYHOSTNAME=gw.test",
			"IOTEDGE_AUTHSCHEME=sasToken",
			"IOTEDGE_MODULEGENERATIONID="+genID,
			"IOTEDGE_APIVERSION=2019-01-30",
		)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node workload.js: %v\n%s", err, out)
		}
		var r result
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("node workload.js printed %q: %v", out, err)
		}
		return r
	}

	r := run("m1", m1.GenerationID)
	if r.Error != "" {
		t.Fatalf("the SDK failed: %s", r.Error)
	}
	if r.CA != string(f.ca.TrustBundle()) {
		t.Errorf("the SDK's CA %q is not the trust bundle", r.CA)
	}
	if !strings.HasPrefix(r.SAS, "SharedAccessSignature ") {
		t.Fatalf("the SDK's token %q", r.SAS)
	}
	if code := f.hubGetTwin(t, "m1", r.SAS); code != 200 {
		t.Errorf("the hub answers the SDK's token with %d: %s", code, r.SAS)
	}
	if code := f.hubGetTwin(t, "m2", r.SAS); code == 200 {
		t.Error("the hub accepts m1's token for m2")
	}

	// As another module on m1's socket, and with a stale generation: refused.
	if r := run("m2", f.module(t, "m2").GenerationID); !strings.Contains(r.Error, "may not act for module") {
		t.Errorf("as m2 on m1's socket: %+v", r)
	}
	if r := run("m1", "638000000000000000"); !strings.Contains(r.Error, "IOTEDGE_MODULEGENERATIONID") {
		t.Errorf("with a stale generation: %+v", r)
	}
}
