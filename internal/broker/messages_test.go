package broker

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/internal/msgqueue"
)

// withMessages gives the fixture's broker a message queue in a temp dir.
func withMessages(t testing.TB, maxBytes int64) (func(*Config), **msgqueue.Log) {
	var q *msgqueue.Log
	return func(c *Config) {
		var err error
		q, err = msgqueue.Open(t.TempDir(), msgqueue.Options{MaxBytes: maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		c.Messages = q
	}, &q
}

const testRoutes = `{"routes": {
	"alerts": "FROM /messages/modules/a/outputs/out1 WHERE temp > 30 AND NOT IS_DEFINED(skip) INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")",
	"up": {"route": "FROM /messages/modules/a/* INTO $upstream", "priority": 1, "timeToLiveSecs": 3600}
}}`

// setRoutes deploys routes in $edgeHub's desired properties and waits for
// the broker to have them.
func (f *fixture) setRoutes(t testing.TB, desired string) {
	t.Helper()
	f.desiredAtDevice(t, HubModuleID, desired)
	eventually(t, "the broker to load the routes", func() bool {
		tw, err := f.syncer.Twin(HubModuleID)
		rt := f.broker.msg.routing.Load()
		return err == nil && rt != nil && rt.version == tw.DesiredVersion()
	})
}

func inputs(f *fixture, module string) string { return "devices/d/modules/" + module + "/inputs/#" }

func events(module, bag string) string {
	return "devices/d/modules/" + module + "/messages/events/" + bag
}

func (m *module) publish(t testing.TB, topic string, body string) {
	t.Helper()
	tok := m.c.Publish(topic, 1, false, body)
	if !tok.WaitTimeout(20e9) || tok.Error() != nil {
		t.Fatalf("publish %s: no PUBACK (%v)", topic, tok.Error())
	}
}

// nextInput returns the next message on one of the module's inputs.
func (m *module) nextInput(t testing.TB) (input string, props url.Values, body string) {
	t.Helper()
	for {
		msg := m.next(t)
		rest, ok := strings.CutPrefix(msg.Topic(), "devices/d/modules/")
		if !ok || !strings.Contains(rest, "/inputs/") {
			continue
		}
		parts := strings.SplitN(rest, "/", 4) // module, "inputs", input, bag
		in, bag := parts[2], parts[3]
		if strings.Contains(bag, "+") {
			t.Fatalf("input topic %s: a space must be %%20 (the Azure SDKs decode with decodeURIComponent)", msg.Topic())
		}
		props, err := url.ParseQuery(bag)
		if err != nil {
			t.Fatalf("input topic %s: %v", msg.Topic(), err)
		}
		return in, props, string(msg.Payload())
	}
}

func TestOutputsRoutedToInputsAndUpstream(t *testing.T) {
	cfg, q := withMessages(t, 0)
	f := setup(t, fixtureOptions{config: cfg})
	f.setRoutes(t, testRoutes)

	a := f.connectModule(t, "a")
	// Sent before b is there: kept for it.
	a.publish(t, events("a", "%24.on=out1&%24.mid=m1&%24.ct=application%2Fjson&temp=35&site=north%20yard"), `{"t":35}`)
	a.publish(t, events("a", "%24.on=out1&%24.mid=m2&temp=20"), `{"t":20}`)        // WHERE false
	a.publish(t, events("a", "%24.on=out1&%24.mid=m3&temp=40&skip=1"), `{"t":40}`) // NOT IS_DEFINED false
	a.publish(t, events("a", "%24.on=out2&%24.mid=m4&temp=50"), `{"t":50}`)        // other output
	a.publish(t, events("a", "%24.on=out1&%24.mid=m5&temp=31/"), `{"t":31}`)       // a trailing slash, as some SDKs send
	if st := (*q).Stats(UpstreamDest); st.Count != 5 {
		t.Fatalf("upstream queue holds %d messages, want all 5", st.Count)
	}
	if st := (*q).Stats(inputDestPrefix); st.Count != 2 {
		t.Fatalf("input queue holds %d messages, want 2 (m1, m5)", st.Count)
	}

	b := f.connectModule(t, "b")
	b.subscribe(t, inputs(f, "b"))
	for _, want := range []struct{ mid, temp, body string }{{"m1", "35", `{"t":35}`}, {"m5", "31", `{"t":31}`}} {
		in, props, body := b.nextInput(t)
		if in != "in1" || props.Get("$.mid") != want.mid || props.Get("temp") != want.temp || body != want.body {
			t.Fatalf("b got %s %v %s, want in1 %s", in, props, body, want.mid)
		}
		if props.Get("$.to") != "/devices/d/modules/b/inputs/in1" || props.Get("$.cmid") != "a" || props.Get("$.cdid") != "d" || props.Get("$.on") != "out1" {
			t.Fatalf("system properties %v", props)
		}
		if want.mid == "m1" && (props.Get("site") != "north yard" || props.Get("$.ct") != "application/json") {
			t.Fatalf("properties not kept: %v", props)
		}
	}
	eventually(t, "b's acknowledgements to empty its queue", func() bool { return (*q).Stats(inputDestPrefix).Count == 0 })

	// Live, now that b listens.
	a.publish(t, events("a", "%24.on=out1&%24.mid=m6&temp=99"), "hot")
	if _, props, body := b.nextInput(t); props.Get("$.mid") != "m6" || body != "hot" {
		t.Fatalf("live message: %v %q", props, body)
	}
}

func TestInputsRedeliveredAfterReconnect(t *testing.T) {
	cfg, q := withMessages(t, 0)
	f := setup(t, fixtureOptions{config: cfg})
	f.setRoutes(t, `{"routes": {"ab": "FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/b/inputs/x\")"}}`)
	a := f.connectModule(t, "a")
	for i := range 20 {
		a.publish(t, events("a", "n="+string(rune('a'+i))), "m")
	}
	// A restart of the broker (the daemon) keeps them.
	f.restartBroker(t)
	b := f.connectModule(t, "b")
	b.subscribe(t, inputs(f, "b"))
	for i := range 20 {
		if _, props, _ := b.nextInput(t); props.Get("n") != string(rune('a'+i)) {
			t.Fatalf("message %d: n=%s, want %c (in order)", i, props.Get("n"), 'a'+i)
		}
	}
	eventually(t, "the queue to empty", func() bool { return (*q).Stats(inputDestPrefix).Count == 0 })
}

func TestBadMessagesRefused(t *testing.T) {
	cfg, _ := withMessages(t, 0)
	f := setup(t, fixtureOptions{config: cfg})
	f.setRoutes(t, testRoutes)
	tests := []struct {
		name, topic string
		body        []byte
		reason      string
	}{
		{"another module's input", "devices/d/modules/b/inputs/in1/x=1", []byte("x"), "may not publish to inputs"},
		{"its own input", "devices/d/modules/a/inputs/in1/x=1", []byte("x"), "may not publish to inputs"},
		{"another module's events", events("b", ""), []byte("x"), "is not this module's"},
		{"malformed bag", events("a", "x=%zz"), []byte("x"), "malformed property bag"},
		{"duplicate property", events("a", "x=1&x=2"), []byte("x"), `property \"x\" appears twice`},
		{"too large", events("a", "$.on=out1"), make([]byte, MaxMessageSize+1), "IoT Hub's limit is 262144"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.connectModule(t, "a")
			a.c.Publish(tt.topic, 1, false, tt.body)
			a.waitLost(t, tt.name)
			f.waitLog(t, "refused message", tt.reason)
		})
	}
}

func TestFullQueueWithholdsPuback(t *testing.T) {
	cfg, q := withMessages(t, 400)
	f := setup(t, fixtureOptions{config: cfg})
	f.setRoutes(t, testRoutes)
	a := f.connectModule(t, "a")
	a.publish(t, events("a", "$.on=out2"), strings.Repeat("x", 10))           // about 200 bytes queued, with its properties
	a.c.Publish(events("a", "$.on=out2"), 1, false, strings.Repeat("y", 300)) // no room
	f.waitLog(t, "message queue is full", "PUBACK withheld")
	if st := (*q).Stats(UpstreamDest); st.Count != 1 || st.Refused != 1 {
		t.Fatalf("queue %+v, want the first message kept and one refused", st)
	}
	if st := f.broker.Messages(); st.Upstream.Refused != 1 {
		t.Fatalf("status %+v does not count the refusal", st)
	}
}

func TestRoutesThatDoNotParseRouteNothing(t *testing.T) {
	cfg, q := withMessages(t, 0)
	f := setup(t, fixtureOptions{config: cfg})
	f.setRoutes(t, `{"routes": {"bad": "FROM /messages/* WHERE $body.x > 1 INTO $upstream"}}`)
	a := f.connectModule(t, "a")
	a.publish(t, events("a", "$.on=out1"), "x")
	if st := (*q).Stats(""); st.Count != 0 {
		t.Fatalf("a route that does not parse routed %d messages", st.Count)
	}
	if st := f.broker.Messages(); !strings.Contains(st.RoutesError, `route "bad", column 24`) {
		t.Fatalf("status routes error %q", st.RoutesError)
	}
}

// TestSlowModuleKeepsGettingInputs: a module that holds its PUBACKs for
// longer than a second (mochi's inflight clean-up runs every second) still
// gets everything routed to it once it acknowledges, beyond the window of
// messages the broker sends ahead. Before the broker stamped its inflight
// packets with their creation time, mochi dropped them as over a day old,
// the late PUBACKs were ignored and delivery stopped at the window.
func TestSlowModuleKeepsGettingInputs(t *testing.T) {
	cfg, q := withMessages(t, 0)
	f := setup(t, fixtureOptions{config: cfg})
	f.setRoutes(t, `{"routes": {"ab": "FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/b/inputs/x\")"}}`)
	a := f.connectModule(t, "a")
	const n = 3 * deliverWindow
	var toks []paho.Token
	for i := range n {
		toks = append(toks, a.c.Publish(events("a", fmt.Sprintf("n=%d", i)), 1, false, "m"))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("message %d: no PUBACK (%v)", i, tok.Error())
		}
	}

	got := make(chan string, n)
	release := make(chan struct{})
	opts := paho.NewClientOptions().AddBroker("ssl://" + f.addr).
		SetClientID("d/b").SetUsername(f.username("b")).SetPassword(f.token(t, "b", f.keys["b"], time.Hour)).
		SetTLSConfig(f.tlsConfig()).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
			<-release // the PUBACK goes once the handler returns
			got <- msg.Topic()
		})
	b := paho.NewClient(opts)
	if tok := b.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("connect b: %v", tok.Error())
	}
	t.Cleanup(func() { b.Disconnect(100) })
	if tok := b.Subscribe(inputs(f, "b"), 1, nil); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe b: %v", tok.Error())
	}
	time.Sleep(2500 * time.Millisecond) // b holds the window's PUBACKs across at least two of mochi's clean-ups
	close(release)
	for i := range n {
		select {
		case topic := <-got:
			if !strings.HasSuffix(topic, fmt.Sprintf("&n=%d", i)) {
				t.Fatalf("message %d: topic %s (want them in order)", i, topic)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("b got %d of %d messages, then nothing for 20 s (queue %+v)", i, n, (*q).Stats(inputDestPrefix))
		}
	}
	eventually(t, "the queue to empty", func() bool { return (*q).Stats(inputDestPrefix).Count == 0 })
}
