package broker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Direct method topics, as a module sees them: calls arrive on
// $iothub/methods/POST/{method}/?$rid={rid} (the module subscribes to
// $iothub/methods/POST/#), the module answers on
// $iothub/methods/res/{status}/?$rid={rid}.
const (
	filterMethods   = "$iothub/methods/POST/#"
	topicMethodPOST = "$iothub/methods/POST/"
	topicMethodRes  = "$iothub/methods/res/"
)

// ErrMethodTimeout means the module took the call but did not answer in
// time.
var ErrMethodTimeout = errors.New("the module did not answer in time")

// ErrNotSubscribed means the module was not connected and subscribed to
// methods within the time it was given.
var ErrNotSubscribed = errors.New("the module is not connected to the broker, or not subscribed to methods")

// methodCalls are the broker's calls waiting for a module's answer.
type methodCalls struct {
	mu      sync.Mutex
	next    uint64
	waiting map[string]*methodWait // rid → call
	changed chan struct{}          // closed (and replaced) when a module connects or subscribes
}

type methodWait struct {
	owner  string // methodOwner of the session the call went to
	method string
	res    chan MethodResult // buffered 1
}

// MethodResult is a module's answer to a direct method.
type MethodResult struct {
	Status  int
	Payload []byte
}

func (mc *methodCalls) wake() {
	mc.mu.Lock()
	if mc.changed != nil {
		close(mc.changed)
		mc.changed = nil
	}
	mc.mu.Unlock()
}

func (mc *methodCalls) waitChange() <-chan struct{} {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.changed == nil {
		mc.changed = make(chan struct{})
	}
	return mc.changed
}

// subscribedToMethods returns s when it is subscribed to methods, else nil.
func subscribedToMethods(s *session) *session {
	if s == nil {
		return nil
	}
	if _, ok := s.cl.State.Subscriptions.Get(filterMethods); !ok {
		return nil
	}
	return s
}

// InvokeMethod publishes a direct method call to a module and waits up to
// responseWait for its answer (then it fails with ErrMethodTimeout). A
// module that is not connected and subscribed to $iothub/methods/POST/# is
// waited for up to connectWait; then the call fails with ErrNotSubscribed.
func (b *Broker) InvokeMethod(ctx context.Context, moduleID, method string, payload []byte, connectWait, responseWait time.Duration) (MethodResult, error) {
	return b.invoke(ctx, "module "+moduleID, func() *session { return subscribedToMethods(b.sessionOf(false, moduleID)) }, method, payload, connectWait, responseWait)
}

// invoke calls method on the session find returns (nil while there is none
// subscribed to methods), waiting for one up to connectWait; target names
// it in logs.
func (b *Broker) invoke(ctx context.Context, target string, find func() *session, method string, payload []byte, connectWait, responseWait time.Duration) (MethodResult, error) {
	var s *session
	if connectWait > 0 {
		t := time.NewTimer(connectWait)
		defer t.Stop()
		for {
			changed := b.mc.waitChange()
			if s = find(); s != nil {
				break
			}
			select {
			case <-changed:
			case <-t.C:
				return MethodResult{}, ErrNotSubscribed
			case <-ctx.Done():
				return MethodResult{}, ctx.Err()
			}
		}
	} else if s = find(); s == nil {
		return MethodResult{}, ErrNotSubscribed
	}

	w := &methodWait{owner: methodOwner(s), method: method, res: make(chan MethodResult, 1)}
	b.mc.mu.Lock()
	if b.mc.waiting == nil {
		b.mc.waiting = map[string]*methodWait{}
	}
	b.mc.next++
	rid := strconv.FormatUint(b.mc.next, 16)
	b.mc.waiting[rid] = w
	b.mc.mu.Unlock()
	defer func() {
		b.mc.mu.Lock()
		delete(b.mc.waiting, rid)
		b.mc.mu.Unlock()
	}()
	b.publish(s, topicMethodPOST+url.PathEscape(method)+"/?$rid="+rid, payload)
	rt := time.NewTimer(responseWait)
	defer rt.Stop()
	select {
	case r := <-w.res:
		return r, nil
	case <-rt.C:
		b.log.Info("broker: no answer to a method call in time", "target", target, "method", method, "timeout", responseWait)
		return MethodResult{}, ErrMethodTimeout
	case <-ctx.Done():
		return MethodResult{}, ctx.Err()
	}
}

// answerMethod takes a module's answer on $iothub/methods/res/{status}/?$rid={rid}.
// An answer to no call waiting (it timed out, or it is another module's) is
// logged and dropped.
func (b *Broker) answerMethod(s *session, topic string, payload []byte) error {
	rest := strings.TrimPrefix(topic, topicMethodRes)
	status, bag, ok := strings.Cut(rest, "/?")
	if !ok {
		return fmt.Errorf("topic %q: want %s{status}/?$rid={request id}", topic, topicMethodRes)
	}
	code, err := strconv.Atoi(status)
	if err != nil || code < 100 || code > 999 {
		return fmt.Errorf("topic %q: status %q is not a status code (100 to 999)", topic, status)
	}
	props, err := parsePropertyBag(bag)
	if err != nil {
		return fmt.Errorf("topic %q: %w", topic, err)
	}
	rid := props["$rid"]
	if rid == "" {
		return fmt.Errorf("topic %q has no $rid: answer with the $rid of the call", topic)
	}
	b.mc.mu.Lock()
	w := b.mc.waiting[rid]
	if w != nil && w.owner != methodOwner(s) {
		w = nil // not this client's call
	}
	if w != nil {
		delete(b.mc.waiting, rid)
	}
	b.mc.mu.Unlock()
	if w == nil {
		b.log.Warn("broker: a method response to no call waiting (it timed out, or was answered already): dropped", s.m.kind(), s.m.id, "rid", rid, "status", code)
		return nil
	}
	w.res <- MethodResult{Status: code, Payload: append([]byte(nil), payload...)}
	return nil
}
