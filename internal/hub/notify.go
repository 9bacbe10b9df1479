package hub

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// notifier wakes the long polls of a device when any of its records change.
// Each device with waiters has a channel that is closed (and replaced) on a
// change; a waiter takes the channel before it reads the state, so no change
// slips between its read and its wait.
//
// It also keeps which devices are whose children (from the parentScopes of
// the device records it sees), so that a change of a child (its identity,
// its device twin) wakes its parent too, and so that a parent's sync finds
// its children without reading every device.
type notifier struct {
	mu    sync.Mutex
	chans map[string]chan struct{}

	ready    bool                           // parents holds every device record's parent
	parents  map[string]string              // child id → parent id
	children map[string]map[string]struct{} // parent id → child ids
}

func newNotifier() *notifier {
	return &notifier{chans: map[string]chan struct{}{}, parents: map[string]string{}, children: map[string]map[string]struct{}{}}
}

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

// fireLocked wakes deviceID's waiters; the caller holds n.mu.
func (n *notifier) fireLocked(deviceID string) {
	if ch, ok := n.chans[deviceID]; ok {
		close(ch)
		delete(n.chans, deviceID)
	}
}

// childrenOf returns the ids of the children of device id, sorted, and
// false while the notifier has not read every device yet (the caller then
// reads the registry).
func (n *notifier) childrenOf(id string) ([]string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.ready {
		return nil, false
	}
	out := make([]string, 0, len(n.children[id]))
	for c := range n.children[id] {
		out = append(out, c)
	}
	slices.Sort(out)
	return out, true
}

// setParent records device id's parent ("" for none) and wakes the
// device, its old parent and its new one; the caller holds n.mu.
func (n *notifier) setParentLocked(id, parent string) {
	old := n.parents[id]
	if old != parent {
		if old != "" {
			delete(n.children[old], id)
			if len(n.children[old]) == 0 {
				delete(n.children, old)
			}
			n.fireLocked(old)
		}
		if parent == "" {
			delete(n.parents, id)
		} else {
			n.parents[id] = parent
			if n.children[parent] == nil {
				n.children[parent] = map[string]struct{}{}
			}
			n.children[parent][id] = struct{}{}
		}
	}
	n.fireLocked(id)
	if parent != "" {
		n.fireLocked(parent)
	}
}

// parentOfRecord returns the parent a device record names ("" for none,
// or for a record that is not a device): hubapi.Device.ParentID, read from
// the record's JSON without decoding all of it (the notifier reads every
// device when the hub starts).
func parentOfRecord(value []byte) string {
	scope, ok := lookupRaw(value, "parentScopes[0]")
	if !ok {
		caps, ok := lookupRaw(value, "capabilities")
		if !ok || caps[0] != '{' {
			return ""
		}
		if edge, ok := lookupRaw(caps, "iotEdge"); ok && string(edge) == "true" {
			return ""
		}
		if scope, ok = lookupRaw(value, "deviceScope"); !ok {
			return ""
		}
	}
	s, _ := decodeValue(scope)
	str, _ := s.(string)
	id, _ := hubapi.ScopeDeviceID(str)
	return strings.Clone(id)
}

// notifyPage is how many device identities run reads at a time.
const notifyPage = 1000

// run follows the store until ctx is done.
func (n *notifier) run(ctx context.Context, st store.Store) {
	events := st.Watch(ctx, "") // before the list, so that no change is missed
	// The devices are read a page at a time, not in one List: on etcd, a
	// List of 100,000 device identities held about 90 MB at once while a
	// replica started. A device changed between two pages is set again by
	// its event, which is applied after the list.
	after, err := "", error(nil)
	for {
		var page []store.Record
		if page, err = st.Range("devices/", after, notifyPage); err != nil {
			break
		}
		n.mu.Lock()
		for _, rec := range page {
			if p := parentOfRecord(rec.Value); p != "" {
				n.setParentLocked(strings.TrimPrefix(rec.Key, "devices/"), p)
			}
		}
		n.mu.Unlock()
		if len(page) < notifyPage {
			break
		}
		after = page[len(page)-1].Key
	}
	if err == nil {
		n.mu.Lock()
		n.ready = true
		n.mu.Unlock()
	} // else the syncs read the registry for the children
	for ev := range events {
		n.event(ev)
	}
}

// event wakes the devices a store event concerns.
func (n *notifier) event(ev store.Event) {
	kind, rest, ok := strings.Cut(ev.Record.Key, "/")
	if !ok {
		return
	}
	id, sub, _ := strings.Cut(rest, "/")
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case kind == "devices" && sub == "":
		parent := ""
		if ev.Type == store.Put {
			parent = parentOfRecord(ev.Record.Value)
		}
		n.setParentLocked(id, parent)
	case kind == "twins" && sub == "": // a device twin: its parent's sync carries it
		n.fireLocked(id)
		if p := n.parents[id]; p != "" {
			n.fireLocked(p)
		}
	case kind == "modules" || kind == "twins":
		n.fireLocked(id)
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
