package hub

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// methodTable holds the direct method calls waiting for their device: the
// invoking request adds a call and waits, the device's sync takes it, the
// device's result completes it. It is an interface so that replicas of the
// hub (where the caller and the device's long poll may meet on different
// processes) can share one through the store later; memMethods serves one
// process.
type methodTable interface {
	// add registers c for its device; its sync takes it at once.
	add(c *pendingCall)
	// ready returns a channel closed when deviceID has calls to take.
	ready(deviceID string) <-chan struct{}
	// take returns deviceID's calls not yet taken, now taken.
	take(deviceID string) []hubapi.MethodCall
	// withdraw removes a call; it reports whether the call was never taken.
	withdraw(deviceID, id string) (untaken bool)
	// complete hands a device's response to the waiting caller; it fails
	// with errNoSuchCall when nobody waits for it any more.
	complete(deviceID, id string, r hubapi.MethodResponse) error
}

var errNoSuchCall = errors.New("no such method call")

// pendingCall is one call waiting in a methodTable.
type pendingCall struct {
	deviceID string
	call     hubapi.MethodCall
	taken    bool
	result   chan hubapi.MethodResponse // buffered 1
	taken1   chan struct{}              // closed when taken
}

func newPendingCall(deviceID string, c hubapi.MethodCall) *pendingCall {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	c.ID = hex.EncodeToString(b)
	return &pendingCall{deviceID: deviceID, call: c, result: make(chan hubapi.MethodResponse, 1), taken1: make(chan struct{})}
}

// memMethods is a methodTable in memory.
type memMethods struct {
	mu    sync.Mutex
	calls map[string]map[string]*pendingCall // device → call id → call
	wake  map[string]chan struct{}           // device → closed when a call is added
}

func newMemMethods() *memMethods {
	return &memMethods{calls: map[string]map[string]*pendingCall{}, wake: map[string]chan struct{}{}}
}

func (t *memMethods) add(c *pendingCall) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.calls[c.deviceID]
	if m == nil {
		m = map[string]*pendingCall{}
		t.calls[c.deviceID] = m
	}
	m[c.call.ID] = c
	if ch, ok := t.wake[c.deviceID]; ok {
		close(ch)
		delete(t.wake, c.deviceID)
	}
}

func (t *memMethods) ready(deviceID string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := make(chan struct{})
	for _, c := range t.calls[deviceID] {
		if !c.taken {
			close(ch)
			return ch
		}
	}
	if old, ok := t.wake[deviceID]; ok {
		return old
	}
	t.wake[deviceID] = ch
	return ch
}

func (t *memMethods) take(deviceID string) []hubapi.MethodCall {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []hubapi.MethodCall
	for _, c := range t.calls[deviceID] {
		if !c.taken {
			c.taken = true
			close(c.taken1)
			out = append(out, c.call)
		}
	}
	return out
}

func (t *memMethods) withdraw(deviceID, id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.calls[deviceID]
	c, ok := m[id]
	if !ok {
		return false
	}
	delete(m, id)
	if len(m) == 0 {
		delete(t.calls, deviceID)
	}
	return !c.taken
}

func (t *memMethods) complete(deviceID, id string, r hubapi.MethodResponse) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.calls[deviceID][id]
	if !ok || !c.taken {
		return errNoSuchCall
	}
	select {
	case c.result <- r:
		return nil
	default:
		return errNoSuchCall // answered already
	}
}
