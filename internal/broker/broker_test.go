package broker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestTwinOverMQTT(t *testing.T) {
	f := setup(t, fixtureOptions{})
	f.hubDesired(t, "a", `{"interval":5,"mode":{"fast":true}}`)
	eventually(t, "the desired change at the device", func() bool {
		tw, err := f.syncer.Twin("a")
		return err == nil && tw.DesiredVersion() == 2
	})
	a := f.connectModule(t, "a")

	desired, reported := a.get(t)
	if desired["interval"] != 5.0 || desired["$version"] != 2.0 || reported["$version"] != 1.0 {
		t.Fatalf("GET: desired %v reported %v", desired, reported)
	}
	if _, ok := desired["$metadata"]; ok {
		t.Fatalf("GET over MQTT carries $metadata: %v", desired)
	}

	// A reported patch: 204 with the new $version, the local twin has it
	// (it is durable before the answer), and it reaches the hub.
	topic, body := a.request(t, topicPatch, []byte(`{"temperature":21.5,"status":{"ok":true}}`))
	if want := "$iothub/twin/res/204/?$rid=2&$version=2"; topic != want || len(body) != 0 {
		t.Fatalf("PATCH answered on %s (%q), want %s", topic, body, want)
	}
	if tw, _ := f.syncer.Twin("a"); tw.Reported()["temperature"] == nil {
		t.Fatalf("answered 204 before the patch was in the local twin: %s", tw.ReportedJSON())
	}
	eventually(t, "the report at the hub", func() bool {
		tw, err := f.owner.GetTwin(context.Background(), "d", "a")
		return err == nil && tw.Reported()["temperature"] != nil
	})

	// A desired change at the hub: once, as IoT Hub sends it.
	f.hubDesired(t, "a", `{"interval":7,"mode":null}`)
	topic, patch := a.nextDesired(t)
	if topic != "$iothub/twin/PATCH/properties/desired/?$version=3" {
		t.Fatalf("desired patch on %s", topic)
	}
	if patch["interval"] != 7.0 || patch["$version"] != 3.0 || len(patch) != 3 || patch["mode"] != nil {
		t.Fatalf("desired patch %v, want interval 7, mode null, $version 3", patch)
	}
	if _, ok := patch["mode"]; !ok {
		t.Fatalf("the removal of mode is not in the patch: %v", patch)
	}
	f.hubDesired(t, "a", `{"interval":8}`)
	if topic, _ := a.nextDesired(t); topic != desiredTopic(4) {
		t.Fatalf("second desired patch on %s", topic)
	}

	st := f.broker.Status()
	if len(st) != 1 || st[0].ModuleID != "a" || !st[0].Connected || st[0].DesiredVersion != 4 {
		t.Fatalf("status %+v", st)
	}
	a.c.Disconnect(100)
	eventually(t, "status to show a disconnected", func() bool {
		st := f.broker.Status()
		return len(st) == 1 && !st[0].Connected
	})
	f.waitLog(t, "module disconnected", "module=a")
}

// TestDesiredAfterAGap checks that a module that was away gets one patch
// with what changed since the version it last saw.
func TestDesiredAfterAGap(t *testing.T) {
	f := setup(t, fixtureOptions{})
	f.hubDesired(t, "a", `{"keep":1,"drop":2,"change":3}`)
	eventually(t, "the desired change at the device", func() bool {
		tw, _ := f.syncer.Twin("a")
		return tw.DesiredVersion() == 2
	})
	a := f.connectModule(t, "a")
	if d, _ := a.get(t); d["$version"] != 2.0 {
		t.Fatalf("GET desired %v", d)
	}
	a.c.Disconnect(100)
	eventually(t, "a to go", func() bool { return !f.broker.Status()[0].Connected })

	f.hubDesired(t, "a", `{"drop":null}`)
	f.hubDesired(t, "a", `{"change":4,"new":5}`)
	eventually(t, "both changes at the device", func() bool {
		tw, _ := f.syncer.Twin("a")
		return tw.DesiredVersion() == 4
	})
	a = f.connectModule(t, "a")
	topic, patch := a.nextDesired(t)
	if topic != desiredTopic(4) {
		t.Fatalf("catch-up patch on %s", topic)
	}
	want := map[string]any{"drop": nil, "change": 4.0, "new": 5.0, "$version": 4.0}
	if len(patch) != len(want) {
		t.Fatalf("catch-up patch %v, want %v", patch, want)
	}
	for k, v := range want {
		if got, ok := patch[k]; !ok || got != v {
			t.Fatalf("catch-up patch %v, want %v", patch, want)
		}
	}
	select {
	case msg := <-a.msgs:
		t.Fatalf("a second message after the catch-up: %s %s", msg.Topic(), msg.Payload())
	case <-time.After(300 * time.Millisecond):
	}
}

// TestDesiredUnknownBase: a module the broker knows nothing of gets the
// full desired properties when it subscribes.
func TestDesiredUnknownBase(t *testing.T) {
	f := setup(t, fixtureOptions{})
	f.hubDesired(t, "b", `{"x":1}`)
	eventually(t, "the desired change at the device", func() bool {
		tw, _ := f.syncer.Twin("b")
		return tw.DesiredVersion() == 2
	})
	b := f.connectModule(t, "b")
	topic, patch := b.nextDesired(t)
	if topic != desiredTopic(2) || patch["x"] != 1.0 || patch["$version"] != 2.0 {
		t.Fatalf("full desired on %s: %v", topic, patch)
	}
}

func TestBadReportedPatches(t *testing.T) {
	f := setup(t, fixtureOptions{})
	a := f.connectModule(t, "a")
	if topic, _ := a.request(t, topicPatch, []byte(`{"ok":1}`)); !strings.Contains(topic, "/204/") {
		t.Fatalf("a good patch: %s", topic)
	}
	deep := `{"l1":{"l2":{"l3":{"l4":{"l5":{"l6":{"l7":{"l8":{"l9":{"l10":{"l11":1}}}}}}}}}}}`
	for _, c := range []struct {
		name, patch, want string
	}{
		{"over 32 KiB", `{"big":"` + strings.Repeat("x", 33*1024) + `"}`, "at most 32768"},
		{"too deep", deep, "depth"},
		{"bad key", `{"a b":1}`, `"path":"properties.reported`},
		{"bad key with $", `{"$x":1}`, `"path":"properties.reported`},
		{"not JSON", `{"a":`, "invalid"},
		{"not an object", `[1,2]`, "invalid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			topic, body := a.request(t, topicPatch, []byte(c.patch))
			if !strings.HasPrefix(topic, topicResponse+"400/") {
				t.Fatalf("answered on %s: %s", topic, body)
			}
			var e struct{ Message string }
			if err := json.Unmarshal(body, &e); err != nil || e.Message == "" {
				t.Fatalf("400 body %q is not {\"message\": …}: %v", body, err)
			}
			if !strings.Contains(string(body), c.want) {
				t.Fatalf("400 body %s does not hold %q", body, c.want)
			}
		})
	}
	_, reported := a.get(t)
	if reported["$version"] != 2.0 || len(reported) != 2 {
		t.Fatalf("bad patches changed the twin: %v", reported)
	}
}

// TestTokenExpiryCloses checks that a connection ends when its token
// expires (plus the clock skew IoT Hub allows).
func TestTokenExpiryCloses(t *testing.T) {
	var skew time.Duration = 5*time.Minute - 2*time.Second // the broker's clock runs ahead
	f := setup(t, fixtureOptions{config: func(c *Config) { c.Now = func() time.Time { return time.Now().Add(skew) } }})
	a, err := f.connect(t, "d/a", f.username("a"), f.token(t, "a", f.keys["a"], 0))
	if err != nil {
		t.Fatalf("a token within the clock skew was refused: %v", err)
	}
	a.waitLost(t, "the token expired")
	f.waitLog(t, "SAS token expired", "module=a")
}

// TestTakeover checks that a second connection with the same client id
// takes over the first, as at IoT Hub.
func TestTakeover(t *testing.T) {
	f := setup(t, fixtureOptions{})
	first := f.connectModule(t, "a")
	second := f.connectModule(t, "a")
	first.waitLost(t, "taken over")
	if d, _ := second.get(t); d["$version"] != 1.0 {
		t.Fatalf("GET on the second connection: %v", d)
	}
	f.hubDesired(t, "a", `{"after":"takeover"}`)
	if topic, _ := second.nextDesired(t); topic != desiredTopic(2) {
		t.Fatalf("desired patch on %s", topic)
	}
	if st := f.broker.Status(); len(st) != 1 || !st[0].Connected {
		t.Fatalf("status after a takeover: %+v", st)
	}
}

// TestModuleRemovedAtTheHub: a module the hub deletes loses its connection
// once the device syncs, and cannot connect again.
func TestModuleRemovedAtTheHub(t *testing.T) {
	f := setup(t, fixtureOptions{})
	a := f.connectModule(t, "a")
	b := f.connectModule(t, "b")
	if err := f.owner.DeleteModule(context.Background(), "d", "a", ""); err != nil {
		t.Fatal(err)
	}
	a.waitLost(t, "module deleted")
	f.waitLog(t, "its identity changed", "module=a")
	if _, err := f.connect(t, "d/a", f.username("a"), f.token(t, "a", f.keys["a"], time.Hour)); err == nil {
		t.Fatal("a deleted module connected")
	}
	if d, _ := b.get(t); d["$version"] != 1.0 {
		t.Fatalf("b's GET: %v", d)
	}
}
