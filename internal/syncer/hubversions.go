package syncer

import (
	"time"

	"github.com/outpost-edge/outpost/internal/twin"
)

// hubSeen is a module twin's versions as the hub last sent them (in a sync
// answer, before the device lays its queued patches on), and when that
// answer came. They are kept in sync/state, saved with the cursor they
// belong to: an answer carries every twin changed since the cursor, so the
// hub's twin held these versions from At until LastSync at least.
type hubSeen struct {
	Desired  int64     `json:"d"`
	Reported int64     `json:"r"`
	At       time.Time `json:"at"`
}

// noteHub remembers t's versions as the hub sent them at at; the caller
// holds s.mu and saves the state.
func (s *Syncer) noteHub(t *twin.Twin, at time.Time) {
	if s.state.Hub == nil {
		s.state.Hub = map[string]hubSeen{}
	}
	s.state.Hub[t.ModuleID] = hubSeen{Desired: t.DesiredVersion(), Reported: t.ReportedVersion(), At: at}
}

// pruneHub forgets the hub's versions of modules the device no longer has;
// the caller holds s.mu.
func (s *Syncer) pruneHub(keep map[string]bool) {
	for id := range s.state.Hub {
		if !keep[id] {
			delete(s.state.Hub, id)
		}
	}
}

// twinExtras is what Status adds to each cached twin's versions: the hub's,
// and how many of its reported patches wait in the outbox. It reads no
// store: both are in memory.
func (s *Syncer) twinExtras() (map[string]hubSeen, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hub := make(map[string]hubSeen, len(s.state.Hub))
	for id, h := range s.state.Hub {
		hub[id] = h
	}
	return hub, s.depth.queuedByRef()
}
