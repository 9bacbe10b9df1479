package syncer

import "strings"

// ChildOutbox returns how many reported patches of each child device wait
// in the outbox for the hub (children with none are left out). It reads
// the outbox's depth kept in memory (see outboxDepth), not the outbox.
func (s *Syncer) ChildOutbox() (map[string]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for ref, n := range s.depth.byRef {
		if id, ok := strings.CutPrefix(ref, "/"); ok {
			out[id] = n
		}
	}
	return out, nil
}
