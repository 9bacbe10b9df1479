package hub

import (
	"sync"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore"
)

// A sync cursor's revision is the highest version the sync read; the next
// incremental sync sends only the records above it. On the file store a
// write takes its version before its fsync and becomes visible after it,
// so a write can become visible after one with a higher version: a cursor
// given in between covered the late write, which no incremental sync then
// sent (a desired change to a leaf device that never reports reached its
// parent only when the leaf's twin was written again: its own upload).
// The hub therefore notes the writes under way, and gives no cursor above
// a version that a write under way may still take (writeOrder.visible).
// etcd gives revisions at commit, visible in order: its store is not
// wrapped.

// writeOrder follows the store writes under way in this hub process.
type writeOrder struct {
	mu   sync.Mutex
	done int64 // the highest version a write through the hub returned
	next uint64
	busy map[uint64]int64 // the writes under way: done when each began
}

func (o *writeOrder) begin() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.busy == nil {
		o.busy = map[uint64]int64{}
	}
	o.next++
	o.busy[o.next] = o.done
	return o.next
}

func (o *writeOrder) end(id uint64, v int64) {
	o.mu.Lock()
	delete(o.busy, id)
	o.done = max(o.done, v)
	o.mu.Unlock()
}

// visible returns a version up to which every write is visible, and false
// when no write is under way (all are). A write under way takes a version
// above every version a write had returned when it began (versions are
// handed out in order), so above the least of those.
func (o *writeOrder) visible() (int64, bool) {
	if o == nil {
		return 0, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.busy) == 0 {
		return 0, false
	}
	w := o.done
	for _, d := range o.busy {
		w = min(w, d)
	}
	return w, true
}

// orderedStore is a store whose Put and Txn writeOrder follows. Delete
// takes no version: a record's removal is seen by the sums a cursor holds.
type orderedStore struct {
	store.Store
	o *writeOrder
}

func (s orderedStore) Put(key string, value []byte, expect int64) (int64, error) {
	id := s.o.begin()
	v, err := s.Store.Put(key, value, expect)
	s.o.end(id, v)
	return v, err
}

// TxnLimit is the underlying store's (store.TxnLimiter).
func (s orderedStore) TxnLimit() int { return store.TxnLimit(s.Store) }

func (s orderedStore) Txn(ops ...store.Op) (int64, error) {
	id := s.o.begin()
	v, err := s.Store.Txn(ops...)
	s.o.end(id, v)
	return v, err
}

// GetShared is the underlying store's GetShared, or its Get if it has none.
func (s orderedStore) GetShared(key string) (store.Record, error) { return getShared(s.Store, key) }

// orderedSharedStore is an orderedStore over a store that is also a
// sharedStore (the file store), which it stays.
type orderedSharedStore struct {
	orderedStore
	sh sharedStore
}

func (s orderedSharedStore) ListShared(prefix string) ([]store.Record, error) {
	return s.sh.ListShared(prefix)
}

func (s orderedSharedStore) SharedValue(key string, version int64) ([]byte, bool) {
	return s.sh.SharedValue(key, version)
}

// orderWrites returns st with its writes followed, and what follows them;
// etcd's store as it is, with nil.
func orderWrites(st store.Store) (store.Store, *writeOrder) {
	if _, ok := st.(*etcdstore.Store); ok {
		return st, nil
	}
	o := &writeOrder{}
	os := orderedStore{st, o}
	if sh, ok := st.(sharedStore); ok {
		return orderedSharedStore{os, sh}, o
	}
	return os, o
}
