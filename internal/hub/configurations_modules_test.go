package hub_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/registry"
)

// TestModuleConfigurationsAPI drives an automatic module configuration
// (moduleContent) over the hub's REST API: the hub writes its desired
// properties into the module twins its FROM devices.modules condition
// matches, the module twin shows it applied (GET and queries), the system
// metrics count module twins and their queries find the same ones, and a
// condition over device twins is refused with 400.
func TestModuleConfigurationsAPI(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "plant-1"}); err != nil {
		t.Fatal(err)
	}
	for id, tags := range map[string]string{"chiller": `{"kind":"chiller"}`, "pump": `{"kind":"pump"}`} {
		if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "plant-1", ModuleID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PatchTwin(ctx, "plant-1", id, []byte(`{"tags":`+tags+`}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateConfiguration(ctx, configurationFixture(t, "module-chiller.json")); err != nil {
		t.Fatal(err)
	}
	moduleTwin := func(module string) map[string]any {
		code, body := raw(t, h, "GET", "/twins/plant-1/modules/"+module, ownerAuth(t, h), nil)
		if code != 200 {
			t.Fatalf("GET module twin %s: %d %s", module, code, body)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	waitFor(t, "the chiller module twin gets the configuration's desired properties", func() bool {
		props, _ := moduleTwin("chiller")["properties"].(map[string]any)
		desired, _ := props["desired"].(map[string]any)
		return jsonEqual(desired["chillerWaterSettings"], map[string]any{"temperature": 38, "pressure": 78})
	})
	doc := moduleTwin("chiller")
	if !jsonEqual(doc["configurations"], map[string]any{"chiller-module-settings": map[string]any{"status": "Applied"}}) {
		t.Errorf("chiller module twin configurations: %v", doc["configurations"])
	}
	if doc := moduleTwin("pump"); doc["configurations"] != nil || strings.Contains(jsonString(doc), "chillerWaterSettings") {
		t.Errorf("pump, not targeted: %s", jsonString(doc))
	}
	if doc := moduleTwin(registry.AgentModule); doc["configurations"] != nil {
		t.Errorf("$edgeAgent shows configurations: %v", doc["configurations"])
	}

	got, err := c.GetConfiguration(ctx, "chiller-module-settings")
	if err != nil {
		t.Fatal(err)
	}
	if r := got.SystemMetrics.Results; r[hubapi.MetricTargeted] != 1 || r[hubapi.MetricApplied] != 1 {
		t.Errorf("system metrics %v, want 1 module twin targeted and applied", r)
	}
	if q := got.SystemMetrics.Queries[hubapi.MetricTargeted]; !strings.Contains(q, "from devices.modules") {
		t.Errorf("targetedCount query %q", q)
	}
	// IoT Hub's queries for the system metrics run as queries too, over
	// the module twins' configurations, and find the same module twin.
	for _, m := range []string{hubapi.MetricTargeted, hubapi.MetricApplied} {
		q := got.SystemMetrics.Queries[m]
		waitFor(t, m+" query finds plant-1/chiller", func() bool {
			items, _, err := c.Query(ctx, q, 0)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			return len(items) == 1 && string(items[0]) == `{"deviceId":"plant-1","moduleId":"chiller"}`
		})
	}
	items, _, err := c.Query(ctx, "SELECT * FROM devices.modules WHERE IS_DEFINED(configurations)", 0)
	if err != nil || len(items) != 1 || !strings.Contains(string(items[0]), `"configurations":{"chiller-module-settings":{"status":"Applied"}}`) {
		t.Errorf("module twins with configurations: %v, %s", err, items)
	}
	// The custom metric runs over module twins: none reports 38 yet.
	if r := got.Metrics.Results["compliant"]; r != 0 {
		t.Errorf("custom metric compliant = %d, want 0", r)
	}

	bad := configurationFixture(t, "module-chiller.json")
	bad.ID, bad.TargetCondition = "bad-module", "tags.kind = 'chiller'"
	_, err = c.CreateConfiguration(ctx, bad)
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, "FROM devices.modules WHERE") {
		t.Errorf("a module configuration over device twins: %v, want 400 naming FROM devices.modules WHERE", err)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
