// Package keylock is a mutex per key, kept only while some caller holds or
// waits for it: what a set of locks holds does not grow with the keys it
// ever served.
package keylock

import "sync"

// Locks is a set of mutexes by key. The zero value is ready to use.
type Locks struct {
	mu sync.Mutex
	m  map[string]*lock
}

type lock struct {
	sync.Mutex
	refs int // callers holding or waiting for it; guarded by Locks.mu
}

// Lock locks key's mutex and returns its unlock.
func (l *Locks) Lock(key string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*lock{}
	}
	e := l.m[key]
	if e == nil {
		e = &lock{}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
}
