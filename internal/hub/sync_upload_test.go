package hub_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// hookedStore is the hub's file store with hooks into device d's uploads:
// onTxn runs before a Txn that writes d's sync record (an upload), onGet
// after a Get of that record has read it. Each runs once, when set.
type hookedStore struct {
	*store.FileStore
	mu    sync.Mutex
	onTxn func()
	onGet func()
}

const syncRecordKey = "devicesync/d"

func (s *hookedStore) take(f *func()) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := *f
	*f = nil
	return h
}

func (s *hookedStore) set(f *func(), h func()) {
	s.mu.Lock()
	*f = h
	s.mu.Unlock()
}

func (s *hookedStore) Txn(ops ...store.Op) (int64, error) {
	for _, op := range ops {
		if op.Key == syncRecordKey {
			if h := s.take(&s.onTxn); h != nil {
				h()
			}
		}
	}
	return s.FileStore.Txn(ops...)
}

func (s *hookedStore) Get(key string) (store.Record, error) {
	rec, err := s.FileStore.Get(key)
	if key == syncRecordKey {
		if h := s.take(&s.onGet); h != nil {
			h()
		}
	}
	return rec, err
}

func hookedHub(t *testing.T) (*hubtest.Hub, *hookedStore) {
	t.Helper()
	hubtest.FileStoreOnly(t)
	fs, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &hookedStore{FileStore: fs}
	return hubtest.Start(t, hubtest.Options{Store: st}), st
}

// reportedSeq is the seq the answer says its twins hold (0: none).
func reportedSeq(s *hubapi.Sync) int64 {
	if s.Reported == nil {
		return 0
	}
	return s.Reported.Seq
}

// TestSyncDoesNotWaitForUpload: while an upload is being written (held here
// before its Txn, as a 1,000-twin upload is for seconds), a sync answers,
// with a desired change made meanwhile, and with the twins and the seq
// from before the upload.
func TestSyncDoesNotWaitForUpload(t *testing.T) {
	h, st := hookedHub(t)
	dc := device(t, h, "d", "m")
	upload(t, dc, "s", 1, "m", `{"n":1}`)
	first, err := dc.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}

	writing, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	st.set(&st.onTxn, func() { close(writing); <-release })
	uploaded := make(chan error, 1)
	go func() {
		_, err := dc.UploadReported(ctx, "d", hubapi.ReportedBatch{Session: "s",
			Patches: []hubapi.ReportedPatch{{Seq: 2, ModuleID: "m", Patch: json.RawMessage(`{"n":2}`)}}})
		uploaded <- err
	}()
	<-writing
	if _, err := h.Client(t).PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"x":1}}}`), ""); err != nil {
		t.Fatal(err)
	}

	answered := make(chan *hubapi.Sync, 1)
	failed := make(chan error, 1)
	go func() {
		s, err := dc.Sync(ctx, "d", first.Cursor, 0)
		if err != nil {
			failed <- err
			return
		}
		answered <- s
	}()
	var s *hubapi.Sync
	select {
	case s = <-answered:
	case err := <-failed:
		t.Fatal(err)
	case err := <-uploaded:
		t.Fatalf("the upload ended (%v) while held", err)
	case <-time.After(30 * time.Second): // a watchdog, not a measure: the answer needs nothing of the upload
		t.Fatal("a sync waited for an upload in progress")
	}
	tw := twinOf(t, s, "m")
	if tw == nil || tw.Desired()["x"] != json.Number("1") || tw.Reported()["n"] != json.Number("1") || reportedSeq(s) != 1 {
		t.Fatalf("answer during the upload: twin %v, reported seq %d; want desired x=1, reported n=1 at seq 1", tw, reportedSeq(s))
	}

	once.Do(func() { close(release) })
	if err := <-uploaded; err != nil {
		t.Fatal(err)
	}
	after, err := dc.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if tw := twinOf(t, after, "m"); tw.Reported()["n"] != json.Number("2") || tw.Desired()["x"] != json.Number("1") || reportedSeq(after) != 2 {
		t.Fatalf("answer after the upload: reported %s desired %s at seq %d", tw.ReportedJSON(), tw.DesiredJSON(), reportedSeq(after))
	}
}

// TestSyncSeqMatchesTwinsDuringUpload: an upload that lands while a sync
// reads (here between its read of the sync record and of the twins) does
// not give the answer twins holding patches its seq says they do not (the
// device would lay them on again).
func TestSyncSeqMatchesTwinsDuringUpload(t *testing.T) {
	h, st := hookedHub(t)
	dc := device(t, h, "d", "m")
	upload(t, dc, "s", 1, "m", `{"n":1}`)
	var uerr error // the hook runs on the hub's goroutine: no t.Fatal there
	st.set(&st.onGet, func() {
		_, uerr = dc.UploadReported(ctx, "d", hubapi.ReportedBatch{Session: "s",
			Patches: []hubapi.ReportedPatch{{Seq: 2, ModuleID: "m", Patch: json.RawMessage(`{"n":2}`)}}})
	})
	c, cancel := context.WithTimeout(ctx, 30*time.Second) // a watchdog: under the upload lock, this deadlocks
	defer cancel()
	s, err := dc.Sync(c, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.take(&st.onGet) != nil {
		t.Fatal("the sync did not read the sync record")
	}
	if uerr != nil {
		t.Fatalf("upload during the sync: %v", uerr)
	}
	tw := twinOf(t, s, "m")
	if got, want := reportedSeq(s), map[string]int64{"1": 1, "2": 2}[string(tw.Reported()["n"].(json.Number))]; got != want {
		t.Fatalf("answer has reported %s with seq %d, want seq %d", tw.ReportedJSON(), got, want)
	}
}
