package syncer

import (
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
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

// noteUploaded updates the hub's reported versions after an upload the hub
// acknowledged up to ack.Acked: a twin whose patches the hub now holds, all
// of them (none left queued, none refused in this batch), has at the hub
// the reported version the device has, since the hub lays the same patches
// on the same twin. Sync answers leave such twins out (they are the
// device's own uploads), so this is how the hub's version is known then.
// The caller holds s.mu.
func (s *Syncer) noteUploaded(batch []hubapi.ReportedPatch, ack *hubapi.ReportedAck, at time.Time) {
	refused := map[string]bool{}
	for _, r := range ack.Rejected {
		for _, p := range batch {
			if p.Seq == r.Seq {
				refused[patchRef(p)] = true
			}
		}
	}
	for _, p := range batch {
		ref := patchRef(p)
		seen, ok := s.state.Hub[ref]
		if !ok || p.Seq > ack.Acked || refused[ref] || s.depth.byRef[ref] > 0 {
			continue
		}
		t, err := s.localTwin(ref)
		if err != nil {
			continue
		}
		seen.Reported, seen.At = t.ReportedVersion(), at
		s.state.Hub[ref] = seen
	}
}
