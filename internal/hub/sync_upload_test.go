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
// after a Get of that record has read it. Each runs once, when set. And
// with lateKey set, the next Put of that key is written (its version
// taken) but not seen by Get, List or Range until late is closed, as a
// file store write whose fsync is slow; the Put returns then.
type hookedStore struct {
	*store.FileStore
	mu      sync.Mutex
	onTxn   func()
	onGet   func()
	lateKey string
	hidden  *store.Record // what lateKey's readers see meanwhile
	written chan struct{} // closed once the late write is written
	late    chan struct{}
}

func (s *hookedStore) Put(key string, value []byte, expect int64) (int64, error) {
	s.mu.Lock()
	hide := key == s.lateKey
	if hide {
		s.lateKey = ""
		old, err := s.FileStore.Get(key)
		if err != nil {
			panic("hookedStore: a late write hides the record before it, and " + key + " has none: " + err.Error())
		}
		s.hidden = &old
	}
	s.mu.Unlock()
	v, err := s.FileStore.Put(key, value, expect)
	if hide {
		close(s.written)
		<-s.late
		s.mu.Lock()
		s.hidden = nil
		s.mu.Unlock()
	}
	return v, err
}

// seen replaces a hidden record in recs by what was there before.
func (s *hookedStore) seen(recs []store.Record) []store.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hidden == nil {
		return recs
	}
	for i := range recs {
		if recs[i].Key == s.hidden.Key {
			recs[i] = *s.hidden
		}
	}
	return recs
}

func (s *hookedStore) List(prefix string) ([]store.Record, error) {
	recs, err := s.FileStore.List(prefix)
	return s.seen(recs), err
}

func (s *hookedStore) Range(prefix, after string, limit int) ([]store.Record, error) {
	recs, err := s.FileStore.Range(prefix, after, limit)
	return s.seen(recs), err
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
	if err == nil {
		rec = s.seen([]store.Record{rec})[0]
	}
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

// TestSyncLateWriteNotUnderCursor: a write becoming visible after a later
// one (the file store takes a write's version before its fsync, and shows
// it after) must not fall under a cursor the hub gave meanwhile: a desired
// change to a leaf device that never reports was then never sent to its
// parent (only a new write of the leaf's twin, its own upload, brought it).
func TestSyncLateWriteNotUnderCursor(t *testing.T) {
	h, st := hookedHub(t)
	c := h.Client(t)
	e, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "e", Capabilities: &hubapi.Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatal(err)
	}
	dc := h.ClientFor(t, h.DeviceConnectionString("e", "", e.Authentication.SymmetricKey.PrimaryKey))
	leaf(t, h, "x", "e")
	leaf(t, h, "y", "e")
	if _, err := c.PatchTwin(ctx, "x", "", []byte(`{"properties":{"desired":{"late":0}}}`), ""); err != nil {
		t.Fatal(err) // so that x has a twin record, which the late write hides
	}
	first, err := dc.Sync(ctx, "e", "", 0)
	if err != nil {
		t.Fatal(err)
	}

	st.mu.Lock()
	st.lateKey, st.written, st.late = "twins/x", make(chan struct{}), make(chan struct{})
	st.mu.Unlock()
	var once sync.Once
	release := func() { once.Do(func() { close(st.late) }) }
	t.Cleanup(release)
	patched := make(chan error, 1)
	go func() {
		_, err := c.PatchTwin(ctx, "x", "", []byte(`{"properties":{"desired":{"late":1}}}`), "")
		patched <- err
	}()
	select {
	case <-st.written:
	case err := <-patched:
		t.Fatalf("the desired patch of x was not written through Put (%v): the test needs another hook", err)
	}
	if _, err := c.PatchTwin(ctx, "y", "", []byte(`{"properties":{"desired":{"early":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	during, err := dc.Sync(ctx, "e", first.Cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tw := childTwinOf(t, during, "y"); tw == nil || tw.Desired()["early"] != json.Number("1") {
		t.Fatalf("answer during x's write lacks y's change: %v", tw)
	}
	if tw := childTwinOf(t, during, "x"); tw != nil && tw.Desired()["late"] != json.Number("0") {
		t.Fatalf("answer during x's write has it: %s", tw.DesiredJSON())
	}
	release()
	if err := <-patched; err != nil {
		t.Fatal(err)
	}
	after, err := dc.Sync(ctx, "e", during.Cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tw := childTwinOf(t, after, "x"); tw == nil || tw.Desired()["late"] != json.Number("1") {
		t.Fatalf("x's desired change, visible after the cursor %s was given, is not in the next answer (%d child twins)", during.Cursor, len(after.ChildTwins))
	}
}
