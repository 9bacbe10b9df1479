package store

import (
	"context"
	"strings"
	"sync"
)

// EventType says what happened to a record.
type EventType int

// Event types.
const (
	Put EventType = iota + 1
	Delete
)

func (t EventType) String() string {
	switch t {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// Event is one change to a record. For Put, Record is the record as written. For Delete,
// Record has the key and the version the record had when it was deleted, and no value.
// The value of a Put is the store's own, shared by every watcher (one copy per watcher was
// a clone per write and watcher, and a hub has several watchers of every write): read it,
// never change it.
type Event struct {
	Type   EventType
	Record Record
}

// watcher queues events for one Watch call without bound, so that writers never wait for
// a slow reader; its goroutine hands them over in order.
type watcher struct {
	prefix string
	wake   chan struct{} // capacity 1

	mu    sync.Mutex
	queue []Event
}

// maxSpareBatch bounds the queue array a watcher keeps for reuse.
const maxSpareBatch = 256

func (w *watcher) push(ev Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Watch returns a channel of the changes to records whose keys start with prefix, made
// after Watch returns. Events arrive once durable, in commit order for each key. The
// channel is closed when ctx is done or the store is closed; events not yet received then
// are dropped.
//
// A watcher that falls behind never slows writers: its events queue in memory without
// bound until it reads them or its ctx ends, so a watcher must keep reading or cancel.
//
// To follow a set of records without missing changes, Watch first, then List, then apply
// events whose version is above the one listed for their key (a Delete event carries the
// version of the record it deleted).
func (s *FileStore) Watch(ctx context.Context, prefix string) <-chan Event {
	out := make(chan Event)
	w := &watcher{prefix: prefix, wake: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(out)
		return out
	}
	s.watchers[w] = struct{}{}
	s.watchWG.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.watchWG.Done()
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		var spare []Event // the last batch's array, for the queue to reuse
		for {
			select {
			case <-w.wake:
			case <-ctx.Done():
				return
			case <-s.done:
				return
			}
			w.mu.Lock()
			batch := w.queue
			w.queue = spare
			w.mu.Unlock()
			for _, ev := range batch {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				case <-s.done:
					return
				}
			}
			spare = nil
			if cap(batch) <= maxSpareBatch { // a long queue (a reader that fell behind) goes
				clear(batch)
				spare = batch[:0]
			}
		}
	}()
	return out
}

// publish queues ev for every watcher of its key. The caller holds s.mu.
func (s *FileStore) publish(ev Event) {
	for w := range s.watchers {
		if !strings.HasPrefix(ev.Record.Key, w.prefix) {
			continue
		}
		w.push(ev)
	}
}
