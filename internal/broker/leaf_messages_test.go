package broker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// TestLeafMessagesRoutedAsIoTEdgeDoes: a leaf device's message (no module)
// is taken by FROM /messages/* and by a route selecting
// NOT IS_DEFINED($connectionModuleId), with $connectionDeviceId the leaf's
// id, and by no /messages/modules/… route; a module's message is not taken
// by the leaf-only route.
func TestLeafMessagesRoutedAsIoTEdgeDoes(t *testing.T) {
	rt, err := parseHubDesired([]byte(`{"routes": {
		"leaves":  "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO BrokeredEndpoint(\"/modules/leafin/inputs/in\")",
		"sensor1": "FROM /messages/* WHERE $connectionDeviceId = 'sensor1' INTO BrokeredEndpoint(\"/modules/s1/inputs/in\")",
		"all":     "FROM /messages/* INTO $upstream",
		"modA":    "FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/froma/inputs/in\")",
		"anyOut":  "FROM /messages/modules/a/outputs/* INTO BrokeredEndpoint(\"/modules/fromaout/inputs/in\")"
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{}
	b.msg.routing.Store(rt)
	names := func(m hubapi.Message) []string {
		var out []string
		for _, d := range b.route(&m, time.Now()) {
			out = append(out, d.Name)
		}
		slices.Sort(out)
		return out
	}
	leaf := hubapi.Message{DeviceID: "sensor1", Properties: map[string]string{"t": "1"}}
	if got, want := names(leaf), []string{InputDest("leafin", "in"), InputDest("s1", "in"), UpstreamDest}; !slices.Equal(got, want) {
		t.Errorf("leaf sensor1's message: %q, want %q", got, want)
	}
	other := hubapi.Message{DeviceID: "sensor2"}
	if got, want := names(other), []string{InputDest("leafin", "in"), UpstreamDest}; !slices.Equal(got, want) {
		t.Errorf("leaf sensor2's message: %q, want %q", got, want)
	}
	module := hubapi.Message{DeviceID: "edge", ModuleID: "a", OutputName: "o", SystemProperties: map[string]string{"$.on": "o"}}
	if got, want := names(module), []string{InputDest("froma", "in"), InputDest("fromaout", "in"), UpstreamDest}; !slices.Equal(got, want) {
		t.Errorf("module a's message: %q, want %q", got, want)
	}
}

func TestLeafEventsTopic(t *testing.T) {
	for _, tc := range []struct{ topic, bag, err string }{
		{"devices/s1/messages/events/", "", ""},
		{"devices/s1/messages/events/a=1&%24.ct=application%2Fjson", "a=1&%24.ct=application%2Fjson", ""},
		{"devices/s1/messages/events/a=1/", "a=1", ""},
		{"devices/s2/messages/events/", "", `topic "devices/s2/messages/events/" is not this device's: a leaf device publishes telemetry on devices/s1/messages/events/{property bag}`},
		{"devices/s1/modules/m/messages/events/", "", `is not this device's`},
		{"devices/edge/modules/m/inputs/in/", "", `is not this device's`},
	} {
		bag, err := leafEventsTopic("s1", tc.topic)
		if tc.err == "" && (err != nil || bag != tc.bag) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %q, %v", tc.topic, bag, err)
		}
	}
}

// TestLeafTelemetry: a child device's events on
// devices/{leaf}/messages/events/{bag} are acknowledged once durable, with
// the leaf as sender and no module; routed as IoT Edge routes leaf messages
// (FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) takes them, a
// /messages/modules/… route does not), delivered to a module's input with
// $.cdid the leaf and no $.cmid; a leaf publishing on another device's
// events topic is disconnected with a log line.
func TestLeafTelemetry(t *testing.T) {
	cfg, q := withMessages(t, 0)
	f := setup(t, fixtureOptions{config: cfg})
	f.setRoutes(t, `{"routes": {
		"leaves": "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO BrokeredEndpoint(\"/modules/b/inputs/leaves\")",
		"up":     "FROM /messages/* WHERE $connectionDeviceId = 'leaf' INTO $upstream",
		"fromA":  "FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/b/inputs/froma\")"
	}}`)
	key := f.addChild(t, "leaf", true)
	leaf := f.connectChild(t, "leaf", key)
	b := f.connectModule(t, "b")
	b.subscribe(t, inputs(f, "b"))

	leaf.publish(t, "devices/leaf/messages/events/%24.mid=l1&%24.ct=application%2Fjson&temp=21", `{"temp":21}`)
	if st := (*q).Stats(UpstreamDest); st.Count != 1 {
		t.Fatalf("upstream queue holds %d messages at the PUBACK, want 1", st.Count)
	}
	up := (*q).Pending(UpstreamDest, 0, 10)
	var m hubapi.Message
	if err := json.Unmarshal(up[0].Data, &m); err != nil || m.DeviceID != "leaf" || m.ModuleID != "" || m.SystemProperties["$.mid"] != "l1" || m.Properties["temp"] != "21" || string(m.Body) != `{"temp":21}` {
		t.Fatalf("queued upstream: %+v %v", m, err)
	}
	in, props, body := b.nextInput(t)
	if in != "leaves" || props.Get("$.mid") != "l1" || props.Get("$.cdid") != "leaf" || props.Has("$.cmid") || body != `{"temp":21}` {
		t.Fatalf("b got %s %v %s", in, props, body)
	}
	if st := (*q).Stats(InputDest("b", "froma")); st.Count != 0 {
		t.Fatalf("a module route took the leaf's message: %+v", st)
	}

	leaf.c.Publish("devices/other/messages/events/", 1, false, []byte(`{}`))
	leaf.waitLost(t, "publish to another device's events")
	f.waitLog(t, "refused message", "child=leaf", "devices/other/messages/events/", "is not this device's")
}

// TestLeafMethod: InvokeDeviceMethod reaches a child device subscribed to
// methods, and its answer comes back; a module answering the child's $rid
// is not an answer; a child not connected is ErrNotSubscribed after the
// connect wait, and one that connects while the call waits gets it.
func TestLeafMethod(t *testing.T) {
	f := setup(t, fixtureOptions{})
	key := f.addChild(t, "leaf", true)
	ctx := context.Background()
	if _, err := f.broker.InvokeDeviceMethod(ctx, "leaf", "blink", nil, 200*time.Millisecond, time.Minute); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("leaf not connected: %v, want ErrNotSubscribed", err)
	}
	type result struct {
		r   MethodResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := f.broker.InvokeDeviceMethod(ctx, "leaf", "blink", []byte(`{"n":2}`), time.Minute, time.Minute)
		done <- result{r, err}
	}()
	leaf := f.connectChild(t, "leaf", key)
	leaf.subscribe(t, filterMethods)
	a := f.connectModule(t, "a")
	msg := leaf.nextMethod(t)
	name, bag, ok := strings.Cut(strings.TrimPrefix(msg.Topic(), topicMethodPOST), "/?")
	if !ok || name != "blink" || string(msg.Payload()) != `{"n":2}` {
		t.Fatalf("call: topic %s payload %s", msg.Topic(), msg.Payload())
	}
	rid := strings.TrimPrefix(bag, "$rid=")
	a.c.Publish(topicMethodRes+"200/?$rid="+rid, 0, false, []byte(`"from a"`)).Wait()
	f.waitLog(t, "method response to no call waiting", "module=a")
	leaf.c.Publish(topicMethodRes+"200/?$rid="+rid, 0, false, []byte(`{"blinked":2}`)).Wait()
	if got := <-done; got.err != nil || got.r.Status != 200 || string(got.r.Payload) != `{"blinked":2}` {
		t.Fatalf("result %+v %s, err %v", got.r, got.r.Payload, got.err)
	}
	// A module of the same name as the leaf is not the leaf.
	if _, err := f.broker.InvokeMethod(ctx, "leaf", "blink", nil, 0, time.Minute); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("module 'leaf': %v, want ErrNotSubscribed", err)
	}
}
