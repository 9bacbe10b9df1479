package hub_test

import (
	"encoding/json"
	"errors"
	"os"
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

func configurationFixture(t *testing.T, name string) hubapi.Configuration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "configurations", name))
	if err != nil {
		t.Fatal(err)
	}
	var c hubapi.Configuration
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// getTwinJSON is the twin at path (GET /twins/…) as the owner reads it.
func getTwinJSON(t *testing.T, h *hubtest.Hub, path string) map[string]any {
	t.Helper()
	code, body := raw(t, h, "GET", path, ownerAuth(t, h), nil)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// waitFor polls until cond holds, for up to a minute (a loaded machine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not the case after a minute: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConfigurationsAPI drives automatic deployments over the hub's REST API:
// create, read with metrics, the $edgeAgent twin's configurations, a refused
// per-device deployment, update with If-Match, validation errors, delete.
func TestConfigurationsAPI(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	for id, tags := range map[string]string{"edge-1": `{"environment":"prod"}`, "edge-2": `{"environment":"dev"}`} {
		if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PatchTwin(ctx, id, "", []byte(`{"tags":`+tags+`}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := c.CreateConfiguration(ctx, configurationFixture(t, "base-tempsensor.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ETag == "" || cfg.CreatedTimeUtc == "" || cfg.SchemaVersion != "1.0" {
		t.Fatalf("created: %+v", cfg)
	}
	if _, err := c.CreateConfiguration(ctx, configurationFixture(t, "base-tempsensor.json")); !errors.Is(err, hubclient.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}

	agentTwin := func(device string) map[string]any {
		return getTwinJSON(t, h, "/twins/"+device+"/modules/"+registry.AgentModule)
	}
	waitFor(t, "edge-1 shows base-tempsensor applied", func() bool {
		cfgs, _ := agentTwin("edge-1")["configurations"].(map[string]any)
		st, _ := cfgs["base-tempsensor"].(map[string]any)
		return st["status"] == "Applied"
	})
	if _, ok := agentTwin("edge-2")["configurations"]; ok {
		t.Fatalf("edge-2 shows configurations though none targets it")
	}
	agent, err := c.GetTwin(ctx, "edge-1", registry.AgentModule)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(agent.DesiredJSON()), "azureiotedge-simulated-temperature-sensor") {
		t.Fatalf("edge-1 $edgeAgent desired: %s", agent.DesiredJSON())
	}

	got, err := c.GetConfiguration(ctx, "base-tempsensor")
	if err != nil {
		t.Fatal(err)
	}
	if got.SystemMetrics == nil || got.SystemMetrics.Results["targetedCount"] != 1 || got.SystemMetrics.Results["appliedCount"] != 1 {
		t.Fatalf("system metrics: %+v", got.SystemMetrics)
	}
	// The custom metric runs through the query language: one prod device.
	if got.Metrics == nil || got.Metrics.Results["prodDevices"] != 1 {
		t.Fatalf("custom metrics: %+v", got.Metrics)
	}
	var sent, back any
	json.Unmarshal(configurationFixture(t, "base-tempsensor.json").Content.ModulesContent, &sent)
	json.Unmarshal(got.Content.ModulesContent, &back)
	if !jsonEqual(sent, back) {
		t.Fatal("content read back differs from the content sent")
	}

	// A per-device deployment to a device an automatic one manages: 409, naming it.
	_, err = c.ApplyConfiguration(ctx, "edge-1", fixture(t, "iotedge-quickstart.json"))
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 409 || !strings.Contains(he.Message, "base-tempsensor") {
		t.Fatalf("per-device deployment to a managed device: %v", err)
	}

	// Update: priority and condition change with the etag, content must not.
	got.TargetCondition = "tags.environment='dev'"
	upd, err := c.UpdateConfiguration(ctx, got, got.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateConfiguration(ctx, got, got.ETag); !errors.Is(err, hubclient.ErrPrecondition) {
		t.Fatalf("update with a stale etag: %v", err)
	}
	waitFor(t, "edge-2 gets it, edge-1 is no longer targeted", func() bool {
		_, two := agentTwin("edge-2")["configurations"]
		_, one := agentTwin("edge-1")["configurations"]
		return two && !one
	})

	// Validation errors say where.
	for name, tc := range map[string]struct {
		edit func(*hubapi.Configuration)
		want string
	}{
		"condition": {func(c *hubapi.Configuration) { c.TargetCondition = "tags.x = " }, "targetCondition"},
		"image": {func(c *hubapi.Configuration) {
			c.Content.ModulesContent = json.RawMessage(strings.Replace(string(c.Content.ModulesContent), `"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5", `, "", 1))
		}, "content.modulesContent.$edgeAgent.properties.desired.modules.tempSensor.settings.image"},
		"id": {func(c *hubapi.Configuration) { c.ID = "Prod" }, "upper-case"},
	} {
		bad := configurationFixture(t, "base-tempsensor.json")
		bad.ID = "bad-" + name
		tc.edit(&bad)
		_, err := c.CreateConfiguration(ctx, bad)
		if !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, tc.want) {
			t.Errorf("%s: %v, want 400 naming %q", name, err, tc.want)
		}
	}

	list, err := c.ListConfigurations(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "base-tempsensor" {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if err := c.DeleteConfiguration(ctx, "base-tempsensor", upd.ETag); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetConfiguration(ctx, "base-tempsensor"); !errors.Is(err, hubclient.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestConfigurationsConvergeAfterRestart changes a device's tags while the
// hub is down (straight in its store): the restarted hub applies the
// deployment that now targets the device.
func TestConfigurationsConvergeAfterRestart(t *testing.T) {
	hubtest.FileStoreOnly(t) // changes the store while the hub is down
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "edge-1", Capabilities: &hubapi.Capabilities{IoTEdge: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateConfiguration(ctx, configurationFixture(t, "base-tempsensor.json")); err != nil {
		t.Fatal(err)
	}
	h.Stop()

	st, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.New(st).UpdateTwin("edge-1", "", "", func(tw *twin.Twin) (bool, error) {
		return tw.PatchTags([]byte(`{"environment":"prod"}`), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	h = hubtest.Start(t, hubtest.Options{DataDir: dir})
	c = h.Client(t)
	waitFor(t, "the restarted hub applies base-tempsensor to edge-1", func() bool {
		cfg, err := c.GetConfiguration(ctx, "base-tempsensor")
		return err == nil && cfg.SystemMetrics.Results[hubapi.MetricApplied] == 1
	})
	agent, err := c.GetTwin(ctx, "edge-1", registry.AgentModule)
	if err != nil || !strings.Contains(string(agent.DesiredJSON()), "azureiotedge-simulated-temperature-sensor") {
		t.Fatalf("edge-1 $edgeAgent desired after the restart: %v", err)
	}
}
