package registry

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/twin"
)

// deviceDesired is a device twin's desired properties, as JSON.
func deviceDesired(t *testing.T, r *Registry, id string) map[string]any {
	t.Helper()
	tw, err := r.GetTwin(id, "")
	if err != nil {
		t.Fatal(err)
	}
	return tw.Desired()
}

func deviceStatuses(t *testing.T, r *Registry, id string) map[string]string {
	t.Helper()
	cfgs, err := r.DeviceTwinConfigurations(id)
	return statusesOf(t, cfgs, err)
}

// statusesOf gives the status of each of a twin's configurations, as the
// registry read them (failing the test on err).
func statusesOf(t *testing.T, cfgs map[string]hubapi.ConfigurationStatus, err error) map[string]string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, s := range cfgs {
		out[k] = s.Status
	}
	return out
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestAutomaticDeviceConfigurations: a configuration with deviceContent
// writes its desired properties into the device twin of every device it
// targets (IoT Edge and leaf devices alike), the highest priority one per
// device; it is written once, so a later change at the twin stays; a device
// that leaves the condition keeps what was written; the device twin's
// configurations and the system metrics say which applies where.
func TestAutomaticDeviceConfigurations(t *testing.T) {
	r, _ := newRegistry(t)
	runDeployer(t, r)
	chiller := mustCreateConfig(t, r, configFixture(t, "device-chiller.json"))
	deviceWithTags(t, r, "c1", `{"kind":"chiller"}`)
	if _, err := r.CreateDevice(Device{DeviceID: "leaf", Capabilities: &hubapi.Capabilities{IoTEdge: false}}); err != nil {
		t.Fatal(err)
	}
	setTags(t, r, "leaf", `{"kind":"chiller"}`)
	deviceWithTags(t, r, "pump", `{"kind":"pump"}`)

	want := `{"pressure":78,"temperature":38}`
	for _, id := range []string{"c1", "leaf"} {
		eventually(t, id+" gets the chiller settings", func() bool {
			return jsonOf(deviceDesired(t, r, id)["chillerWaterSettings"]) == want
		})
		if got := deviceStatuses(t, r, id); !sameStatuses(got, "chiller-settings", hubapi.ConfigurationApplied) {
			t.Errorf("%s: device twin configurations %v", id, got)
		}
		if got := statuses(t, r, id); len(got) != 0 {
			t.Errorf("%s: a device configuration shows as a deployment in $edgeAgent: %v", id, got)
		}
	}
	if d := deviceDesired(t, r, "pump"); len(d) != 0 {
		t.Fatalf("pump, not targeted, got %v", d)
	}

	// A higher priority configuration wins where both target; the lower one
	// stays targeted there.
	hot := Configuration{ID: "hot-chillers", Priority: 20, TargetCondition: "tags.kind = 'chiller' AND tags.site = 'south'",
		Content: hubapi.ConfigurationContent{DeviceContent: json.RawMessage(`{"properties.desired.chillerWaterSettings.temperature": 30, "properties.desired.fan": "high"}`)}}
	mustCreateConfig(t, r, hot)
	setTags(t, r, "c1", `{"kind":"chiller","site":"south"}`)
	eventually(t, "c1 gets hot-chillers on top", func() bool {
		d := deviceDesired(t, r, "c1")
		return d["fan"] == "high" && jsonOf(d["chillerWaterSettings"]) == `{"pressure":78,"temperature":30}`
	})
	if got := deviceStatuses(t, r, "c1"); !sameStatuses(got, "chiller-settings", hubapi.ConfigurationTargeted, "hot-chillers", hubapi.ConfigurationApplied) {
		t.Errorf("c1's configurations %v", got)
	}

	// Written once: an operator's later change at the twin stays, whatever
	// else changes on the device.
	if _, err := r.UpdateTwin("leaf", "", "", func(tw *twin.Twin) (bool, error) {
		return tw.PatchDesired([]byte(`{"chillerWaterSettings":{"temperature":40}}`), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	setTags(t, r, "leaf", `{"kind":"chiller","floor":2}`)
	time.Sleep(200 * time.Millisecond) // the deployer's pass over the tag change
	a := r.NewAutoDeployer(nil)
	a.loadAll(t)
	if err := a.Evaluate("leaf"); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(deviceDesired(t, r, "leaf")["chillerWaterSettings"]); got != `{"pressure":78,"temperature":40}` {
		t.Fatalf("leaf's own change was overwritten: %s", got)
	}

	// Out of the condition: it keeps what was written and is targeted by nothing.
	setTags(t, r, "leaf", `{"kind":"retired"}`)
	eventually(t, "leaf targeted by nothing", func() bool { return len(deviceStatuses(t, r, "leaf")) == 0 })
	if d := deviceDesired(t, r, "leaf"); d["chillerWaterSettings"] == nil {
		t.Fatalf("leaf lost what the configuration wrote: %v", d)
	}

	c, err := r.GetConfiguration(chiller.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ConfigurationMetrics(&c, nil); err != nil {
		t.Fatal(err)
	}
	if got := c.SystemMetrics.Results; got[hubapi.MetricTargeted] != 1 || got[hubapi.MetricApplied] != 0 {
		t.Errorf("chiller-settings metrics %v, want 1 targeted (c1, where hot-chillers applies), 0 applied", got)
	}
}

// TestDeviceConfigurationValidation: bad deviceContent is refused, naming
// the JSON path.
func TestDeviceConfigurationValidation(t *testing.T) {
	r, _ := newRegistry(t)
	deep := strings.Repeat(`{"a":`, 12) + "1" + strings.Repeat("}", 12)
	for name, tc := range map[string]struct{ content, want string }{
		"not an object": {`[1]`, "content.deviceContent: want an object"},
		"empty":         {`{}`, "content.deviceContent: empty"},
		"other member":  {`{"tags.x": 1}`, `content.deviceContent.tags.x: unknown member`},
		"whole not obj": {`{"properties.desired": 5}`, "content.deviceContent.properties.desired: must be an object"},
		"empty name":    {`{"properties.desired.a..b": 5}`, "an empty name"},
		"too deep":      {`{"properties.desired.x": ` + deep + `}`, "content.deviceContent:"},
		"bad key":       {`{"properties.desired.$bad": 1}`, "content.deviceContent:"},
	} {
		c := Configuration{ID: "d", TargetCondition: "*", Content: hubapi.ConfigurationContent{DeviceContent: json.RawMessage(tc.content)}}
		if _, err := r.CreateConfiguration(c); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, err, tc.want)
		}
	}
}
