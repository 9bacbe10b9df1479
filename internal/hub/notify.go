package hub

import (
	"context"
	"strings"
	"sync"

	"github.com/outpost-edge/outpost/internal/store"
)

// notifier wakes the long polls of a device when any of its records change.
// Each device with waiters has a channel that is closed (and replaced) on a
// change; a waiter takes the channel before it reads the state, so no change
// slips between its read and its wait.
type notifier struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

func newNotifier() *notifier { return &notifier{chans: map[string]chan struct{}{}} }

// wait returns a channel closed at the next change of deviceID's records.
func (n *notifier) wait(deviceID string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.chans[deviceID]
	if !ok {
		ch = make(chan struct{})
		n.chans[deviceID] = ch
	}
	return ch
}

func (n *notifier) fire(deviceID string) {
	n.mu.Lock()
	if ch, ok := n.chans[deviceID]; ok {
		close(ch)
		delete(n.chans, deviceID)
	}
	n.mu.Unlock()
}

// run follows the store until ctx is done.
func (n *notifier) run(ctx context.Context, st store.Store) {
	for ev := range st.Watch(ctx, "") {
		if id := deviceOfKey(ev.Record.Key); id != "" {
			n.fire(id)
		}
	}
}

// deviceOfKey returns the device a registry record belongs to.
func deviceOfKey(key string) string {
	kind, rest, ok := strings.Cut(key, "/")
	if !ok {
		return ""
	}
	switch kind {
	case "devices", "modules", "twins":
		id, _, _ := strings.Cut(rest, "/")
		return id
	}
	return ""
}
