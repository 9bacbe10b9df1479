package registry

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// moduleWithTags creates a module whose twin has tags.
func moduleWithTags(t *testing.T, r *Registry, deviceID, moduleID, tags string) {
	t.Helper()
	if _, err := r.CreateModule(Module{DeviceID: deviceID, ModuleID: moduleID}); err != nil {
		t.Fatal(err)
	}
	setModuleTags(t, r, deviceID, moduleID, tags)
}

func setModuleTags(t *testing.T, r *Registry, deviceID, moduleID, tags string) {
	t.Helper()
	if _, err := r.UpdateTwin(deviceID, moduleID, "", func(tw *twin.Twin) (bool, error) {
		return tw.ReplaceTags([]byte(tags), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
}

func moduleDesired(t *testing.T, r *Registry, deviceID, moduleID string) map[string]any {
	t.Helper()
	tw, err := r.GetTwin(deviceID, moduleID)
	if err != nil {
		t.Fatal(err)
	}
	return tw.Desired()
}

func moduleStatuses(t *testing.T, r *Registry, deviceID, moduleID string) map[string]string {
	t.Helper()
	cfgs, err := r.ModuleTwinConfigurations(deviceID, moduleID)
	return statusesOf(t, cfgs, err)
}

func systemMetrics(t *testing.T, r *Registry, id string) map[string]int64 {
	t.Helper()
	c, err := r.GetConfiguration(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ConfigurationMetrics(&c, nil); err != nil {
		t.Fatal(err)
	}
	return c.SystemMetrics.Results
}

const chillerWant = `{"pressure":78,"temperature":38}`

// TestAutomaticModuleConfigurations: a configuration with moduleContent
// writes its desired properties into every module twin its target
// condition (FROM devices.modules WHERE …) matches, on edge and leaf
// devices alike, but not into $edgeAgent or $edgeHub; the highest priority
// one per module twin; once, so a later change at the twin stays; a module
// twin that leaves the condition keeps what was written; a module created
// again starts over; the module twin's configurations and the system
// metrics say which applies where, and devices are not counted.
func TestAutomaticModuleConfigurations(t *testing.T) {
	r, _ := newRegistry(t)
	runDeployer(t, r)
	mustCreateConfig(t, r, configFixture(t, "module-chiller.json"))
	deviceWithTags(t, r, "edge", `{"kind":"chiller"}`) // the device twin's tags do not count
	moduleWithTags(t, r, "edge", "m1", `{"kind":"chiller"}`)
	moduleWithTags(t, r, "edge", "pump", `{"kind":"pump"}`)
	setModuleTags(t, r, "edge", AgentModule, `{"kind":"chiller"}`)
	if _, err := r.CreateDevice(Device{DeviceID: "leaf", Capabilities: &hubapi.Capabilities{IoTEdge: false}}); err != nil {
		t.Fatal(err)
	}
	moduleWithTags(t, r, "leaf", "sensor", `{"kind":"chiller"}`)

	for _, m := range [][2]string{{"edge", "m1"}, {"leaf", "sensor"}} {
		eventually(t, m[0]+"/"+m[1]+" gets the chiller settings", func() bool {
			return jsonOf(moduleDesired(t, r, m[0], m[1])["chillerWaterSettings"]) == chillerWant
		})
		if got := moduleStatuses(t, r, m[0], m[1]); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationApplied) {
			t.Errorf("%s/%s: module twin configurations %v", m[0], m[1], got)
		}
	}
	if d := moduleDesired(t, r, "edge", "pump"); len(d) != 0 {
		t.Errorf("pump, not targeted, got %v", d)
	}
	if d := moduleDesired(t, r, "edge", AgentModule); d["chillerWaterSettings"] != nil {
		t.Errorf("$edgeAgent got a module configuration: %v", d)
	}
	if got := deviceStatuses(t, r, "edge"); len(got) != 0 {
		t.Errorf("the device twin shows a module configuration: %v", got)
	}
	if got := statuses(t, r, "edge"); len(got) != 0 {
		t.Errorf("$edgeAgent shows a module configuration: %v", got)
	}
	if got := systemMetrics(t, r, "chiller-module-settings"); got[hubapi.MetricTargeted] != 2 || got[hubapi.MetricApplied] != 2 || len(got) != 2 {
		t.Errorf("metrics %v, want 2 module twins targeted and applied", got)
	}

	// A higher priority configuration wins where both target (a path in the
	// condition reads the module id); the lower one stays targeted there.
	hot := Configuration{ID: "hot-m1", Priority: 20, TargetCondition: "from devices.modules where tags.kind = 'chiller' and moduleId = 'm1'",
		Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.chillerWaterSettings.temperature": 30, "properties.desired.fan": "high"}`)}}
	mustCreateConfig(t, r, hot)
	eventually(t, "m1 gets hot-m1 on top", func() bool {
		d := moduleDesired(t, r, "edge", "m1")
		return d["fan"] == "high" && jsonOf(d["chillerWaterSettings"]) == `{"pressure":78,"temperature":30}`
	})
	eventually(t, "m1's configurations", func() bool {
		return sameStatuses(moduleStatuses(t, r, "edge", "m1"), "chiller-module-settings", hubapi.ConfigurationTargeted, "hot-m1", hubapi.ConfigurationApplied)
	})
	if d := moduleDesired(t, r, "leaf", "sensor"); d["fan"] != nil {
		t.Errorf("sensor, not targeted by hot-m1, got %v", d)
	}

	// Written once: an operator's later change at the twin stays, whatever
	// else changes on the module twin.
	if _, err := r.UpdateTwin("leaf", "sensor", "", func(tw *twin.Twin) (bool, error) {
		return tw.PatchDesired([]byte(`{"chillerWaterSettings":{"temperature":40}}`), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	setModuleTags(t, r, "leaf", "sensor", `{"kind":"chiller","floor":2}`)
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	if err := a.EvaluateModule("leaf", "sensor"); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(moduleDesired(t, r, "leaf", "sensor")["chillerWaterSettings"]); got != `{"pressure":78,"temperature":40}` {
		t.Fatalf("sensor's own change was overwritten: %s", got)
	}

	// Out of the condition: it keeps what was written and is targeted by nothing.
	setModuleTags(t, r, "leaf", "sensor", `{"kind":"retired"}`)
	eventually(t, "sensor targeted by nothing", func() bool { return len(moduleStatuses(t, r, "leaf", "sensor")) == 0 })
	if d := moduleDesired(t, r, "leaf", "sensor"); d["chillerWaterSettings"] == nil {
		t.Fatalf("sensor lost what the configuration wrote: %v", d)
	}
	if got := systemMetrics(t, r, "chiller-module-settings"); got[hubapi.MetricTargeted] != 1 || got[hubapi.MetricApplied] != 0 {
		t.Errorf("chiller-module-settings metrics %v, want 1 targeted (m1, where hot-m1 applies), 0 applied", got)
	}

	// A module created again starts from a fresh twin: once tagged, it
	// gets the content again (hot-m1's alone: the twin is new).
	if err := r.DeleteModule("edge", "m1", ""); err != nil {
		t.Fatal(err)
	}
	moduleWithTags(t, r, "edge", "m1", `{"kind":"chiller"}`)
	eventually(t, "m1, created again, gets hot-m1 again", func() bool {
		d := moduleDesired(t, r, "edge", "m1")
		return d["fan"] == "high" && jsonOf(d["chillerWaterSettings"]) == `{"temperature":30}`
	})

	// Deleting the winner: the next one applies where it targets.
	if err := r.DeleteConfiguration("hot-m1", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "m1 moves to chiller-module-settings", func() bool {
		return sameStatuses(moduleStatuses(t, r, "edge", "m1"), "chiller-module-settings", hubapi.ConfigurationApplied)
	})
	if d := moduleDesired(t, r, "edge", "m1"); d["fan"] != "high" || jsonOf(d["chillerWaterSettings"]) != chillerWant {
		t.Errorf("m1 after hot-m1 went: %v (a merge patch of chiller-module-settings on what hot-m1 left)", d)
	}
}

// TestModuleConfigurationsConvergeAfterRestart changes module tags and
// configurations while no deployer runs (a hub that was down), then starts
// one: every module twin ends up with what it should have.
func TestModuleConfigurationsConvergeAfterRestart(t *testing.T) {
	r, dir := newRegistry(t)
	mustCreateConfig(t, r, configFixture(t, "module-chiller.json"))
	deviceWithTags(t, r, "d", `{}`)
	moduleWithTags(t, r, "d", "a", `{"kind":"chiller"}`)
	moduleWithTags(t, r, "d", "b", `{"kind":"pump"}`)
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	for _, m := range []string{"a", "b"} {
		if err := a.EvaluateModule("d", m); err != nil {
			t.Fatal(err)
		}
	}
	if got := jsonOf(moduleDesired(t, r, "d", "a")["chillerWaterSettings"]); got != chillerWant {
		t.Fatalf("a: %s", got)
	}
	// While the hub is down: b becomes a chiller, a new module comes, a
	// second configuration targets a.
	setModuleTags(t, r, "d", "b", `{"kind":"chiller"}`)
	moduleWithTags(t, r, "d", "c", `{"kind":"chiller"}`)
	mustCreateConfig(t, r, Configuration{ID: "a-only", Priority: 50, TargetCondition: "FROM devices.modules WHERE moduleId = 'a'",
		Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired": {"only": "a"}}`)}})
	r = restart(t, r, dir)
	for _, m := range []string{"b", "c"} {
		eventually(t, m+" gets the chiller settings", func() bool {
			return jsonOf(moduleDesired(t, r, "d", m)["chillerWaterSettings"]) == chillerWant
		})
	}
	eventually(t, "a gets a-only", func() bool { return moduleDesired(t, r, "d", "a")["only"] == "a" })
	if got := moduleStatuses(t, r, "d", "a"); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationTargeted, "a-only", hubapi.ConfigurationApplied) {
		t.Errorf("a's configurations %v", got)
	}
}

// TestModuleConfigurationDeletedWhileDown: the last module configuration
// deleted while no deployer runs; the next one started clears what the
// module twins showed of it, and keeps what it wrote.
func TestModuleConfigurationDeletedWhileDown(t *testing.T) {
	r, _ := newRegistry(t)
	mustCreateConfig(t, r, configFixture(t, "module-chiller.json"))
	deviceWithTags(t, r, "d", `{}`)
	moduleWithTags(t, r, "d", "a", `{"kind":"chiller"}`)
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	if err := a.EvaluateModule("d", "a"); err != nil {
		t.Fatal(err)
	}
	if got := moduleStatuses(t, r, "d", "a"); len(got) != 1 {
		t.Fatalf("a's configurations %v", got)
	}
	if err := r.DeleteConfiguration("chiller-module-settings", ""); err != nil {
		t.Fatal(err)
	}
	runDeployer(t, r)
	eventually(t, "a shows no configuration", func() bool { return len(moduleStatuses(t, r, "d", "a")) == 0 })
	if got := jsonOf(moduleDesired(t, r, "d", "a")["chillerWaterSettings"]); got != chillerWant {
		t.Errorf("a lost what the configuration wrote: %s", got)
	}
}

// TestModuleConfigurationValidation: a module configuration's target
// condition must be over module twins (IoT Hub's FROM devices.modules
// WHERE …), the others' must not; bad moduleContent is refused naming the
// JSON path.
func TestModuleConfigurationValidation(t *testing.T) {
	r, _ := newRegistry(t)
	good := `{"properties.desired.x": 1}`
	for name, tc := range map[string]struct{ cond, content, want string }{
		"device condition": {"tags.kind = 'chiller'", good, "write it as FROM devices.modules WHERE"},
		"star":             {"*", good, "write it as FROM devices.modules WHERE"},
		"no where":         {"FROM devices.modules", good, "write it as FROM devices.modules WHERE"},
		"bad condition":    {"FROM devices.modules WHERE tags.x = ", good, "the condition after WHERE"},
		"not an object":    {"FROM devices.modules WHERE tags.x = 1", `[1]`, "content.moduleContent: want an object"},
		"other member":     {"FROM devices.modules WHERE tags.x = 1", `{"tags.x": 1}`, "content.moduleContent.tags.x: unknown member; a module configuration sets"},
		"whole not obj":    {"FROM devices.modules WHERE tags.x = 1", `{"properties.desired": 5}`, "content.moduleContent.properties.desired: must be an object"},
		"empty name":       {"FROM devices.modules WHERE tags.x = 1", `{"properties.desired.a..b": 5}`, "an empty name"},
	} {
		c := Configuration{ID: "m", TargetCondition: tc.cond, Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(tc.content)}}
		if _, err := r.CreateConfiguration(c); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, err, tc.want)
		}
	}
	dev := Configuration{ID: "d", TargetCondition: "FROM devices.modules WHERE tags.x = 1", Content: hubapi.ConfigurationContent{DeviceContent: json.RawMessage(good)}}
	if _, err := r.CreateConfiguration(dev); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "FROM devices.modules is for module configurations") {
		t.Errorf("a device configuration over module twins: %v", err)
	}
	for _, cond := range []string{"", "from  devices.modules\n where (tags.x = 1 OR deviceId = 'd')"} {
		c := Configuration{ID: "ok", TargetCondition: cond, Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(good)}}
		if _, err := r.CreateConfiguration(c); err != nil {
			t.Errorf("condition %q: %v", cond, err)
		}
		if err := r.DeleteConfiguration("ok", ""); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkEvaluateModuleUnchanged is what a module twin's change (say, a
// reported property) costs the hub while module configurations exist and
// the one that applies was written before: the common case.
func BenchmarkEvaluateModuleUnchanged(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	r := New(st)
	for _, c := range []Configuration{
		{ID: "a", Priority: 1, TargetCondition: "FROM devices.modules WHERE tags.kind = 'chiller'", Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.x": 1}`)}},
		{ID: "b", Priority: 2, TargetCondition: "FROM devices.modules WHERE tags.kind = 'chiller' AND moduleId = 'm'", Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.y": 2}`)}},
	} {
		if _, err := r.CreateConfiguration(c); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := r.CreateDevice(Device{DeviceID: "d"}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.UpdateTwin("d", "m", "", func(tw *twin.Twin) (bool, error) {
		return tw.ReplaceTags([]byte(`{"kind":"chiller"}`), time.Now())
	}); err != nil {
		b.Fatal(err)
	}
	a := r.NewAutoDeployer(nil)
	recs, err := st.List(configurationPrefix)
	if err != nil {
		b.Fatal(err)
	}
	for _, rec := range recs {
		a.load(rec)
	}
	if err := a.EvaluateModule("d", "m"); err != nil {
		b.Fatal(err)
	}
	if s, _, _ := r.moduleState("d", "m"); !strings.HasPrefix(s.Applied, "b@") {
		b.Fatalf("state %+v", s)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := a.EvaluateModule("d", "m"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateModulesAtStart is a hub start's evaluation of every
// module twin (as Run queues them) on a fleet whose decisions were made
// before (the common restart): 500 devices × 5 module twins, three module
// configurations (one targets most twins, one a few, one none), a fresh
// registry each round (its twin cache cold, as at start). decided: no
// twin changed since its decision; twinsChanged: each reported a property
// since.
func BenchmarkEvaluateModulesAtStart(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	r := New(st)
	for i, cond := range []string{"tags.role = 'sensor' AND moduleId != 'm4'", "tags.ring = 'canary'", "tags.role = 'gateway'"} {
		c := Configuration{ID: "c" + string(rune('0'+i)), Priority: int64(10 * i), TargetCondition: "FROM devices.modules WHERE " + cond,
			Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.bench": {"interval": 10}}`)}}
		if _, err := r.CreateConfiguration(c); err != nil {
			b.Fatal(err)
		}
	}
	const devices, modules = 500, 5
	var ids [][2]string
	for d := range devices {
		id := "device-" + strings.Repeat("0", 4) + string(rune('a'+d%26)) + strings.Repeat("x", d/26)
		if _, err := r.CreateDevice(Device{DeviceID: id}); err != nil {
			b.Fatal(err)
		}
		ring := "main"
		if d%100 == 0 {
			ring = "canary"
		}
		for m := range modules {
			mid := "m" + string(rune('0'+m))
			ids = append(ids, [2]string{id, mid})
			if _, err := r.CreateModule(Module{DeviceID: id, ModuleID: mid}); err != nil {
				b.Fatal(err)
			}
			if _, err := r.UpdateTwin(id, mid, "", func(tw *twin.Twin) (bool, error) {
				now := time.Now()
				if _, err := tw.PatchDesired([]byte(`{"interval":5,"units":"C","alerts":{"high":30,"low":-5}}`), now); err != nil {
					return false, err
				}
				if _, err := tw.PatchReported([]byte(`{"temperature":21.5,"firmware":"1.0.0"}`), now); err != nil {
					return false, err
				}
				return tw.PatchTags([]byte(`{"role":"sensor","ring":"`+ring+`"}`), now)
			}); err != nil {
				b.Fatal(err)
			}
		}
	}
	evaluateAll := func(r *Registry) int {
		a := r.NewAutoDeployer(nil)
		recs, err := st.List(configurationPrefix)
		if err != nil {
			b.Fatal(err)
		}
		for _, rec := range recs {
			a.load(rec)
		}
		if err := a.enqueueAllModules(); err != nil {
			b.Fatal(err)
		}
		a.q.close()
		n := 0
		for _, id := range a.q.order {
			dev, mod, _ := strings.Cut(id, "/")
			if err := a.EvaluateModule(dev, mod); err != nil {
				b.Fatal(err)
			}
			n++
		}
		return n
	}
	evaluateAll(r)
	run := func(b *testing.B) {
		n := 0
		for b.Loop() {
			n += evaluateAll(New(st))
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/twin")
	}
	b.Run("decided", run)
	// Every module twin reports a property after its decision: evaluated
	// (decided the same, nothing written).
	for _, id := range ids {
		if _, err := r.UpdateTwin(id[0], id[1], "", func(tw *twin.Twin) (bool, error) {
			return tw.PatchReported([]byte(`{"temperature":22}`), time.Now())
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("twinsChanged", run)
}

// startPass evaluates every module twin as a hub start does, with a new
// deployer on r's store, one twin at a time; it returns how many were
// evaluated and how many were not, their decision standing.
func startPass(t *testing.T, r *Registry) (evaluated, unchanged int64) {
	t.Helper()
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	if err := a.loadBasisAlias(); err != nil {
		t.Fatal(err)
	}
	p := a.beginModulePass()
	if err := a.enqueueAllModules(); err != nil {
		t.Fatal(err)
	}
	for _, id := range a.q.order {
		dev, mod, _ := strings.Cut(id, "/")
		if err := a.EvaluateModule(dev, mod); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.endModulePass(p); err != nil {
		t.Fatal(err)
	}
	return a.evaluated.Load(), a.skipped.Load()
}

func moduleStateVersion(t *testing.T, r *Registry, deviceID, moduleID string) int64 {
	t.Helper()
	_, v, err := r.moduleState(deviceID, moduleID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestModuleDecisionsKeptAcrossStarts: a start does not evaluate a module
// twin again whose decision was made on the twin as it is and on the
// module configurations as they are; it does evaluate a twin changed since
// (tags, a reported property) and every twin after a configuration was
// created, changed or deleted, and they end up as they should.
func TestModuleDecisionsKeptAcrossStarts(t *testing.T) {
	r, _ := newRegistry(t)
	mustCreateConfig(t, r, configFixture(t, "module-chiller.json"))
	deviceWithTags(t, r, "d", `{}`)
	for _, m := range []string{"a", "b", "c"} {
		moduleWithTags(t, r, "d", m, `{"kind":"chiller"}`)
	}
	moduleWithTags(t, r, "d", "p", `{"kind":"pump"}`)
	check := func(what string, wantEvaluated, wantUnchanged int64) {
		t.Helper()
		if e, u := startPass(t, r); e != wantEvaluated || u != wantUnchanged {
			t.Fatalf("%s: %d module twins evaluated, %d left as decided; want %d and %d", what, e, u, wantEvaluated, wantUnchanged)
		}
	}
	check("first start", 4, 0)
	for _, m := range []string{"a", "b", "c"} {
		if got := jsonOf(moduleDesired(t, r, "d", m)["chillerWaterSettings"]); got != chillerWant {
			t.Fatalf("%s: %s", m, got)
		}
	}
	// p, which no configuration targets, has no state to say so: evaluated.
	check("nothing changed", 1, 3)

	// While the hub is down: b is no longer a chiller, c reports a property.
	setModuleTags(t, r, "d", "b", `{"kind":"pump"}`)
	if _, err := r.UpdateTwin("d", "c", "", func(tw *twin.Twin) (bool, error) {
		return tw.PatchReported([]byte(`{"temperature":4}`), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	cv := moduleStateVersion(t, r, "d", "c")
	check("b's tags and c's reported properties changed", 3, 1)
	if got := moduleStatuses(t, r, "d", "b"); len(got) != 0 {
		t.Errorf("b, no longer a chiller, shows %v", got)
	}
	if got := moduleStatuses(t, r, "d", "c"); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationApplied) {
		t.Errorf("c shows %v", got)
	}
	if v := moduleStateVersion(t, r, "d", "c"); v != cv {
		t.Errorf("c's state written again (version %d, was %d) for a reported property", v, cv)
	}

	// A new configuration: every module twin again.
	x := mustCreateConfig(t, r, Configuration{ID: "a-only", Priority: 50, TargetCondition: "FROM devices.modules WHERE moduleId = 'a'",
		Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.only": "a"}`)}})
	check("a configuration created", 4, 0)
	if got := moduleStatuses(t, r, "d", "a"); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationTargeted, "a-only", hubapi.ConfigurationApplied) {
		t.Errorf("a shows %v", got)
	}
	if d := moduleDesired(t, r, "d", "a"); d["only"] != "a" {
		t.Errorf("a's desired %v", d)
	}
	// b and p have no state; c's decision stands on its twin as it was
	// before its reported property (not written again for that).
	check("nothing changed", 3, 1)

	// A configuration changed: its priority now below the chiller's.
	x.Priority = 5
	if _, err := r.UpdateConfiguration(x, "*"); err != nil {
		t.Fatal(err)
	}
	check("a configuration's priority changed", 4, 0)
	if got := moduleStatuses(t, r, "d", "a"); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationApplied, "a-only", hubapi.ConfigurationTargeted) {
		t.Errorf("a shows %v", got)
	}
	// a's state was written again for the new configurations, without its
	// twin (the chiller's settings were there): a change of the twin after
	// that counts too.
	if _, err := r.UpdateTwin("d", "a", "", func(tw *twin.Twin) (bool, error) {
		return tw.PatchReported([]byte(`{"temperature":5}`), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	check("a's reported properties changed", 4, 0)
	// Its condition changed: now c's.
	x.TargetCondition = "FROM devices.modules WHERE moduleId = 'c'"
	if _, err := r.UpdateConfiguration(x, "*"); err != nil {
		t.Fatal(err)
	}
	check("a configuration's condition changed", 4, 0)
	if got := moduleStatuses(t, r, "d", "c"); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationApplied, "a-only", hubapi.ConfigurationTargeted) {
		t.Errorf("c shows %v", got)
	}
	if got := moduleStatuses(t, r, "d", "a"); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationApplied) {
		t.Errorf("a shows %v", got)
	}

	// Deleted, and created again with the same id and condition: a new
	// configuration (its creation time), applied again.
	if err := r.DeleteConfiguration("a-only", ""); err != nil {
		t.Fatal(err)
	}
	check("a configuration deleted", 4, 0)
	if got := moduleStatuses(t, r, "d", "c"); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationApplied) {
		t.Errorf("c shows %v", got)
	}
	x.Priority, x.ETag = 60, ""
	mustCreateConfig(t, r, x)
	check("a configuration created again", 4, 0)
	if got := moduleStatuses(t, r, "d", "c"); !sameStatuses(got, "chiller-module-settings", hubapi.ConfigurationTargeted, "a-only", hubapi.ConfigurationApplied) {
		t.Errorf("c shows %v", got)
	}
}

// TestModuleEvaluationInterrupted: a hub killed while it evaluates the
// module twins after a configuration changed leaves some decided on the
// new configurations and the others on the old; the next start evaluates
// those others, and they converge.
func TestModuleEvaluationInterrupted(t *testing.T) {
	r, dir := newRegistry(t)
	mustCreateConfig(t, r, configFixture(t, "module-chiller.json"))
	deviceWithTags(t, r, "d", `{}`)
	mods := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}
	for _, m := range mods {
		moduleWithTags(t, r, "d", m, `{"kind":"chiller"}`)
	}
	startPass(t, r)
	mustCreateConfig(t, r, Configuration{ID: "all", Priority: 50, TargetCondition: "FROM devices.modules WHERE tags.kind = 'chiller'",
		Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.all": true}`)}})
	// The start that was killed: half the module twins evaluated, each in
	// its own transaction (what a kill -9 leaves of the others: nothing).
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	for _, m := range mods[:4] {
		if err := a.EvaluateModule("d", m); err != nil {
			t.Fatal(err)
		}
	}
	r = restart(t, r, dir)
	for _, m := range mods {
		eventually(t, m+" gets the new configuration", func() bool {
			return moduleDesired(t, r, "d", m)["all"] == true &&
				sameStatuses(moduleStatuses(t, r, "d", m), "chiller-module-settings", hubapi.ConfigurationTargeted, "all", hubapi.ConfigurationApplied)
		})
	}
	if e, u := startPass(t, r); e != 0 || u != int64(len(mods)) {
		t.Errorf("after convergence: %d evaluated, %d left as decided; want 0 and %d", e, u, len(mods))
	}

	// A configuration that targets none of them: their decisions stand,
	// their states are not written again. A pass killed half way does not
	// vouch for the others; a complete one does. (The store opened again
	// without the running deployer, which would make that pass.)
	r.st.Close()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r = New(st)
	mustCreateConfig(t, r, Configuration{ID: "none", Priority: 1, TargetCondition: "FROM devices.modules WHERE tags.kind = 'none'",
		Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.none": true}`)}})
	a = r.NewAutoDeployer(nil)
	a.loadAll(t)
	if err := a.loadBasisAlias(); err != nil {
		t.Fatal(err)
	}
	a.beginModulePass()
	for _, m := range mods[:4] {
		if err := a.EvaluateModule("d", m); err != nil {
			t.Fatal(err)
		}
	}
	if e, u := startPass(t, r); e != int64(len(mods)) || u != 0 {
		t.Errorf("after a pass cut short: %d evaluated, %d left as decided; want %d and 0", e, u, len(mods))
	}
	if e, u := startPass(t, r); e != 0 || u != int64(len(mods)) {
		t.Errorf("after a complete pass: %d evaluated, %d left as decided; want 0 and %d", e, u, len(mods))
	}
}

// TestModuleConditionDoc: a module configuration's condition matches the
// parts of a module twin conditionDoc gives it as it matches the twin's
// whole JSON, decoded.
func TestModuleConditionDoc(t *testing.T) {
	now := time.Now()
	tw := twin.New("d", "m", now)
	for _, w := range []struct {
		patch func([]byte, time.Time) (bool, error)
		doc   string
	}{
		{tw.PatchTags, `{"kind":"chiller","n":3,"list":[1,"x",{"y":2}],"site":{"floor":2.5}}`},
		{tw.PatchDesired, `{"interval":5,"alerts":{"high":30}}`},
		{tw.PatchReported, `{"firmware":"1.0.0","temperature":21.5}`},
		{tw.PatchReported, `{"temperature":22}`},
	} {
		if _, err := w.patch([]byte(w.doc), now); err != nil {
			t.Fatal(err)
		}
	}
	b, err := tw.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var full map[string]any
	if err := json.Unmarshal(b, &full); err != nil {
		t.Fatal(err)
	}
	for _, cond := range []string{
		"tags.kind = 'chiller'", "tags.n = 3", "tags.n > 2.5", "tags.list = [1, 'x']", "tags.site.floor = 2.5", "tags.list[0] = 1",
		"tags.list[2].y = 2", "IS_DEFINED(tags.missing)", "NOT IS_DEFINED(tags.missing)", "IS_OBJECT(tags)",
		"properties.desired.interval = 5", "properties.desired.alerts.high >= 30", "properties.desired.$version = 2", "properties.desired.$version = 1",
		"properties.reported.firmware = '1.0.0' AND properties.reported.temperature = 22", "properties.reported.$version = 3",
		"IS_DEFINED(properties.reported.$metadata.temperature)", "IS_DEFINED(properties.desired)", "IS_OBJECT(properties)",
		"moduleId = 'm' AND deviceId = 'd'", "version = 4", "status = 'enabled'", "etag = '" + tw.ETag + "'",
		"STARTSWITH(properties.reported.firmware, '1.')", "properties.reported.temperature IN [21.5, 22]",
	} {
		c, err := parseCondition(cond)
		if err != nil {
			t.Fatalf("%s: %v", cond, err)
		}
		// Alone, and after the document was made for other parts.
		for _, before := range []twinReads{0, readsTags, readsReported, readsDesired | readsReported} {
			cd := conditionDoc{t: tw}
			if before != 0 {
				if _, err := cd.need(before); err != nil {
					t.Fatal(err)
				}
			}
			doc, err := cd.need(readsOf(c))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := c.Match(doc), c.Match(full); got != want {
				t.Errorf("%s: %v on the parts read (%v, after %v), %v on the whole twin", cond, got, readsOf(c), before, want)
			}
		}
	}
}

// TestModuleDecisionOfAStaleReplica: a replica still on older module
// configurations decides a module twin that changed after another
// replica's pass found the older decisions standing on the newer ones (its
// alias); the next start does not take that state for one the pass
// vouched for, and decides the twin on the configurations as they are.
func TestModuleDecisionOfAStaleReplica(t *testing.T) {
	r, _ := newRegistry(t)
	deviceWithTags(t, r, "d", `{}`)
	moduleWithTags(t, r, "d", "m", `{"kind":"a"}`)
	config := func(id, kind string, priority int64) Configuration {
		return Configuration{ID: id, Priority: priority, TargetCondition: "FROM devices.modules WHERE tags.kind = '" + kind + "'",
			Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired.` + id + `": 1}`)}}
	}
	mustCreateConfig(t, r, config("x", "a", 1))
	mustCreateConfig(t, r, config("z", "b", 1))
	startPass(t, r)
	stale := r.NewAutoDeployer(nil) // a replica that will not hear of y
	stale.loadAll(t)
	mustCreateConfig(t, r, config("y", "b", 2))
	if e, _ := startPass(t, r); e != 1 {
		t.Fatalf("the pass on the new configurations evaluated %d module twins, want 1", e)
	}
	if got := moduleStatuses(t, r, "d", "m"); !sameStatuses(got, "x", hubapi.ConfigurationApplied) {
		t.Fatalf("m on x, y and z, kind a: %v", got)
	}
	setModuleTags(t, r, "d", "m", `{"kind":"b"}`)
	if err := stale.EvaluateModule("d", "m"); err != nil {
		t.Fatal(err)
	}
	if got := moduleStatuses(t, r, "d", "m"); !sameStatuses(got, "z", hubapi.ConfigurationApplied) {
		t.Fatalf("m decided by the replica on x and z, kind b: %v", got)
	}
	if e, _ := startPass(t, r); e != 1 {
		t.Errorf("the next start evaluated %d module twins, want m", e)
	}
	if got := moduleStatuses(t, r, "d", "m"); !sameStatuses(got, "y", hubapi.ConfigurationApplied, "z", hubapi.ConfigurationTargeted) {
		t.Errorf("m after the next start, on x, y and z, kind b: %v; want y applied, z targeted", got)
	}
}
