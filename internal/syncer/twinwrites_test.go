package syncer

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
)

// slowTwinStore holds the next Put of key, before it reaches the store,
// until release is closed (a compaction's twin write on a slow disk).
type slowTwinStore struct {
	store.Store
	mu       sync.Mutex
	key      string
	entered  chan struct{}
	release  chan struct{}
	released sync.Once
}

func (s *slowTwinStore) Put(key string, value []byte, expect int64) (int64, error) {
	s.mu.Lock()
	hold := key == s.key
	if hold {
		s.key = ""
	}
	s.mu.Unlock()
	if hold {
		close(s.entered)
		<-s.release
	}
	return s.Store.Put(key, value, expect)
}

// holdTwinWrite starts writeTwins with module a's twin dirty, and returns
// once its write of twins/a is held.
func holdTwinWrite(t *testing.T) (*fixture, *Syncer, *slowTwinStore, chan error) {
	t.Helper()
	f := setup(t)
	st := &slowTwinStore{Store: f.st, entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() { st.released.Do(func() { close(st.release) }) })
	s, err := New(f.device, st, "d")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.apply(mustSync(t, f)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PatchReported("a", []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.key = "twins/a"
	st.mu.Unlock()
	written := make(chan error, 1)
	go func() { written <- s.writeTwins() }()
	<-st.entered
	return f, s, st, written
}

// applyWithin applies answer, failing the test if it has not returned
// within 30 s (a watchdog, not a measure).
func applyWithin(t *testing.T, s *Syncer, f *fixture, what string) {
	t.Helper()
	answer := mustSync(t, f)
	applied := make(chan error, 1)
	go func() { applied <- s.apply(answer) }()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal(what)
	}
}

// TestAnswerDoesNotWaitForTwinWrites: a sync answer's twins are applied
// while a compaction writes the dirty twins (held here on module a's), as
// long as it does not change those: a desired change is not delayed by
// up to 1,000 twin writes.
func TestAnswerDoesNotWaitForTwinWrites(t *testing.T) {
	f, s, st, written := holdTwinWrite(t)
	if _, err := f.hub.Client(t).PatchTwin(t.Context(), "d", "b", []byte(`{"properties":{"desired":{"y":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	applyWithin(t, s, f, "a sync answer waited for a twin write of another twin")
	if tw, err := s.Twin("b"); err != nil || tw.Desired()["y"] != json.Number("1") {
		t.Fatalf("twin b after the answer: %v", err)
	}
	st.released.Do(func() { close(st.release) })
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if tw, err := s.Twin("a"); err != nil || tw.Reported()["x"] != json.Number("1") {
		t.Fatalf("twin a after its write: %v", err)
	}
}

// TestOlderTwinWriteNotOverHubs: a compaction's write of a dirty twin that
// the hub's answer changed meanwhile (a desired patch) lands before the
// answer's, never over it.
func TestOlderTwinWriteNotOverHubs(t *testing.T) {
	f, s, st, written := holdTwinWrite(t)
	if _, err := f.hub.Client(t).PatchTwin(t.Context(), "d", "a", []byte(`{"properties":{"desired":{"y":2}}}`), ""); err != nil {
		t.Fatal(err)
	}
	answer := mustSync(t, f)
	applied := make(chan error, 1)
	go func() { applied <- s.apply(answer) }()
	eventually(t, "the answer's write of twin a to wait for the one held", func() bool {
		s.tw.mu.Lock()
		defer s.tw.mu.Unlock()
		l := s.tw.lock["a"]
		return l != nil && l.refs == 2
	})
	st.released.Do(func() { close(st.release) })
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	// What a restart reads: the record, not the syncer's memory.
	rec, err := f.st.Get("twins/a")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(f.device, f.st, "d")
	if err != nil {
		t.Fatal(err)
	}
	tw, err := s2.Twin("a")
	if err != nil || tw.Desired()["y"] != json.Number("2") || tw.Reported()["x"] != json.Number("1") || tw.ReportedVersion() != 2 {
		t.Fatalf("twin a's record after both writes: %s", rec.Value)
	}
}
