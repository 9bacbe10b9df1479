package syncer

// ChildOutbox returns how many reported patches of each child device wait
// in the outbox for the hub (children with none are left out). It reads
// the outbox: a status call, not one for a hot path.
func (s *Syncer) ChildOutbox() (map[string]int, error) {
	ps, err := s.pending(0)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range ps {
		if p.DeviceID != "" {
			out[p.DeviceID]++
		}
	}
	return out, nil
}
