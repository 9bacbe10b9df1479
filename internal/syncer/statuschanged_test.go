package syncer

import (
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// waitStatus waits, on StatusChanged alone (no polling), until cond holds. A
// change that is not signalled hangs the wait, which fails after a minute.
func waitStatus(t *testing.T, s *Syncer, what string, cond func() bool) {
	t.Helper()
	hang := time.NewTimer(time.Minute)
	defer hang.Stop()
	for {
		c := s.StatusChanged()
		if cond() {
			return
		}
		select {
		case <-c:
		case <-hang.C:
			t.Fatalf("%s: not signalled by StatusChanged", what)
		}
	}
}

func TestStatusChangedSignalsLinkAndOutbox(t *testing.T) {
	f := setup(t)
	s, _ := run(t, f, f.st)
	waitStatus(t, s, "connected", func() bool { return s.Link().Connected && !s.Link().LastSync.IsZero() })

	addr := f.hub.Addr().String()
	f.hub.Stop()
	waitStatus(t, s, "the link down", func() bool { return !s.Link().Connected })

	// A commit to the outbox signals before PatchReported returns.
	c := s.StatusChanged()
	if _, err := s.PatchReported("a", []byte(`{"offline":true}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c:
	default:
		t.Fatal("a patch queued in the outbox was not signalled")
	}
	ob, err := s.Outbox()
	if err != nil || ob.Patches != 1 || ob.Bytes != len(`{"offline":true}`) || ob.Oldest.IsZero() {
		t.Fatalf("outbox: %+v %v", ob, err)
	}

	// The hub back: the link up, then the outbox drained, each signalled.
	hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	waitStatus(t, s, "the link up", func() bool { return s.Link().Connected })
	waitStatus(t, s, "the outbox drained", func() bool {
		ob, err := s.Outbox()
		if err != nil {
			t.Fatal(err)
		}
		return ob.Patches == 0
	})
	if st, err := s.Status(); err != nil || !st.Connected || st.Outbox.Patches != 0 || len(st.Twins) == 0 {
		t.Errorf("status: %+v %v", st, err)
	}
}

// TestStatusChangedOnLinkChangesOnly checks the signal of the link on a
// syncer that is not running, so that nothing else signals meanwhile.
func TestStatusChangedOnLinkChangesOnly(t *testing.T) {
	f := setup(t)
	s, err := New(f.device, f.st, "d")
	if err != nil {
		t.Fatal(err)
	}
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	c := s.StatusChanged()
	s.setConnected(true, nil)
	if !closed(c) || !s.Link().Connected {
		t.Fatal("the link going up was not signalled")
	}
	c = s.StatusChanged()
	s.setConnected(true, nil)
	if closed(c) {
		t.Fatal("signalled without a change")
	}
	s.setConnected(false, errors.New("hub gone"))
	if !closed(c) || s.Link().Connected {
		t.Fatal("the link going down was not signalled")
	}
}
