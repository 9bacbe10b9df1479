package hub_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

// The deployment-monitoring queries of IoT Hub over the $edgeAgent twins'
// configurations: custom metrics of a deployment, and plain queries.
const (
	appliedQuery  = "SELECT deviceId FROM devices.modules WHERE moduleId='$edgeAgent' AND configurations.[[base-tempsensor]].status='Applied'"
	targetedQuery = "SELECT deviceId FROM devices.modules WHERE moduleId='$edgeAgent' AND configurations.[[base-tempsensor]].status='Targeted'"
)

// TestConfigurationsInQueries runs two automatic deployments over three edge
// devices: the configurations each $edgeAgent twin shows are what queries
// and custom metric queries see, and they follow tag changes.
func TestConfigurationsInQueries(t *testing.T) {
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	c := h.Client(t)
	for _, id := range []string{"edge-1", "edge-2", "edge-3"} {
		if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: id, Capabilities: &hubapi.Capabilities{IoTEdge: true}}); err != nil {
			t.Fatal(err)
		}
	}
	setTags(t, c, "edge-1", `{"environment":"prod"}`)
	setTags(t, c, "edge-2", `{"environment":"prod"}`)
	setTags(t, c, "edge-3", `{"environment":"prod","ring":"canary"}`)
	base := configurationFixture(t, "base-tempsensor.json")
	base.Metrics = &hubapi.ConfigurationMetrics{Queries: map[string]string{"applied": appliedQuery, "targeted": targetedQuery}}
	if _, err := c.CreateConfiguration(ctx, base); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateConfiguration(ctx, configurationFixture(t, "base-canary.json")); err != nil {
		t.Fatal(err)
	}

	// metrics answers "applied targeted appliedCount" of base-tempsensor.
	metrics := func() string {
		cfg, err := c.GetConfiguration(ctx, "base-tempsensor")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("applied %d, targeted %d, appliedCount %d", cfg.Metrics.Results["applied"], cfg.Metrics.Results["targeted"], cfg.SystemMetrics.Results[hubapi.MetricApplied])
	}
	// canary wins on edge-3 (priority 20): base-tempsensor is only targeted there.
	expectMetrics(t, metrics, "applied 2, targeted 1, appliedCount 2")
	wantIDs(t, c, appliedQuery, "edge-1,edge-2")
	wantIDs(t, c, "SELECT * FROM devices.modules WHERE configurations.[[base-canary]].status = 'Applied'", "edge-3/$edgeAgent")
	// SELECT * rows carry the configurations as GET /twins shows them.
	items, _, err := c.Query(ctx, "SELECT * FROM devices.modules WHERE deviceId = 'edge-3' AND moduleId = '$edgeAgent'", 0)
	if err != nil || len(items) != 1 {
		t.Fatalf("SELECT * edge-3 $edgeAgent: %d items, %v", len(items), err)
	}
	var doc struct {
		Configurations map[string]hubapi.ConfigurationStatus `json:"configurations"`
	}
	if err := json.Unmarshal(items[0], &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]hubapi.ConfigurationStatus{"base-canary": {Status: "Applied"}, "base-tempsensor": {Status: "Targeted"}}
	if fmt.Sprint(doc.Configurations) != fmt.Sprint(want) {
		t.Errorf("SELECT * configurations: %s", items[0])
	}
	items, _, err = c.Query(ctx, "SELECT deviceId, configurations.[[base-tempsensor]].status AS base FROM devices.modules WHERE moduleId = '$edgeAgent'", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(joinRaw(items)); got != `{"base":"Applied","deviceId":"edge-1"} {"base":"Applied","deviceId":"edge-2"} {"base":"Targeted","deviceId":"edge-3"}` {
		t.Errorf("projection: %s", got)
	}
	// Only $edgeAgent twins have configurations.
	wantIDs(t, c, "SELECT * FROM devices WHERE IS_DEFINED(configurations)", "")
	wantIDs(t, c, "SELECT * FROM devices.modules WHERE IS_DEFINED(configurations) AND moduleId != '$edgeAgent'", "")

	// edge-2 joins the canary ring; edge-3 leaves prod: base-tempsensor is
	// applied to edge-1, targets edge-2, and no longer edge-3.
	setTags(t, c, "edge-2", `{"ring":"canary"}`)
	setTags(t, c, "edge-3", `{"environment":"dev"}`)
	expectMetrics(t, metrics, "applied 1, targeted 1, appliedCount 1")
	wantIDs(t, c, targetedQuery, "edge-2")
	wantIDs(t, c, "SELECT * FROM devices.modules WHERE IS_DEFINED(configurations)", "edge-1/$edgeAgent,edge-2/$edgeAgent")

	// A restarted hub reads the configurations from the store.
	h.Stop()
	h = hubtest.Start(t, hubtest.Options{DataDir: dir})
	c = h.Client(t)
	wantIDs(t, c, appliedQuery, "edge-1")
}

// expectMetrics waits until metrics() answers want (the hub applies
// deployments in the background).
func expectMetrics(t *testing.T, metrics func() string, want string) {
	t.Helper()
	waitFor(t, "metrics "+want, func() bool { return metrics() == want })
}

// setTags replaces the tags of device id's twin.
func setTags(t *testing.T, c *hubclient.Client, id, tags string) {
	t.Helper()
	if _, err := c.PatchTwin(ctx, id, "", []byte(`{"tags":`+tags+`}`), ""); err != nil {
		t.Fatal(err)
	}
}

// wantIDs checks that query q answers the rows of ids want (queryIDs).
func wantIDs(t *testing.T, c *hubclient.Client, q, want string) {
	t.Helper()
	if got := queryIDs(t, c, q); got != want {
		t.Errorf("%s: rows %q, want %q", q, got, want)
	}
}

// queryIDs runs q and answers the ids of its rows, "device/module" for a
// module twin, sorted and joined with ",".
func queryIDs(t *testing.T, c *hubclient.Client, q string) string {
	t.Helper()
	items, _, err := c.Query(ctx, q, 0)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var ids []string
	for _, it := range items {
		var row struct {
			DeviceID string `json:"deviceId"`
			ModuleID string `json:"moduleId"`
		}
		if err := json.Unmarshal(it, &row); err != nil {
			t.Fatal(err)
		}
		id := row.DeviceID
		if row.ModuleID != "" && strings.HasPrefix(strings.ToUpper(q), "SELECT *") {
			id += "/" + row.ModuleID
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

func joinRaw(items []json.RawMessage) []byte {
	var b []byte
	for i, it := range items {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, it...)
	}
	return b
}

// TestDeviceConfigurationsInQueries: the automatic device configurations
// (deviceContent) that target a device twin show in queries as GET
// /twins/{id} shows them, so that IoT Hub's appliedCount query of a device
// configuration, and a custom metric written the same way, answer; they
// follow tag changes and a restart.
func TestDeviceConfigurationsInQueries(t *testing.T) {
	const (
		applied  = "SELECT deviceId FROM devices WHERE configurations.[[chillers]].status = 'Applied'"
		targeted = "SELECT deviceId FROM devices WHERE configurations.[[chillers]].status = 'Targeted'"
	)
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	c := h.Client(t)
	for id, tags := range map[string]string{"c1": `{"kind":"chiller"}`, "c2": `{"kind":"chiller","site":"south"}`, "pump": `{"kind":"pump"}`} {
		if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		setTags(t, c, id, tags)
	}
	newConfig := func(id string, priority int64, cond, content string) hubapi.Configuration {
		return hubapi.Configuration{ID: id, Priority: priority, TargetCondition: cond,
			Content: hubapi.ConfigurationContent{DeviceContent: json.RawMessage(content)},
			Metrics: &hubapi.ConfigurationMetrics{Queries: map[string]string{"applied": applied}}}
	}
	if _, err := c.CreateConfiguration(ctx, newConfig("chillers", 10, "tags.kind = 'chiller'", `{"properties.desired.temperature": 38}`)); err != nil {
		t.Fatal(err)
	}
	metrics := func() string {
		cfg, err := c.GetConfiguration(ctx, "chillers")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("applied %d, appliedCount %d", cfg.Metrics.Results["applied"], cfg.SystemMetrics.Results[hubapi.MetricApplied])
	}
	expectMetrics(t, metrics, "applied 2, appliedCount 2")
	wantIDs(t, c, applied, "c1,c2")
	// A SELECT * row carries them as GET /twins/{id} does.
	sameAsGet := func(id string) {
		t.Helper()
		items, _, err := c.Query(ctx, "SELECT * FROM devices WHERE deviceId = '"+id+"'", 0)
		if err != nil || len(items) != 1 {
			t.Fatalf("SELECT * %s: %d items, %v", id, len(items), err)
		}
		var row, got struct {
			Configurations map[string]hubapi.ConfigurationStatus `json:"configurations"`
		}
		if err := json.Unmarshal(items[0], &row); err != nil {
			t.Fatal(err)
		}
		code, body := raw(t, h, "GET", "/twins/"+id, ownerAuth(t, h), nil)
		if code != 200 {
			t.Fatalf("GET /twins/%s: %d %s", id, code, body)
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Configurations) == 0 {
			t.Errorf("GET /twins/%s shows no configurations: %s", id, body)
		}
		if fmt.Sprint(row.Configurations) != fmt.Sprint(got.Configurations) {
			t.Errorf("%s: the query row has configurations %v, GET /twins %v", id, row.Configurations, got.Configurations)
		}
	}
	sameAsGet("c2")

	// A higher priority configuration on c2: chillers is only targeted there.
	if _, err := c.CreateConfiguration(ctx, newConfig("south", 20, "tags.site = 'south'", `{"properties.desired.fan": "high"}`)); err != nil {
		t.Fatal(err)
	}
	expectMetrics(t, metrics, "applied 1, appliedCount 1")
	wantIDs(t, c, targeted, "c2")
	wantIDs(t, c, "SELECT * FROM devices WHERE configurations.[[south]].status = 'Applied'", "c2")
	sameAsGet("c2")
	// c1 leaves the condition: targeted by nothing, no configurations.
	setTags(t, c, "c1", `{"kind":"retired"}`)
	expectMetrics(t, metrics, "applied 0, appliedCount 0")
	wantIDs(t, c, "SELECT * FROM devices WHERE IS_DEFINED(configurations)", "c2")
	// Device configurations are not the $edgeAgent twins' deployments.
	wantIDs(t, c, "SELECT * FROM devices.modules WHERE IS_DEFINED(configurations)", "")

	h.Stop()
	h = hubtest.Start(t, hubtest.Options{DataDir: dir})
	c = h.Client(t)
	wantIDs(t, c, targeted, "c2")
	sameAsGet("c2")
}
