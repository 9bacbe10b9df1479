package hub_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyIoTEdgeQuickstart(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "edge-1"}); err != nil {
		t.Fatal(err)
	}
	// A module the operator made by hand survives deployments.
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "edge-1", ModuleID: "manual"}); err != nil {
		t.Fatal(err)
	}
	warnings, err := c.ApplyConfiguration(ctx, "edge-1", fixture(t, "iotedge-quickstart.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(warnings, "\n"), "$edgeHub.properties.desired.routes") {
		t.Errorf("a warning about $edgeHub routes, which the daemon runs: %q", warnings)
	}
	mods, err := c.ListModules(ctx, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	managed := map[string]string{}
	for _, m := range mods {
		managed[m.ModuleID] = m.ManagedBy
	}
	if managed["SimulatedTemperatureSensor"] != "outpost" || managed["$edgeAgent"] != "outpost" || managed["manual"] != "" {
		t.Fatalf("modules after deploy: %v", managed)
	}
	agent, err := c.GetTwin(ctx, "edge-1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := deployment.FromAgentDesired(agent.DesiredJSON())
	if err != nil {
		t.Fatalf("$edgeAgent desired does not read back as a deployment: %v", err)
	}
	if got := m.Modules["SimulatedTemperatureSensor"].Image; !strings.Contains(got, "simulated-temperature-sensor") {
		t.Fatalf("$edgeAgent desired image %q", got)
	}

	// A second deployment without the sensor removes the identity outpost made.
	native := []byte(`{"schemaVersion":"1.0","modules":{"tempsensor":{"image":"localhost:5000/tempsensor:1.0","desired":{"interval":5}}}}`)
	if _, err := c.ApplyConfiguration(ctx, "edge-1", native); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetModule(ctx, "edge-1", "SimulatedTemperatureSensor"); !errors.Is(err, hubclient.ErrNotFound) {
		t.Fatalf("old managed module still there: %v", err)
	}
	if _, err := c.GetModule(ctx, "edge-1", "manual"); err != nil {
		t.Fatalf("hand-made module removed: %v", err)
	}
	tw, err := c.GetTwin(ctx, "edge-1", "tempsensor")
	if err != nil || tw.Desired()["interval"] != json.Number("5") {
		t.Fatalf("tempsensor desired: %v", err)
	}
}

func TestApplyRejectsBadManifests(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	before, _ := c.GetTwin(ctx, "d", "$edgeAgent")
	for _, tc := range []struct{ name, body, want string }{
		{"unknown restart policy", `{"schemaVersion":"1.0","modules":{"m":{"image":"r/m:1","restartPolicy":"sometimes"}}}`, "restartPolicy"},
		{"truncated", `{"modulesContent": {"$edgeAgent": `, "malformed JSON"},
		{"bad module id", `{"schemaVersion":"1.0","modules":{"a.b":{"image":"r/m:1"}}}`, "modules.a.b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ApplyConfiguration(ctx, "d", []byte(tc.body))
			var he *hubclient.Error
			if !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, tc.want) {
				t.Fatalf("got %v, want 400 naming %q", err, tc.want)
			}
		})
	}
	if _, err := c.ApplyConfiguration(ctx, "nope", fixture(t, "iotedge-quickstart.json")); !errors.Is(err, hubclient.ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	after, _ := c.GetTwin(ctx, "d", "$edgeAgent")
	if after.ETag != before.ETag {
		t.Fatal("a rejected deployment changed $edgeAgent")
	}
}
