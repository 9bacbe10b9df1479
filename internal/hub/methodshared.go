package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// storeMethods is a methodTable shared by the replicas of a hub through the
// store (etcd): a call made through replica A reaches the device
// long-polling replica B, and B's answer reaches the caller on A.
//
//	methodcalls/DEVICE/ID    the call: {"call": …, "taken": bool, "expires": unix ms}
//	methodresults/DEVICE/ID  the device's answer, for the caller's replica
//
// The caller's replica writes the call; the device's replica takes it with
// a compare-and-swap (taken: true), so that exactly one sync delivers it;
// the caller's replica sees that through its watch, and the answer through
// its watch on methodresults/, then deletes both records. A replica keeps in
// memory only its own callers and which devices have calls waiting (from
// the watch): nothing per device of the fleet. Records of a caller whose
// replica died expire: the device's next sync deletes them (a device that
// never syncs again keeps them, a few hundred bytes each).
type storeMethods struct {
	st  store.Store
	now func() time.Time

	mu      sync.Mutex
	callers map[string]*pendingCall    // call id → this replica's waiting caller
	waiting map[string]map[string]bool // device → ids of calls not taken (watch)
	wake    map[string]chan struct{}   // device → closed when a call is added
}

const (
	methodCallsKind   = "methodcalls"
	methodResultsKind = "methodresults"
)

type storedCall struct {
	Call    hubapi.MethodCall `json:"call"`
	Taken   bool              `json:"taken"`
	Expires int64             `json:"expires"` // unix ms
}

func methodCallKey(deviceID, id string) string { return methodCallsKind + "/" + deviceID + "/" + id }
func methodResultKey(deviceID, id string) string {
	return methodResultsKind + "/" + deviceID + "/" + id
}

// newStoreMethods follows the store's call and result records until ctx
// ends.
func newStoreMethods(ctx context.Context, st store.Store, now func() time.Time) (*storeMethods, error) {
	t := &storeMethods{st: st, now: now, callers: map[string]*pendingCall{}, waiting: map[string]map[string]bool{}, wake: map[string]chan struct{}{}}
	calls := st.Watch(ctx, methodCallsKind+"/")
	results := st.Watch(ctx, methodResultsKind+"/")
	recs, err := st.List(methodCallsKind + "/")
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		t.callEvent(store.Event{Type: store.Put, Record: r})
	}
	go func() {
		for ev := range calls {
			t.callEvent(ev)
		}
	}()
	go func() {
		for ev := range results {
			if ev.Type == store.Put {
				t.resultEvent(ev.Record)
			}
		}
	}()
	return t, nil
}

// callEvent follows a call record: waiting while not taken; a caller of
// this replica whose call was taken learns it.
func (t *storeMethods) callEvent(ev store.Event) {
	rest := strings.TrimPrefix(ev.Record.Key, methodCallsKind+"/")
	dev, id, ok := strings.Cut(rest, "/")
	if !ok {
		return
	}
	var sc storedCall
	taken := ev.Type == store.Delete || json.Unmarshal(ev.Record.Value, &sc) != nil || sc.Taken
	t.mu.Lock()
	defer t.mu.Unlock()
	if taken {
		if m := t.waiting[dev]; m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(t.waiting, dev)
			}
		}
		if c := t.callers[id]; c != nil && !c.taken && ev.Type == store.Put {
			c.taken = true
			close(c.taken1)
		}
		return
	}
	m := t.waiting[dev]
	if m == nil {
		m = map[string]bool{}
		t.waiting[dev] = m
	}
	m[id] = true
	if ch, ok := t.wake[dev]; ok {
		close(ch)
		delete(t.wake, dev)
	}
}

// resultEvent hands an answer to this replica's caller, if it is here.
func (t *storeMethods) resultEvent(r store.Record) {
	rest := strings.TrimPrefix(r.Key, methodResultsKind+"/")
	_, id, ok := strings.Cut(rest, "/")
	if !ok {
		return
	}
	var res hubapi.MethodResponse
	if json.Unmarshal(r.Value, &res) != nil {
		return
	}
	t.mu.Lock()
	c := t.callers[id]
	t.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case c.result <- res:
	default:
	}
	_ = t.st.Delete(r.Key, r.Version)
}

func (t *storeMethods) add(c *pendingCall) {
	t.mu.Lock()
	t.callers[c.call.ID] = c
	t.mu.Unlock()
	ttl := time.Duration(c.call.ConnectTimeoutMs+c.call.ResponseTimeoutMs)*time.Millisecond + time.Minute
	b, _ := json.Marshal(storedCall{Call: c.call, Expires: t.now().Add(ttl).UnixMilli()})
	// A call the store does not take is not delivered: the caller gets its
	// connect timeout, as for a device that is not there.
	_, _ = t.st.Put(methodCallKey(c.deviceID, c.call.ID), b, 0)
}

func (t *storeMethods) ready(deviceID string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.waiting[deviceID]) > 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if ch, ok := t.wake[deviceID]; ok {
		return ch
	}
	ch := make(chan struct{})
	t.wake[deviceID] = ch
	return ch
}

func (t *storeMethods) take(deviceID string) []hubapi.MethodCall {
	t.mu.Lock()
	n := len(t.waiting[deviceID])
	t.mu.Unlock()
	if n == 0 {
		return nil
	}
	recs, err := t.st.List(methodCallsKind + "/" + deviceID + "/")
	if err != nil {
		return nil
	}
	var out []hubapi.MethodCall
	for _, r := range recs {
		var sc storedCall
		if json.Unmarshal(r.Value, &sc) != nil || sc.Taken {
			continue
		}
		if t.now().UnixMilli() > sc.Expires { // its caller's replica is gone
			_ = t.st.Delete(r.Key, r.Version)
			continue
		}
		sc.Taken = true
		b, _ := json.Marshal(sc)
		if _, err := t.st.Put(r.Key, b, r.Version); err == nil {
			out = append(out, sc.Call)
		}
	}
	return out
}

func (t *storeMethods) withdraw(deviceID, id string) bool {
	t.mu.Lock()
	c := t.callers[id]
	seenTaken := c != nil && c.taken
	delete(t.callers, id)
	t.mu.Unlock()
	key := methodCallKey(deviceID, id)
	_ = t.st.Delete(methodResultKey(deviceID, id), store.Any)
	r, err := t.st.Get(key)
	if err != nil {
		return false
	}
	var sc storedCall
	untaken := json.Unmarshal(r.Value, &sc) == nil && !sc.Taken
	if err := t.st.Delete(key, r.Version); err != nil {
		return false // taken meanwhile
	}
	return untaken && !seenTaken
}

func (t *storeMethods) complete(deviceID, id string, r hubapi.MethodResponse) error {
	rec, err := t.st.Get(methodCallKey(deviceID, id))
	if errors.Is(err, store.ErrNotFound) {
		return errNoSuchCall
	}
	if err != nil {
		return err
	}
	var sc storedCall
	if json.Unmarshal(rec.Value, &sc) != nil || !sc.Taken {
		return errNoSuchCall
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := t.st.Put(methodResultKey(deviceID, id), b, 0); errors.Is(err, store.ErrConflict) {
		return errNoSuchCall // answered already
	} else if err != nil {
		return err
	}
	return nil
}
