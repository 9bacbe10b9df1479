package hub_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
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
		return getTwinJSON(t, h, "/twins/plant-1/modules/"+module)
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

// TestModuleConfigurationsConvergeAfterRestart changes module twins' tags
// and adds a module configuration while the hub is down (straight in its
// store): the restarted hub, which leaves alone the module twins decided
// on what they still are, evaluates these and applies what now targets
// them.
func TestModuleConfigurationsConvergeAfterRestart(t *testing.T) {
	hubtest.FileStoreOnly(t) // changes the store while the hub is down
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "plant-1"}); err != nil {
		t.Fatal(err)
	}
	for id, kind := range map[string]string{"a": "chiller", "b": "pump", "c": "chiller"} {
		if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "plant-1", ModuleID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PatchTwin(ctx, "plant-1", id, []byte(`{"tags":{"kind":"`+kind+`"}}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateConfiguration(ctx, configurationFixture(t, "module-chiller.json")); err != nil {
		t.Fatal(err)
	}
	configurations := func(module string) string {
		return jsonString(getTwinJSON(t, h, "/twins/plant-1/modules/"+module)["configurations"])
	}
	applied := `{"chiller-module-settings":{"status":"Applied"}}`
	waitFor(t, "a and c get the chiller settings", func() bool {
		return configurations("a") == applied && configurations("c") == applied
	})

	// While the hub is down, apart: twins change (their decisions stand
	// on the twins as they were), then a configuration comes.
	whileDown := func(change func(reg *registry.Registry) error) {
		t.Helper()
		h.Stop()
		st, err := store.Open(filepath.Join(dir, "store"))
		if err != nil {
			t.Fatal(err)
		}
		if err := change(registry.New(st)); err != nil {
			t.Fatal(err)
		}
		st.Close()
		h = hubtest.Start(t, hubtest.Options{DataDir: dir})
	}
	whileDown(func(reg *registry.Registry) error {
		for id, kind := range map[string]string{"a": "pump", "b": "chiller"} {
			if _, err := reg.UpdateTwin("plant-1", id, "", func(tw *twin.Twin) (bool, error) {
				return tw.PatchTags([]byte(`{"kind":"`+kind+`"}`), time.Now())
			}); err != nil {
				return err
			}
		}
		return nil
	})
	waitFor(t, "b, now a chiller, gets the chiller settings", func() bool { return configurations("b") == applied })
	waitFor(t, "a, now a pump, shows no configuration", func() bool { return configurations("a") == "null" })

	whileDown(func(reg *registry.Registry) error {
		_, err := reg.CreateConfiguration(registry.Configuration{ID: "c-fan", Priority: 20, TargetCondition: "FROM devices.modules WHERE moduleId = 'c'",
			Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.fan": "high"}`)}})
		return err
	})
	waitFor(t, "c gets c-fan", func() bool {
		return configurations("c") == `{"c-fan":{"status":"Applied"},"chiller-module-settings":{"status":"Targeted"}}`
	})
	tw, err := h.Client(t).GetTwin(ctx, "plant-1", "c")
	if err != nil {
		t.Fatal(err)
	}
	if d := string(tw.DesiredJSON()); !strings.Contains(d, `"fan":"high"`) || !strings.Contains(d, "chillerWaterSettings") {
		t.Errorf("c's desired after the restart: %s", d)
	}
}
