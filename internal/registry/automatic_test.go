package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// configFixture reads a configuration from fixtures/configurations.
func configFixture(t *testing.T, name string) Configuration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "configurations", name))
	if err != nil {
		t.Fatal(err)
	}
	var c Configuration
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

func mustCreateConfig(t *testing.T, r *Registry, c Configuration) Configuration {
	t.Helper()
	out, err := r.CreateConfiguration(c)
	if err != nil {
		t.Fatalf("create configuration %s: %v", c.ID, err)
	}
	return out
}

// deviceWithTags creates a device whose twin has tags.
func deviceWithTags(t *testing.T, r *Registry, id, tags string) {
	t.Helper()
	if _, err := r.CreateDevice(Device{DeviceID: id}); err != nil {
		t.Fatal(err)
	}
	setTags(t, r, id, tags)
}

func setTags(t *testing.T, r *Registry, id, tags string) {
	t.Helper()
	if _, err := r.UpdateTwin(id, "", "", func(tw *twin.Twin) (bool, error) {
		return tw.ReplaceTags([]byte(tags), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
}

// deployed returns the deployment in a device's agent twin (nil for none)
// and the desired properties of one of its module twins.
func deployed(t *testing.T, r *Registry, deviceID, module string) (*deployment.Manifest, map[string]any) {
	t.Helper()
	agent, err := r.GetTwin(deviceID, AgentModule)
	if err != nil {
		t.Fatal(err)
	}
	if len(agent.Desired()) == 0 {
		return nil, nil
	}
	m, _, err := deployment.FromAgentDesired(agent.DesiredJSON())
	if err != nil {
		t.Fatalf("%s: agent desired: %v", deviceID, err)
	}
	var desired map[string]any
	if module != "" {
		if tw, err := r.GetTwin(deviceID, module); err == nil {
			desired = tw.Desired()
		}
	}
	return m, desired
}

func statuses(t *testing.T, r *Registry, deviceID string) map[string]string {
	t.Helper()
	cfgs, err := r.DeviceConfigurations(deviceID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for id, s := range cfgs {
		out[id] = s.Status
	}
	return out
}

func sameStatuses(got map[string]string, want ...string) bool {
	if len(got) != len(want)/2 {
		return false
	}
	for i := 0; i < len(want); i += 2 {
		if got[want[i]] != want[i+1] {
			return false
		}
	}
	return true
}

// TestAutomaticPriorityAndLayers checks which deployment each device gets:
// the highest priority base, layers of higher priority merged on top, and
// nothing for a device no deployment targets.
func TestAutomaticPriorityAndLayers(t *testing.T) {
	r, _ := newRegistry(t)
	deviceWithTags(t, r, "plain", `{"environment":"prod"}`)
	deviceWithTags(t, r, "canary", `{"environment":"prod","ring":"canary"}`)
	deviceWithTags(t, r, "filtered", `{"environment":"prod","filter":true}`)
	deviceWithTags(t, r, "canary-filtered", `{"environment":"prod","ring":"canary","filter":true}`)
	deviceWithTags(t, r, "dev", `{"environment":"dev","filter":true}`)
	for _, f := range []string{"base-tempsensor.json", "base-canary.json", "layered-filter.json"} {
		mustCreateConfig(t, r, configFixture(t, f))
	}
	// A layer below the bases' priorities: it targets, but a base sets all of
	// $edgeAgent's desired properties over it.
	low := configFixture(t, "layered-filter.json")
	low.ID, low.Priority = "layered-low", 1
	mustCreateConfig(t, r, low)

	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	for _, id := range []string{"plain", "canary", "filtered", "canary-filtered", "dev"} {
		if err := a.Evaluate(id); err != nil {
			t.Fatalf("evaluate %s: %v", id, err)
		}
	}

	m, sensor := deployed(t, r, "plain", "tempSensor")
	if m == nil || m.Modules["tempSensor"].Version != "1.0" || len(m.Modules) != 1 || fmt.Sprint(sensor["SendInterval"]) != "5" {
		t.Fatalf("plain: %+v, tempSensor desired %v", m, sensor)
	}
	if got := statuses(t, r, "plain"); !sameStatuses(got, "base-tempsensor", "Applied") {
		t.Fatalf("plain: configurations %v", got)
	}

	m, sensor = deployed(t, r, "canary", "tempSensor")
	if m == nil || m.Modules["tempSensor"].Version != "2.0" || fmt.Sprint(sensor["SendInterval"]) != "1" {
		t.Fatalf("canary: the higher priority deployment did not win: %+v, %v", m, sensor)
	}
	if got := statuses(t, r, "canary"); !sameStatuses(got, "base-canary", "Applied", "base-tempsensor", "Targeted") {
		t.Fatalf("canary: configurations %v", got)
	}

	m, sensor = deployed(t, r, "filtered", "tempSensor")
	if m == nil || m.Modules["tempSensor"].Version != "1.0" || m.Modules["filter"].Image != "mcr.microsoft.com/azureiotedge-samples/filter:1.0" {
		t.Fatalf("filtered: the layer's module is missing: %+v", m)
	}
	// The layer sets one property of tempSensor's desired and keeps the base's others.
	if fmt.Sprint(sensor["SendInterval"]) != "2" || sensor["SendData"] != true {
		t.Fatalf("filtered: tempSensor desired %v, want SendInterval 2 from the layer and SendData from the base", sensor)
	}
	if _, filter := deployed(t, r, "filtered", "filter"); fmt.Sprint(filter["TemperatureThreshold"]) != "25" {
		t.Fatalf("filtered: filter desired %v", filter)
	}
	if got := statuses(t, r, "filtered"); !sameStatuses(got, "base-tempsensor", "Applied", "layered-filter", "Applied", "layered-low", "Targeted") {
		t.Fatalf("filtered: configurations %v", got)
	}

	m, _ = deployed(t, r, "canary-filtered", "")
	if m == nil || m.Modules["tempSensor"].Version != "2.0" || m.Modules["filter"].Version != "1.0" {
		t.Fatalf("canary-filtered: %+v", m)
	}

	if m, _ := deployed(t, r, "dev", ""); m != nil {
		t.Fatalf("dev got a deployment no condition targets it with: %+v", m)
	}
	if got := statuses(t, r, "dev"); len(got) != 0 {
		t.Fatalf("dev: configurations %v", got)
	}
}

// loadAll reads the stored configurations, as Run does first.
func (a *AutoDeployer) loadAll(t *testing.T) {
	t.Helper()
	recs, err := a.r.st.List(configurationPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		a.load(rec)
	}
}

// TestAutomaticTieGoesToNewest checks IoT Edge's rule for equal priorities:
// the most recently created deployment wins.
func TestAutomaticTieGoesToNewest(t *testing.T) {
	r, _ := newRegistry(t)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.SetClock(func() time.Time { return clock })
	deviceWithTags(t, r, "d", `{"environment":"prod","ring":"canary"}`)
	newer := configFixture(t, "base-tempsensor.json")
	newer.ID = "a-newer" // sorts first: the id does not decide
	older := configFixture(t, "base-canary.json")
	older.ID, older.Priority = "z-older", newer.Priority
	mustCreateConfig(t, r, older)
	clock = clock.Add(time.Second)
	mustCreateConfig(t, r, newer)
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	if err := a.Evaluate("d"); err != nil {
		t.Fatal(err)
	}
	if m, _ := deployed(t, r, "d", ""); m == nil || m.Modules["tempSensor"].Version != "1.0" {
		t.Fatalf("the older deployment won a tie: %+v", m)
	}
}

// runDeployer runs an AutoDeployer until the test ends.
// restart closes r's store and opens a registry over dir again with a
// deployer running, as a hub started again does.
func restart(t *testing.T, r *Registry, dir string) *Registry {
	t.Helper()
	r.st.Close()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r = New(st)
	runDeployer(t, r)
	return r
}

func runDeployer(t *testing.T, r *Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.NewAutoDeployer(nil).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// eventually waits (up to a minute, for a loaded machine) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not the case after a minute: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func version(t *testing.T, r *Registry, deviceID string) string {
	m, _ := deployed(t, r, deviceID, "")
	if m == nil {
		return ""
	}
	return m.Modules["tempSensor"].Version
}

// TestAutomaticTagChanges follows a device whose tags move in and out of
// target conditions, with the deployer running, and a per-device
// deployment's interplay with automatic ones.
func TestAutomaticTagChanges(t *testing.T) {
	r, _ := newRegistry(t)
	runDeployer(t, r)
	mustCreateConfig(t, r, configFixture(t, "base-tempsensor.json"))
	mustCreateConfig(t, r, configFixture(t, "base-canary.json"))
	deviceWithTags(t, r, "d", `{"environment":"dev"}`)
	deviceWithTags(t, r, "other", `{"environment":"prod"}`)
	eventually(t, "other gets base-tempsensor", func() bool { return version(t, r, "other") == "1.0" })
	if version(t, r, "d") != "" {
		t.Fatal("d got a deployment that does not target it")
	}

	setTags(t, r, "d", `{"environment":"prod"}`)
	eventually(t, "d gets base-tempsensor", func() bool { return version(t, r, "d") == "1.0" })
	setTags(t, r, "d", `{"environment":"prod","ring":"canary"}`)
	eventually(t, "d moves to base-canary", func() bool { return version(t, r, "d") == "2.0" })

	man, _, err := deployment.Parse([]byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: localhost:5000/web:1\n"), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ApplyDeployment("d", man); !errors.Is(err, ErrManaged) || !strings.Contains(err.Error(), "base-canary") {
		t.Fatalf("a per-device deployment over an automatic one: %v", err)
	}

	// Out of every condition: the device keeps what it runs, targeted by nothing.
	setTags(t, r, "d", `{"environment":"retired"}`)
	eventually(t, "d is targeted by nothing", func() bool { return len(statuses(t, r, "d")) == 0 })
	if v := version(t, r, "d"); v != "2.0" {
		t.Fatalf("d lost its last deployment when no longer targeted: tempSensor %q", v)
	}
	// Now a per-device deployment is the device's own business.
	if err := r.ApplyDeployment("d", man); err != nil {
		t.Fatalf("a per-device deployment on an untargeted device: %v", err)
	}
	if m, _ := deployed(t, r, "d", ""); m == nil || m.Modules["web"].Image == "" {
		t.Fatalf("per-device deployment not applied: %+v", m)
	}
	// Targeted again: the automatic deployment replaces it.
	setTags(t, r, "d", `{"environment":"prod"}`)
	eventually(t, "d gets base-tempsensor again", func() bool { return version(t, r, "d") == "1.0" })

	// A configuration's change re-evaluates every device: a lower priority
	// takes canary's lead away.
	c, err := r.GetConfiguration("base-canary")
	if err != nil {
		t.Fatal(err)
	}
	setTags(t, r, "other", `{"environment":"prod","ring":"canary"}`)
	eventually(t, "other moves to base-canary", func() bool { return version(t, r, "other") == "2.0" })
	c.Priority = 1
	if _, err := r.UpdateConfiguration(c, c.ETag); err != nil {
		t.Fatal(err)
	}
	eventually(t, "other back to base-tempsensor", func() bool { return version(t, r, "other") == "1.0" })
	if err := r.DeleteConfiguration("base-tempsensor", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "other back to base-canary once base-tempsensor is gone", func() bool { return version(t, r, "other") == "2.0" })
}

// TestAutomaticConvergesAfterRestart changes tags and configurations while no
// deployer runs (a hub that was down), then starts one: every device ends up
// with what it should have.
func TestAutomaticConvergesAfterRestart(t *testing.T) {
	r, dir := newRegistry(t)
	mustCreateConfig(t, r, configFixture(t, "base-tempsensor.json"))
	for _, id := range []string{"a", "b", "c"} {
		deviceWithTags(t, r, id, `{"environment":"prod"}`)
	}
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	for _, id := range []string{"a", "b", "c"} {
		if err := a.Evaluate(id); err != nil {
			t.Fatal(err)
		}
	}
	// While the hub is down: b moves to canary, c leaves, a new device comes.
	mustCreateConfig(t, r, configFixture(t, "base-canary.json"))
	setTags(t, r, "b", `{"environment":"prod","ring":"canary"}`)
	setTags(t, r, "c", `{"environment":"lab"}`)
	deviceWithTags(t, r, "new", `{"environment":"prod"}`)
	r = restart(t, r, dir)
	eventually(t, "b runs base-canary", func() bool { return version(t, r, "b") == "2.0" })
	eventually(t, "new runs base-tempsensor", func() bool { return version(t, r, "new") == "1.0" })
	eventually(t, "c is targeted by nothing", func() bool { return len(statuses(t, r, "c")) == 0 })
	if version(t, r, "a") != "1.0" || version(t, r, "c") != "1.0" {
		t.Fatalf("a: %q, c: %q; both keep base-tempsensor", version(t, r, "a"), version(t, r, "c"))
	}
}

// report writes what a device's agent reports about its deployment.
func report(t *testing.T, r *Registry, deviceID string, current bool, code int) {
	t.Helper()
	if _, err := r.UpdateTwin(deviceID, AgentModule, "", func(tw *twin.Twin) (bool, error) {
		v := tw.DesiredVersion()
		if !current {
			v--
		}
		b, _ := json.Marshal(map[string]any{"lastDesiredVersion": v, "lastDesiredStatus": map[string]any{"code": code}})
		return tw.PatchReported(b, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
}

// TestConfigurationMetrics checks the system metrics from devices' states and
// their agents' reports.
func TestConfigurationMetrics(t *testing.T) {
	r, _ := newRegistry(t)
	for _, f := range []string{"base-tempsensor.json", "base-canary.json"} {
		mustCreateConfig(t, r, configFixture(t, f))
	}
	devices := map[string]string{
		"ok": `{"environment":"prod"}`, "failed": `{"environment":"prod"}`, "stale": `{"environment":"prod"}`,
		"silent": `{"environment":"prod"}`, "canary": `{"environment":"prod","ring":"canary"}`, "dev": `{"environment":"dev"}`,
	}
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	for id, tags := range devices {
		deviceWithTags(t, r, id, tags)
		if err := a.Evaluate(id); err != nil {
			t.Fatal(err)
		}
	}
	report(t, r, "ok", true, 200)
	report(t, r, "failed", true, 500)
	report(t, r, "stale", false, 200) // an earlier deployment: counts as neither
	report(t, r, "canary", true, 200)

	c, err := r.GetConfiguration("base-tempsensor")
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	if err := r.ConfigurationMetrics(&c, func(q string) (int64, error) { asked = append(asked, q); return 42, nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"targetedCount": 5, "appliedCount": 4, "reportedSuccessfulCount": 1, "reportedFailedCount": 1}
	for k, v := range want {
		if c.SystemMetrics.Results[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, c.SystemMetrics.Results[k], v, c.SystemMetrics.Results)
		}
	}
	if q := c.SystemMetrics.Queries["appliedCount"]; !strings.Contains(q, "configurations.[[base-tempsensor]].status = 'Applied'") {
		t.Errorf("appliedCount query %q", q)
	}
	if c.Metrics.Results["prodDevices"] != 42 || len(asked) != 1 || !strings.Contains(asked[0], "tags.environment = 'prod'") {
		t.Errorf("custom metric: results %v, queries run %q", c.Metrics.Results, asked)
	}
	canary, _ := r.GetConfiguration("base-canary")
	if err := r.ConfigurationMetrics(&canary, nil); err != nil {
		t.Fatal(err)
	}
	if got := canary.SystemMetrics.Results; got[hubapi.MetricTargeted] != 1 || got[hubapi.MetricApplied] != 1 || got[hubapi.MetricReportedSucceeded] != 1 {
		t.Errorf("base-canary metrics %v", got)
	}
}

// TestConfigurationValidation checks that bad configurations are refused
// with errors that say where.
func TestConfigurationValidation(t *testing.T) {
	r, _ := newRegistry(t)
	good := configFixture(t, "base-tempsensor.json")
	cases := map[string]struct {
		edit func(c *Configuration)
		want string
	}{
		"upper-case id": {func(c *Configuration) { c.ID = "Base" }, `use "base"`},
		"bad condition": {func(c *Configuration) { c.TargetCondition = "tags.x = " }, "targetCondition"},
		"negative":      {func(c *Configuration) { c.Priority = -1 }, "priority -1"},
		"no content":    {func(c *Configuration) { c.Content = hubapi.ConfigurationContent{} }, "exactly one of modulesContent"},
		"image missing": {func(c *Configuration) {
			c.Content.ModulesContent = []byte(strings.Replace(string(c.Content.ModulesContent), `"image":"mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5",`, "", 1))
		}, "content.modulesContent.$edgeAgent.properties.desired.modules.tempSensor.settings.image"},
		"unknown member": {func(c *Configuration) { c.Content.ModulesContent = []byte(`{"$edgeAgent":{"desired":{}}}`) }, "content.modulesContent.$edgeAgent.desired: unknown member"},
		"layer no image": {func(c *Configuration) {
			c.Content.ModulesContent = []byte(`{"$edgeAgent":{"properties.desired.modules.x":{"type":"docker","settings":{}}}}`)
		}, "modules.x.settings.image"},
		"empty metric": {func(c *Configuration) { c.Metrics = &hubapi.ConfigurationMetrics{Queries: map[string]string{"m": " "}} }, "metrics.queries.m"},
	}
	for name, tc := range cases {
		c := good
		compact, _ := json.Marshal(json.RawMessage(c.Content.ModulesContent))
		c.Content.ModulesContent = compact
		tc.edit(&c)
		_, err := r.CreateConfiguration(c)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, err, tc.want)
		}
	}
	c := mustCreateConfig(t, r, good)
	if _, err := r.CreateConfiguration(good); !errors.Is(err, ErrExists) {
		t.Errorf("second create: %v", err)
	}
	changed := c
	changed.Content.ModulesContent = configFixture(t, "base-canary.json").Content.ModulesContent
	if _, err := r.UpdateConfiguration(changed, c.ETag); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "content cannot be changed") {
		t.Errorf("content change: %v", err)
	}
	c.Priority = 50
	upd, err := r.UpdateConfiguration(c, c.ETag)
	if err != nil || upd.CreatedTimeUtc != c.CreatedTimeUtc || upd.ETag == c.ETag {
		t.Fatalf("update: %+v, %v", upd, err)
	}
	if _, err := r.UpdateConfiguration(c, c.ETag); !errors.Is(err, ErrPrecondition) {
		t.Errorf("update with a stale etag: %v", err)
	}
	if err := r.DeleteConfiguration(c.ID, c.ETag); !errors.Is(err, ErrPrecondition) {
		t.Errorf("delete with a stale etag: %v", err)
	}
	if err := r.DeleteConfiguration(c.ID, upd.ETag); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetConfiguration(c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
}
