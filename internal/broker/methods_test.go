package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// nextMethod returns the next method call the module gets, skipping twin
// messages.
func (m *module) nextMethod(t testing.TB) paho.Message {
	t.Helper()
	for {
		if msg := m.next(t); strings.HasPrefix(msg.Topic(), topicMethodPOST) {
			return msg
		}
	}
}

// TestInvokeMethod: a call reaches the module subscribed to methods on
// $iothub/methods/POST/{name}/?$rid=, its answer on
// $iothub/methods/res/{status}/?$rid= comes back to the caller; another
// module cannot answer it; a module not subscribed is ErrNotSubscribed,
// also after a connect wait; a late answer is dropped and logged.
func TestInvokeMethod(t *testing.T) {
	f := setup(t, fixtureOptions{})
	a := f.connectModule(t, "a")
	b := f.connectModule(t, "b")
	ctx := context.Background()

	if _, err := f.broker.InvokeMethod(ctx, "a", "reboot", []byte(`{}`), 0, time.Minute); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("before a subscribes: %v, want ErrNotSubscribed", err)
	}
	if _, err := f.broker.InvokeMethod(ctx, "nosuch", "reboot", nil, 200*time.Millisecond, time.Minute); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("unknown module after a connect wait: %v, want ErrNotSubscribed", err)
	}
	if codes := a.subscribe(t, filterMethods); codes[0] != 0 {
		t.Fatalf("subscribe %s: SUBACK %#x", filterMethods, codes[0])
	}

	type result struct {
		r   MethodResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := f.broker.InvokeMethod(ctx, "a", "reboot", []byte(`{"delay":1}`), 0, time.Minute)
		done <- result{r, err}
	}()
	msg := a.nextMethod(t)
	name, bag, ok := strings.Cut(strings.TrimPrefix(msg.Topic(), topicMethodPOST), "/?")
	if !ok || name != "reboot" || !strings.HasPrefix(bag, "$rid=") || string(msg.Payload()) != `{"delay":1}` {
		t.Fatalf("call: topic %s payload %s", msg.Topic(), msg.Payload())
	}
	rid := strings.TrimPrefix(bag, "$rid=")
	// b answering a's call is not an answer to it: dropped.
	b.c.Publish(topicMethodRes+"200/?$rid="+rid, 0, false, []byte(`"from b"`)).Wait()
	f.waitLog(t, "method response to no call waiting", "module=b")
	a.c.Publish(topicMethodRes+"201/?$rid="+rid, 0, false, []byte(`{"ok":true}`)).Wait()
	got := <-done
	if got.err != nil || got.r.Status != 201 || string(got.r.Payload) != `{"ok":true}` {
		t.Fatalf("result %+v %s, err %v", got.r, got.r.Payload, got.err)
	}

	// A caller that gives up: the late answer is dropped and logged.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		r, err := f.broker.InvokeMethod(cctx, "a", "slow", nil, 0, time.Minute)
		done <- result{r, err}
	}()
	msg = a.nextMethod(t)
	cancel()
	if got := <-done; !errors.Is(got.err, context.Canceled) {
		t.Fatalf("cancelled call: %v", got.err)
	}
	_, bag, _ = strings.Cut(msg.Topic(), "/?")
	a.c.Publish(topicMethodRes+"200/?"+bag, 0, false, []byte(`null`)).Wait()
	f.waitLog(t, "method response to no call waiting", "module=a")

	// A module that does not answer in time: ErrMethodTimeout.
	go func() {
		r, err := f.broker.InvokeMethod(ctx, "a", "slower", nil, 0, 100*time.Millisecond)
		done <- result{r, err}
	}()
	a.nextMethod(t)
	if got := <-done; !errors.Is(got.err, ErrMethodTimeout) {
		t.Fatalf("unanswered call: %v", got.err)
	}

	// A module that subscribes while the call waits for it gets it.
	c := f.connectModule(t, "b")
	go func() {
		r, err := f.broker.InvokeMethod(ctx, "b", "late", nil, time.Minute, time.Minute)
		done <- result{r, err}
	}()
	c.subscribe(t, filterMethods)
	msg = c.nextMethod(t)
	_, bag, _ = strings.Cut(msg.Topic(), "/?")
	c.c.Publish(topicMethodRes+"200/?"+bag, 0, false, []byte(`"here"`)).Wait()
	if got := <-done; got.err != nil || string(got.r.Payload) != `"here"` {
		t.Fatalf("waited-for module: %+v %v", got.r, got.err)
	}
}
