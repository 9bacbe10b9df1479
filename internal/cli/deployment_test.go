package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

func TestDeploymentCreateArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want deploymentCreateOptions
		err  string
	}{
		{[]string{"prod", "-f", "m.json", "--target-condition", "tags.env='prod'", "--priority", "10", "--label", "a=b", "--layered"},
			deploymentCreateOptions{ID: "prod", File: "m.json", TargetCondition: "tags.env='prod'", Priority: 10, Labels: []string{"a=b"}, Layered: true}, ""},
		{[]string{"all", "-f", "-", "--target-condition", "*", "--metric", "n=SELECT deviceId FROM devices"},
			deploymentCreateOptions{ID: "all", File: "-", TargetCondition: "*", Metrics: []string{"n=SELECT deviceId FROM devices"}}, ""},
		{[]string{"prod", "--target-condition", "*"}, deploymentCreateOptions{}, "needs -f MANIFEST"},
		{[]string{"prod", "-f", "m.json"}, deploymentCreateOptions{}, "needs --target-condition"},
		{[]string{"prod", "-f", "m.json", "--target-condition", "*", "--priority", "-1"}, deploymentCreateOptions{}, "invalid --priority -1"},
		{[]string{}, deploymentCreateOptions{}, "takes one deployment ID"},
	} {
		var got *deploymentCreateOptions
		ios, _, _, _ := TestIO()
		err := parseCmd(newDeploymentCreateCmd(&Factory{IO: ios}, func(o *deploymentCreateOptions) error { got = o; return nil }), tc.args...)
		if checkParseErr(t, tc.args, err, tc.err) && !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q: options %+v, want %+v", tc.args, *got, tc.want)
		}
	}
}

// TestDeploymentCommands creates automatic deployments from a native manifest,
// an IoT Edge configuration and a layered one against a real hub, lists,
// shows and deletes them.
func TestDeploymentCommands(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(t.Context(), hubapi.Device{DeviceID: "edge-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(t.Context(), "edge-1", "", []byte(`{"tags":{"environment":"prod","filter":true}}`), ""); err != nil {
		t.Fatal(err)
	}
	fixtures := filepath.Join("..", "..", "fixtures")
	dir := t.TempDir()
	native := filepath.Join(dir, "native.yaml")
	os.WriteFile(native, []byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: localhost:5000/web:1\n    desired: {a: 1}\n"), 0o644)

	code, _, errOut := run(t, "deployment", "create", "--no-resolve", "native", "-f", native, "--target-condition", "tags.environment='prod'", "--priority", "5", "--label", "team=ops")
	if code != 0 || !strings.Contains(errOut, "created deployment native") {
		t.Fatalf("create from a native manifest: %d %s", code, errOut)
	}
	base := filepath.Join(fixtures, "configurations", "base-tempsensor.json")
	layer := filepath.Join(fixtures, "configurations", "layered-filter.json")
	if code, _, errOut := run(t, "deployment", "create", "--no-resolve", "iotedge", "-f", base, "--target-condition", "tags.environment='prod'", "--priority", "10"); code != 0 {
		t.Fatalf("create from an IoT Edge configuration: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "deployment", "create", "--no-resolve", "layer", "-f", layer, "--target-condition", "tags.filter=true", "--priority", "20"); code != ExitUsage || !strings.Contains(errOut, "pass --layered") {
		t.Fatalf("a layered manifest without --layered: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "deployment", "create", "--no-resolve", "layer", "-f", base, "--layered", "--target-condition", "*"); code != ExitUsage || !strings.Contains(errOut, "drop --layered") {
		t.Fatalf("a base manifest with --layered: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "deployment", "create", "--no-resolve", "layer", "-f", layer, "--layered", "--target-condition", "tags.filter=true", "--priority", "20"); code != 0 {
		t.Fatalf("create a layered deployment: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "deployment", "create", "--no-resolve", "bad", "-f", base, "--target-condition", "tags.x = "); code != ExitFailure || !strings.Contains(errOut, "targetCondition") || !strings.Contains(errOut, "position") {
		t.Fatalf("a bad target condition: %d %s", code, errOut)
	}

	// Wait for the hub to apply them: iotedge is the base, layer on top.
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not the case after a minute: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUntil("edge-1 has iotedge and layer applied", func() bool {
		code, out, _ := run(t, "deployment", "show", "layer", "-o", "json")
		var cfg hubapi.Configuration
		return code == 0 && json.Unmarshal([]byte(out), &cfg) == nil && cfg.SystemMetrics.Results["appliedCount"] == 1
	})
	code, out, _ := run(t, "deployment", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.Contains(lines[0], "TARGETED") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	// id, kind, priority, target, targeted, applied, succeeded, failed: native
	// targets edge-1 but iotedge, of a higher priority, is applied there.
	for i, want := range []string{"iotedge base 10 tags.environment='prod' 1 1 0 0", "layer layered 20 tags.filter=true 1 1 0 0", "native base 5 tags.environment='prod' 1 0 0 0"} {
		if got := strings.Join(strings.Fields(lines[i+1]), " "); got != want {
			t.Errorf("list row %d: %q, want %q", i+1, got, want)
		}
	}
	code, out, _ = run(t, "deployment", "show", "native")
	if code != 0 || !strings.Contains(out, "label team") || !strings.Contains(out, "targetedCount") {
		t.Fatalf("show: %d\n%s", code, out)
	}
	if code, _, errOut := run(t, "deployment", "show", "nope"); code != ExitNotFound || !strings.Contains(errOut, "deployment list") {
		t.Fatalf("show a missing deployment: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "deployment", "delete", "native"); code != 0 || !strings.Contains(errOut, "deleted deployment native") {
		t.Fatalf("delete: %d %s", code, errOut)
	}
	if code, _, _ := run(t, "deployment", "delete", "native"); code != ExitNotFound {
		t.Fatalf("second delete: %d", code)
	}
}

// TestDeploymentCreateDevice: a file with IoT Hub's deviceContent makes an
// automatic device configuration: the hub writes its desired properties
// into the device twins it targets, leaf devices too; list calls it
// "device".
func TestDeploymentCreateDevice(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(t.Context(), hubapi.Device{DeviceID: "chiller-1", Capabilities: &hubapi.Capabilities{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(t.Context(), "chiller-1", "", []byte(`{"tags":{"kind":"chiller"}}`), ""); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("..", "..", "fixtures", "configurations", "device-chiller.json")
	if code, _, errOut := run(t, "deployment", "create", "chillers", "-f", file, "--layered", "--target-condition", "*"); code != ExitUsage || !strings.Contains(errOut, "drop it") {
		t.Fatalf("a device configuration with --layered: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "deployment", "create", "chillers", "-f", file, "--target-condition", "tags.kind='chiller'", "--priority", "3"); code != 0 {
		t.Fatalf("create a device configuration: %d %s", code, errOut)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		tw, err := c.GetTwin(t.Context(), "chiller-1", "")
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := json.Marshal(tw.Desired()["chillerWaterSettings"]); string(s) == `{"pressure":78,"temperature":38}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chiller-1's desired properties after a minute: %v", tw.Desired())
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, out, _ := run(t, "deployment", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != "chillers device 3 tags.kind='chiller' 1 1 - -" {
		t.Fatalf("list: %d\n%s", code, out)
	}
}

// TestDeploymentCreateModule: a file with IoT Hub's moduleContent makes an
// automatic module configuration: the hub writes its desired properties
// into the module twins its FROM devices.modules condition matches; list
// calls it "module".
func TestDeploymentCreateModule(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(t.Context(), hubapi.Device{DeviceID: "plant", Capabilities: &hubapi.Capabilities{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(t.Context(), hubapi.Module{DeviceID: "plant", ModuleID: "chiller"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(t.Context(), "plant", "chiller", []byte(`{"tags":{"kind":"chiller"}}`), ""); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("..", "..", "fixtures", "configurations", "module-chiller.json")
	if code, _, errOut := run(t, "deployment", "create", "chillers", "-f", file, "--layered", "--target-condition", "FROM devices.modules WHERE tags.kind='chiller'"); code != ExitUsage || !strings.Contains(errOut, "drop it") {
		t.Fatalf("a module configuration with --layered: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "deployment", "create", "chillers", "-f", file, "--target-condition", "tags.kind='chiller'"); code == 0 || !strings.Contains(errOut, "FROM devices.modules WHERE") {
		t.Fatalf("a module configuration over device twins: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "deployment", "create", "chillers", "-f", file, "--target-condition", "FROM devices.modules WHERE tags.kind='chiller'", "--priority", "3"); code != 0 {
		t.Fatalf("create a module configuration: %d %s", code, errOut)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		tw, err := c.GetTwin(t.Context(), "plant", "chiller")
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := json.Marshal(tw.Desired()["chillerWaterSettings"]); string(s) == `{"pressure":78,"temperature":38}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chiller module twin's desired properties after a minute: %v", tw.Desired())
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, out, _ := run(t, "deployment", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != "chillers module 3 FROM devices.modules WHERE tags.kind='chiller' 1 1 - -" {
		t.Fatalf("list: %d\n%s", code, out)
	}
}
