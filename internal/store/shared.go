package store

import "strings"

// ListShared is List without copying the values: each Value is the store's
// own, which it never changes (a write installs a new slice). The caller must
// not change them either. For readers that keep many records in memory (the
// hub's query index), so that they are not held twice.
func (s *FileStore) ListShared(prefix string) ([]Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	n := 0 // counted first: appending 130,000 records made twice their size in garbage
	s.keys.ascend(prefix, func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		n++
		return true
	})
	recs := make([]Record, 0, n)
	s.keys.ascend(prefix, func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		e := s.index[k]
		recs = append(recs, Record{Key: k, Version: e.version, Value: e.value})
		return true
	})
	return recs, nil
}

// SharedValue returns the store's own value of key (not a copy: see
// ListShared) if the record is at version, and false otherwise. A watcher
// that keeps values uses it to hold the store's copy instead of the event's.
func (s *FileStore) SharedValue(key string, version int64) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.index[key]
	if !ok || e.version != version {
		return nil, false
	}
	return e.value, true
}
