package broker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/internal/store"
)

func TestTwinOverMQTT(t *testing.T) {
	f := setup(t, fixtureOptions{})
	f.desiredAtDevice(t, "a", `{"interval":5,"mode":{"fast":true}}`)
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
	f.desiredAtDevice(t, "a", `{"keep":1,"drop":2,"change":3}`)
	a := f.connectModule(t, "a")
	if d, _ := a.get(t); d["$version"] != 2.0 {
		t.Fatalf("GET desired %v", d)
	}
	a.c.Disconnect(100)
	eventually(t, "a to go", func() bool { return !f.broker.Status()[0].Connected })

	f.hubDesired(t, "a", `{"drop":null}`)
	f.desiredAtDevice(t, "a", `{"change":4,"new":5}`)
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
	f.desiredAtDevice(t, "b", `{"x":1}`)
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
	deep := `{"l1":{"l2":{"l3":{"l4":{"l5":{"l6":{"l7":{"l8":{"l9":{"l10":{"l11":{"l12":1}}}}}}}}}}}}` // an eleventh nested object
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
	a.get(t)
	a.c.Disconnect(100)
	eventually(t, "what a saw to be kept", func() bool {
		_, err := f.st.Get(savedPrefix + "a")
		return err == nil
	})
	a = f.connectModule(t, "a")
	b := f.connectModule(t, "b")
	if err := f.owner.DeleteModule(context.Background(), "d", "a", ""); err != nil {
		t.Fatal(err)
	}
	a.waitLost(t, "module deleted")
	f.waitLog(t, "its identity changed", "module=a")
	eventually(t, "what was kept of a to go", func() bool {
		_, err := f.st.Get(savedPrefix + "a")
		return errors.Is(err, store.ErrNotFound)
	})
	if st := f.broker.Status(); len(st) != 1 || st[0].ModuleID != "b" {
		t.Fatalf("status after a was deleted: %+v", st)
	}
	if _, err := f.connect(t, "d/a", f.username("a"), f.token(t, "a", f.keys["a"], time.Hour)); err == nil {
		t.Fatal("a deleted module connected")
	}
	if d, _ := b.get(t); d["$version"] != 1.0 {
		t.Fatalf("b's GET: %v", d)
	}
}

// TestDaemonRestart: the broker keeps, in the store, the desired version
// each module last got, so after a restart a module that subscribes again
// gets what changed meanwhile, and then the next changes.
func TestDaemonRestart(t *testing.T) {
	f := setup(t, fixtureOptions{})
	f.desiredAtDevice(t, "a", `{"keep":1}`)
	a := f.connectModule(t, "a")
	a.get(t)
	f.stopBroker(t)
	a.waitLost(t, "broker stopped")
	f.desiredAtDevice(t, "a", `{"while":"down"}`)
	f.restartBroker(t)
	a = f.connectModule(t, "a")
	topic, patch := a.nextDesired(t)
	if topic != desiredTopic(3) || patch["while"] != "down" || patch["$version"] != 3.0 || len(patch) != 2 {
		t.Fatalf("after a restart: %s %v, want only what changed", topic, patch)
	}
	f.hubDesired(t, "a", `{"after":1}`)
	topic, patch = a.nextDesired(t)
	if topic != desiredTopic(4) || len(patch) != 2 || patch["after"] != 1.0 {
		t.Fatalf("the next change: %s %v", topic, patch)
	}
	if st := f.broker.Status(); len(st) != 1 || st[0].DesiredVersion != 4 {
		t.Fatalf("status %+v", st)
	}
}

// TestPersistentSessionAfterRestart: a module that connected with clean
// session 0 and does not subscribe again after a restart (as the Azure
// SDKs do) still gets its desired changes.
func TestPersistentSessionAfterRestart(t *testing.T) {
	f := setup(t, fixtureOptions{})
	connect := func() *module { return f.connectPersistent(t, "a") }
	a := connect()
	a.subscribe(t, filterResponses, filterDesired)
	a.get(t)
	f.restartBroker(t)
	a.waitLost(t, "broker restarted")
	a = connect() // no SUBSCRIBE this time
	f.waitLog(t, "restored the subscriptions", "module=a")
	f.hubDesired(t, "a", `{"x":1}`)
	if topic, patch := a.nextDesired(t); topic != desiredTopic(2) || patch["x"] != 1.0 {
		t.Fatalf("desired after a restart: %s %v", topic, patch)
	}
	if topic, _ := a.request(t, topicGet, nil); !strings.Contains(topic, "/200/") {
		t.Fatalf("GET answered on %s", topic)
	}

	// A clean session drops what was kept.
	a.c.Disconnect(100)
	b, err := f.connect(t, "d/a", f.username("a"), f.token(t, "a", f.keys["a"], time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f.desiredAtDevice(t, "a", `{"x":2}`)
	select {
	case msg := <-b.msgs:
		t.Fatalf("a clean session got %s", msg.Topic())
	case <-time.After(300 * time.Millisecond):
	}
}

// connectPersistent connects module id with clean session 0, as the Azure
// SDKs do.
func (f *fixture) connectPersistent(t *testing.T, id string) *module {
	t.Helper()
	m := &module{msgs: make(chan paho.Message, 64), lost: make(chan error, 1)}
	opts := paho.NewClientOptions().AddBroker("ssl://" + f.addr).
		SetClientID("d/" + id).SetUsername(f.username(id)).SetPassword(f.token(t, id, f.keys[id], time.Hour)).
		SetTLSConfig(f.tlsConfig()).SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) { m.msgs <- msg }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { m.lost <- err })
	m.c = paho.NewClient(opts)
	if tok := m.c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { m.c.Disconnect(100) })
	return m
}

// TestDesiredSentJustBeforeADisconnectComesAgain: a desired patch the broker
// sent just before the module went away (an SDK renewing its token, say)
// may never have been read: the module's next connection gets it again.
func TestDesiredSentJustBeforeADisconnectComesAgain(t *testing.T) {
	f := setup(t, fixtureOptions{})
	a := f.connectPersistent(t, "a")
	a.subscribe(t, filterResponses, filterDesired)
	a.get(t)
	f.hubDesired(t, "a", `{"x":1}`)
	if topic, _ := a.nextDesired(t); topic != desiredTopic(2) {
		t.Fatalf("desired: %s", topic)
	}
	a.c.Disconnect(0) // at once: within the window in which it may not have read it
	a = f.connectPersistent(t, "a")
	if topic, patch := a.nextDesired(t); topic != desiredTopic(2) || patch["x"] != 1.0 {
		t.Fatalf("after the reconnect: %s %v, want $version 2 again", topic, patch)
	}
}
