package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
)

// addChild makes a leaf device at the hub, a child of d ("" parent: of
// none), waits until the device has synced it when it is a child, and
// returns its primary key.
func (f *fixture) addChild(t testing.TB, id string, child bool) string {
	t.Helper()
	ctx := context.Background()
	d := hubapi.Device{DeviceID: id, Capabilities: &hubapi.Capabilities{}}
	if child {
		p, err := f.owner.GetDevice(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		d.DeviceScope = p.DeviceScope
	}
	l, err := f.owner.CreateDevice(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if child {
		eventually(t, "the child at the device", func() bool { _, err := f.syncer.Child(id); return err == nil })
	}
	return l.Authentication.SymmetricKey.PrimaryKey
}

// childToken returns a SAS token for device id signed with key.
func (f *fixture) childToken(t testing.TB, id, key string, ttl time.Duration) string {
	t.Helper()
	tok, err := identity.NewSAS(f.hub.HostName()+"/devices/"+id, key, time.Now().Add(ttl), "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// connectChild connects child device id as the Azure IoT device SDKs do
// and subscribes to the twin answers and desired changes.
func (f *fixture) connectChild(t testing.TB, id, key string) *module {
	t.Helper()
	m, err := f.connect(t, id, f.deviceUsername(id), f.childToken(t, id, key, time.Hour))
	if err != nil {
		t.Fatalf("connect child %s: %v", id, err)
	}
	m.subscribe(t, filterResponses, filterDesired)
	return m
}

func TestChildTwin(t *testing.T) {
	f := setup(t, fixtureOptions{})
	key := f.addChild(t, "leaf", true)
	if _, err := f.owner.PatchTwin(context.Background(), "leaf", "", []byte(`{"properties":{"desired":{"rate":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the desired change at the device", func() bool {
		tw, err := f.syncer.ChildTwin("leaf")
		return err == nil && tw.DesiredVersion() == 2
	})
	c := f.connectChild(t, "leaf", key)
	f.waitLog(t, "child connected", "child=leaf")
	desired, _ := c.get(t)
	if desired["rate"] != 1.0 || desired["$version"] != 2.0 {
		t.Fatalf("GET desired %v", desired)
	}
	topic, body := c.request(t, topicPatch, []byte(`{"temp":21}`))
	if !strings.HasPrefix(topic, topicResponse+"204/") || !strings.Contains(topic, "$version=2") {
		t.Fatalf("PATCH answered on %s: %s", topic, body)
	}
	if _, reported := c.get(t); reported["temp"] != 21.0 {
		t.Fatalf("GET reported after the patch: %v", reported)
	}
	eventually(t, "the report at the hub", func() bool {
		tw, err := f.owner.GetTwin(context.Background(), "leaf", "")
		return err == nil && string(tw.ReportedJSON()) == `{"temp":21}`
	})
	// A desired change at the hub reaches the child as a patch.
	if _, err := f.owner.PatchTwin(context.Background(), "leaf", "", []byte(`{"properties":{"desired":{"rate":7}}}`), ""); err != nil {
		t.Fatal(err)
	}
	topic, patch := c.nextDesired(t)
	if patch["rate"] != 7.0 || patch["$version"] != 3.0 || !strings.HasSuffix(topic, "$version=3") {
		t.Fatalf("desired patch on %s: %v", topic, patch)
	}
	// The child's twin is not a module's: module a's twin is untouched, and
	// a module named like the child would not see it.
	if tw, _ := f.syncer.Twin("a"); strings.Contains(string(tw.ReportedJSON()), "temp") {
		t.Fatalf("module a's twin took the child's patch: %s", tw.ReportedJSON())
	}
}

func TestChildRefusals(t *testing.T) {
	f := setup(t, fixtureOptions{})
	key := f.addChild(t, "leaf", true)
	strangerKey := f.addChild(t, "stranger", false)
	otherKey := base64.StdEncoding.EncodeToString([]byte("not the key of the leaf device!!"))
	for _, c := range []struct {
		name, clientID, username, password string
		want                               error
		log                                string
	}{
		{"not a child", "stranger", f.deviceUsername("stranger"), f.childToken(t, "stranger", strangerKey, time.Hour), pahopackets.ErrorRefusedNotAuthorised, `device \"stranger\" is not a child of this edge device \"d\"`},
		{"wrong key", "leaf", f.deviceUsername("leaf"), f.childToken(t, "leaf", otherKey, time.Hour), pahopackets.ErrorRefusedBadUsernameOrPassword, `matches neither key of device \"leaf\"`},
		{"expired", "leaf", f.deviceUsername("leaf"), f.childToken(t, "leaf", key, -10*time.Minute), pahopackets.ErrorRefusedBadUsernameOrPassword, "expired"},
		{"another device's token", "leaf", f.deviceUsername("leaf"), f.childToken(t, "stranger", strangerKey, time.Hour), pahopackets.ErrorRefusedNotAuthorised, "not this device"},
		{"the edge device's token", "leaf", f.deviceUsername("leaf"), f.token(t, "", f.keys[""], time.Hour), pahopackets.ErrorRefusedNotAuthorised, "not this device"},
		{"no password", "leaf", f.deviceUsername("leaf"), "", pahopackets.ErrorRefusedBadUsernameOrPassword, "no password"},
		{"the edge device itself", "d", f.deviceUsername("d"), f.token(t, "", f.keys[""], time.Hour), pahopackets.ErrorRefusedNotAuthorised, `this edge device, \"d\", connected as a device`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.connect(t, c.clientID, c.username, c.password)
			if !errors.Is(err, c.want) {
				t.Fatalf("connect: %v, want %v", err, c.want)
			}
			f.waitLog(t, "refused a connection", "client_id="+c.clientID, c.log)
		})
	}
	// The child with its own token is let in.
	f.connectChild(t, "leaf", key)
}

// TestChildOwnTopicsOnly: a child may not subscribe to a module's topics,
// nor publish to another device's or a module's.
func TestChildOwnTopicsOnly(t *testing.T) {
	f := setup(t, fixtureOptions{})
	key := f.addChild(t, "leaf", true)
	c := f.connectChild(t, "leaf", key)
	if codes := c.subscribe(t, "devices/d/modules/a/inputs/#", "devices/other/#", filterMethods); codes[0] != 0x80 || codes[1] != 0x80 || codes[2] != 0 {
		t.Fatalf("SUBACK codes %v, want 0x80 0x80 0", codes)
	}
	f.waitLog(t, "refused a subscription", "child=leaf", "devices/d/modules/a/inputs/#")
	for i, topic := range []string{"devices/d/modules/a/messages/events/", "devices/other/messages/events/", "$iothub/methods/res/2xx/?$rid=1"} {
		if i > 0 {
			c = f.connectChild(t, "leaf", key)
		}
		c.c.Publish(topic, 1, false, []byte(`{}`))
		c.waitLost(t, "publish to "+topic)
		f.waitLog(t, "refused publish", "child=leaf", topic)
	}
}

// TestChildIdentityChangesDisconnect: a child removed, disabled or re-keyed
// at the hub while connected is disconnected.
func TestChildIdentityChangesDisconnect(t *testing.T) {
	f := setup(t, fixtureOptions{})
	ctx := context.Background()
	key := f.addChild(t, "leaf", true)

	c := f.connectChild(t, "leaf", key)
	start := time.Now()
	d, err := f.owner.GetDevice(ctx, "leaf")
	if err != nil {
		t.Fatal(err)
	}
	newKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	d.Authentication.SymmetricKey.PrimaryKey, d.Authentication.SymmetricKey.SecondaryKey = newKey, newKey
	if _, err := f.owner.UpdateDevice(ctx, d, "*"); err != nil {
		t.Fatal(err)
	}
	c.waitLost(t, "re-keyed")
	t.Logf("re-keyed: disconnected %v after the update", time.Since(start))
	f.waitLog(t, "closing a child's connection", "child=leaf", "matches neither key")

	c = f.connectChild(t, "leaf", newKey)
	start = time.Now()
	d, _ = f.owner.GetDevice(ctx, "leaf")
	d.Status = "disabled"
	if _, err := f.owner.UpdateDevice(ctx, d, "*"); err != nil {
		t.Fatal(err)
	}
	c.waitLost(t, "disabled")
	t.Logf("disabled: disconnected %v after the update", time.Since(start))
	f.waitLog(t, "closing a child's connection", "was disabled")
	if _, err := f.connect(t, "leaf", f.deviceUsername("leaf"), f.childToken(t, "leaf", newKey, time.Hour)); !errors.Is(err, pahopackets.ErrorRefusedNotAuthorised) {
		t.Fatalf("a disabled child connects: %v", err)
	}

	d, _ = f.owner.GetDevice(ctx, "leaf")
	d.Status = "enabled"
	if _, err := f.owner.UpdateDevice(ctx, d, "*"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the child enabled at the device", func() bool { k, err := f.syncer.Child("leaf"); return err == nil && k.Enabled() })
	c = f.connectChild(t, "leaf", newKey)
	start = time.Now()
	if err := f.owner.DeleteDevice(ctx, "leaf", ""); err != nil {
		t.Fatal(err)
	}
	c.waitLost(t, "removed")
	t.Logf("removed: disconnected %v after the delete", time.Since(start))
	f.waitLog(t, "closing a child's connection", "no longer a child")
}

// TestChildOffline: with the hub stopped, a child connects with the key the
// device keeps, reads its twin and reports; its reports reach the hub once
// it is back, and a desired change made then reaches the child.
func TestChildOffline(t *testing.T) {
	f := setup(t, fixtureOptions{})
	key := f.addChild(t, "leaf", true)
	addr := f.hub.Addr().String()
	f.hub.Stop()

	c := f.connectChild(t, "leaf", key)
	if d, _ := c.get(t); d["$version"] != 1.0 {
		t.Fatalf("cached child twin offline: %v", d)
	}
	for i, patch := range []string{`{"n":1,"at":"offline"}`, `{"n":2}`} {
		topic, body := c.request(t, topicPatch, []byte(patch))
		if !strings.HasPrefix(topic, topicResponse+"204/") || !strings.HasSuffix(topic, "&$version="+string(rune('2'+i))) {
			t.Fatalf("patch %d offline answered on %s: %s", i+1, topic, body)
		}
	}
	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	owner := h2.Client(t)
	eventually(t, "the child's reports at the hub", func() bool {
		tw, err := owner.GetTwin(context.Background(), "leaf", "")
		return err == nil && tw.Reported()["n"] == json.Number("2") && tw.Reported()["at"] == "offline"
	})
	if _, err := owner.PatchTwin(context.Background(), "leaf", "", []byte(`{"properties":{"desired":{"interval":6}}}`), ""); err != nil {
		t.Fatal(err)
	}
	topic, patch := c.nextDesired(t)
	if topic != desiredTopic(2) || patch["interval"] != 6.0 {
		t.Fatalf("desired after the hub came back: %s %v", topic, patch)
	}
}
