package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/store"
)

type fixture struct {
	hub      *hubtest.Hub
	hubData  string
	device   *hubclient.Client
	st       *store.FileStore
	storeDir string
}

// setup starts a hub with device d (modules a, b) and opens a device store.
func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{hubData: t.TempDir(), storeDir: t.TempDir()}
	f.hub = hubtest.Start(t, hubtest.Options{DataDir: f.hubData})
	c := f.hub.Client(t)
	d, err := c.CreateDevice(t.Context(), hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b"} {
		if _, err := c.CreateModule(t.Context(), hubapi.Module{DeviceID: "d", ModuleID: m}); err != nil {
			t.Fatal(err)
		}
	}
	f.device = f.hub.ClientFor(t, f.hub.DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey))
	f.st = f.openStore(t)
	return f
}

func (f *fixture) openStore(t testing.TB) *store.FileStore {
	t.Helper()
	st, err := store.Open(f.storeDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// run starts a syncer and returns it with a function that stops it.
func run(t *testing.T, f *fixture, st store.Store) (*Syncer, func()) {
	t.Helper()
	s, err := New(f.device, st, "d")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowsTheHub(t *testing.T) {
	f := setup(t)
	s, _ := run(t, f, f.st)
	changes := s.Watch(t.Context())
	eventually(t, "first sync", s.Synced)

	mods, err := s.Modules()
	if err != nil || len(mods) != 4 || mods[0].ModuleID != "$edgeAgent" || mods[1].ModuleID != "$edgeHub" || mods[1].PrimaryKey == "" {
		t.Fatalf("modules: %+v %v", mods, err)
	}
	if _, err := f.hub.Client(t).PatchTwin(t.Context(), "d", "a", []byte(`{"properties":{"desired":{"interval":9}}}`), ""); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; { // the first sync's changes may come first
		select {
		case c := <-changes:
			seen = c.ModuleID == "a" && c.DesiredVersion == 2
		case <-timeout:
			t.Fatal("the desired change was not notified")
		}
	}
	tw, err := s.Twin("a")
	if err != nil || tw.Desired()["interval"] != json.Number("9") {
		t.Fatalf("local twin: %v", err)
	}

	// A module removed at the hub goes from the device too.
	if err := f.hub.Client(t).DeleteModule(t.Context(), "d", "b", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "module b to go", func() bool {
		mods, _ := s.Modules()
		return len(mods) == 3 // $edgeAgent, $edgeHub, a
	})
	if _, err := s.Twin("b"); !errors.Is(err, ErrUnknownModule) {
		t.Fatalf("twin of a removed module: %v", err)
	}
}

// offline starts a syncer, waits for its first sync and stops the hub, so
// that what it queues stays in the outbox; addr is where the hub was.
func offline(t *testing.T) (f *fixture, s *Syncer, stop func(), addr string) {
	t.Helper()
	f = setup(t)
	s, stop = run(t, f, f.st)
	eventually(t, "first sync", s.Synced)
	addr = f.hub.Addr().String()
	f.hub.Stop()
	return f, s, stop, addr
}

func TestOfflineQueueCatchesUp(t *testing.T) {
	f, s, _, addr := offline(t)

	for i := 1; i <= 3; i++ {
		tw, err := s.PatchReported("a", []byte(`{"n":`+string(rune('0'+i))+`,"at":"offline"}`))
		if err != nil {
			t.Fatalf("patch %d offline: %v", i, err)
		}
		if tw.Reported()["n"] != json.Number(string(rune('0'+i))) {
			t.Fatalf("local twin after patch %d: %s", i, tw.ReportedJSON())
		}
	}
	if _, err := s.PatchReported("a", []byte(`{"bad key":1}`)); err == nil {
		t.Fatal("a patch over the limits was queued")
	}
	if _, err := s.PatchReported("nope", []byte(`{"x":1}`)); !errors.Is(err, ErrUnknownModule) {
		t.Fatalf("unknown module: %v", err)
	}
	eventually(t, "offline status", func() bool {
		st, _ := s.Status()
		return !st.Connected
	})
	st, err := s.Status()
	if err != nil || st.Outbox.Patches != 3 || st.Outbox.Bytes == 0 || st.Outbox.Oldest.IsZero() || len(st.Twins) != 4 {
		t.Fatalf("status offline: %+v %v", st, err)
	}
	// The device still serves its twins.
	if tw, err := s.Twin("a"); err != nil || tw.Reported()["at"] != "offline" {
		t.Fatalf("twin offline: %v", err)
	}

	// The hub comes back on the same address: the queue drains, in order.
	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	eventually(t, "the outbox to drain", func() bool {
		st, _ := s.Status()
		return st.Connected && st.Outbox.Patches == 0
	})
	tw, err := h2.Client(t).GetTwin(t.Context(), "d", "a")
	if err != nil || tw.Reported()["n"] != json.Number("3") || tw.Reported()["at"] != "offline" {
		t.Fatalf("hub twin after catching up: %s %v", tw.ReportedJSON(), err)
	}
	if got := tw.ReportedVersion(); got != 4 { // 1 + three patches, each once
		t.Fatalf("hub reported $version %d, want 4", got)
	}
}

// TestCrashBetweenQueueAndTwin checks that a patch queued but not yet in the
// local twin (a crash in between) is in the twin after a restart.
func TestCrashBetweenQueueAndTwin(t *testing.T) {
	f := setup(t)
	s, stop := run(t, f, f.st)
	eventually(t, "first sync", s.Synced)
	f.hub.Stop() // so the queue is not drained
	stop()
	// What PatchReported writes first, without the second write.
	entry := `{"seq":1,"moduleId":"a","patch":{"crash":true},"queued":"2026-01-01T00:00:00Z"}`
	if _, err := f.st.Put(outboxKey(1), []byte(entry), 0); err != nil {
		t.Fatal(err)
	}
	f.st.Close()
	st := f.openStore(t)
	s2, err := New(f.device, st, "d")
	if err != nil {
		t.Fatal(err)
	}
	tw, err := s2.Twin("a")
	if err != nil || tw.Reported()["crash"] != true {
		t.Fatalf("replayed twin: %v %v", tw, err)
	}
	if s2.nextSeq != 2 {
		t.Fatalf("next seq %d after a queued 1", s2.nextSeq)
	}
	if !s2.Synced() {
		t.Fatal("a restarted device forgot it had synced")
	}
}

func TestNotSyncedYet(t *testing.T) {
	f := setup(t)
	s, err := New(f.device, f.st, "d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Modules(); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("modules before a sync: %v", err)
	}
	if _, err := s.PatchReported("a", []byte(`{}`)); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("patch before a sync: %v", err)
	}
}

// TestRestartShowsConnectedAtOnce checks that a device restarting with a
// cursor is connected as soon as the hub answers, not after a long poll.
func TestRestartShowsConnectedAtOnce(t *testing.T) {
	f := setup(t)
	s, stop := run(t, f, f.st)
	eventually(t, "first sync", s.Synced)
	stop()
	s2, _ := run(t, f, f.st)
	// eventually gives up after 15 s, half of PollWait: a first call that
	// long-polls for a change fails here.
	eventually(t, "connected after a restart", func() bool {
		st, _ := s2.Status()
		return st.Connected
	})
}

// hubReported returns module a's reported properties at the hub.
func (f *fixture) hubReported(t *testing.T) string {
	t.Helper()
	tw, err := f.hub.Client(t).GetTwin(t.Context(), "d", "a")
	if err != nil {
		t.Fatal(err)
	}
	return string(tw.ReportedJSON())
}

// TestWipedDataDirReportsAgain: a daemon that starts on an empty data dir
// numbers its reported patches from 1 again; the hub must apply them, not
// take them for retries of the old data dir's.
func TestWipedDataDirReportsAgain(t *testing.T) {
	f := setup(t)
	s, stop := run(t, f, f.st)
	eventually(t, "first sync", s.Synced)
	for i := 1; i <= 3; i++ {
		if _, err := s.PatchReported("a", []byte(`{"n":`+string(rune('0'+i))+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the hub to hold n=3", func() bool { return f.hubReported(t) == `{"n":3}` })
	stop()

	f.storeDir = t.TempDir() // the data dir wiped
	s2, _ := run(t, f, f.openStore(t))
	eventually(t, "first sync of the new data dir", s2.Synced)
	if _, err := s2.PatchReported("a", []byte(`{"n":1,"fresh":true}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new data dir's patch at the hub", func() bool { return f.hubReported(t) == `{"fresh":true,"n":1}` })
	eventually(t, "the outbox to drain", func() bool {
		st, err := s2.Status()
		return err == nil && st.Outbox.Patches == 0
	})
}

// TestFlushSendsTheOutbox: Flush sends what is queued, and says so when the
// hub cannot be reached.
func TestFlushSendsTheOutbox(t *testing.T) {
	f := setup(t)
	s := syncedOnce(t, f)
	if _, err := s.PatchReported("a", []byte(`{"last":"words"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := f.hubReported(t); got != `{"last":"words"}` {
		t.Fatalf("hub has %s after Flush", got)
	}
	f.hub.Stop()
	if _, err := s.PatchReported("a", []byte(`{"unsent":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err == nil {
		t.Fatal("Flush with the hub down reported no error")
	}
	if st, _ := s.Status(); st.Outbox.Patches != 1 {
		t.Fatalf("outbox after a failed flush: %+v", st.Outbox)
	}
}

// syncedOnce returns a syncer (not running) that has applied one full sync.
func syncedOnce(t *testing.T, f *fixture) *Syncer {
	t.Helper()
	s, err := New(f.device, f.st, "d")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.apply(mustSync(t, f)); err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSync(t *testing.T, f *fixture) *hubapi.Sync {
	t.Helper()
	resp, err := f.device.Sync(t.Context(), "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestAckedDuringSyncKept: patches the hub acks while a sync answer is on
// its way (so the answer may lack them, and the outbox no longer has them)
// stay in the local twin.
func TestAckedDuringSyncKept(t *testing.T) {
	f := setup(t)
	s := syncedOnce(t, f)
	before := mustSync(t, f) // the hub's answer, taken before the patch
	if _, err := s.PatchReported("a", []byte(`{"acked":"during the sync"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil { // acked, and gone from the outbox
		t.Fatal(err)
	}
	if err := s.apply(before); err != nil {
		t.Fatal(err)
	}
	tw, err := s.Twin("a")
	if err != nil || tw.Reported()["acked"] != "during the sync" {
		t.Fatalf("local twin after an answer older than the ack: %s %v", tw.ReportedJSON(), err)
	}
}

// TestSyncDoesNotReapplyHeldPatches: patches the hub's answer already holds
// are not laid on the local twin again, so its reported $version is the
// hub's (each one laid on again would bump it).
func TestSyncDoesNotReapplyHeldPatches(t *testing.T) {
	f := setup(t)
	s := syncedOnce(t, f)
	for _, p := range []string{`{"x":1}`, `{"x":2}`} {
		if _, err := s.PatchReported("a", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := mustSync(t, f)
	if after.Reported == nil || after.Reported.Seq != 2 || after.Reported.Session != s.state.Session {
		t.Fatalf("the hub's answer says it holds %+v, want seq 2 of session %s", after.Reported, s.state.Session)
	}
	if err := s.apply(after); err != nil {
		t.Fatal(err)
	}
	local, err := s.Twin("a")
	if err != nil {
		t.Fatal(err)
	}
	hub, err := f.hub.Client(t).GetTwin(t.Context(), "d", "a")
	if err != nil {
		t.Fatal(err)
	}
	if local.ReportedVersion() != hub.ReportedVersion() || string(local.ReportedJSON()) != `{"x":2}` {
		t.Fatalf("local reported %s at $version %d; the hub's at $version %d", local.ReportedJSON(), local.ReportedVersion(), hub.ReportedVersion())
	}
}

// TestFlushOfflineWritesTwins: a daemon stopping with the hub unreachable
// leaves its local twins current in the store, not only in the outbox.
func TestFlushOfflineWritesTwins(t *testing.T) {
	f, s, stop, _ := offline(t)
	stop()
	if _, err := s.PatchReported("a", []byte(`{"last":"offline"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err == nil {
		t.Fatal("Flush with the hub down reported no error")
	}
	rec, err := f.st.Get("twins/a")
	if err != nil || !strings.Contains(string(rec.Value), `"last":"offline"`) {
		t.Fatalf("twin record after Flush offline: %s %v", rec.Value, err)
	}
}

// TestRestartKeepsReportedVersion: patches queued offline are in the local
// twins when the daemon stops, and in the outbox; a restart must not lay
// them on the twins again (each would raise the reported $version once
// more), whether the twins were written before the stop or not. Once the
// hub is back, the device's twin and the hub's agree.
func TestRestartKeepsReportedVersion(t *testing.T) {
	f, s, stop, addr := offline(t)
	stop()
	const n = 5
	for i := 1; i <= n; i++ {
		if _, err := s.PatchReported("a", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PatchReported("b", fmt.Appendf(nil, `{"m":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	for _, m := range []string{"a", "b"} {
		tw, err := s.Twin(m)
		if err != nil {
			t.Fatal(err)
		}
		want[m] = fmt.Sprintf("%s at $version %d", tw.ReportedJSON(), tw.ReportedVersion())
	}
	if want["a"] != fmt.Sprintf(`{"n":%d} at $version %d`, n, n+1) {
		t.Fatalf("twin a before the restart: %s", want["a"])
	}
	// Twin a's record written (as a stopping daemon, or the offline flush
	// loop, writes it); twin b's only in the outbox (a crash before the write).
	s.dmu.Lock()
	delete(s.dirty, "b")
	s.dmu.Unlock()
	if err := s.writeTwins(); err != nil {
		t.Fatal(err)
	}
	for restart := 1; restart <= 3; restart++ {
		f.st.Close()
		f.st = f.openStore(t)
		s2, err := New(f.device, f.st, "d")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"a", "b"} {
			tw, err := s2.Twin(m)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%s at $version %d", tw.ReportedJSON(), tw.ReportedVersion()); got != want[m] {
				t.Fatalf("restart %d: twin %s is %s, was %s before", restart, m, got, want[m])
			}
		}
	}

	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	s3, _ := run(t, f, f.st)
	for _, m := range []string{"a", "b"} {
		agreeWithHub(t, h2, s3, m, n+1)
	}
}

// agreeWithHub waits for module m's local twin to hold the hub's reported
// properties at the hub's reported $version, which is version.
func agreeWithHub(t *testing.T, h *hubtest.Hub, s *Syncer, m string, version int64) {
	t.Helper()
	var diff string
	same := func() bool {
		local, err := s.Twin(m)
		if err != nil {
			t.Fatal(err)
		}
		hub, err := h.Client(t).GetTwin(t.Context(), "d", m)
		if err != nil {
			t.Fatal(err)
		}
		diff = fmt.Sprintf("hub %s $version %d, device %s $version %d", hub.ReportedJSON(), hub.ReportedVersion(), local.ReportedJSON(), local.ReportedVersion())
		return string(hub.ReportedJSON()) == string(local.ReportedJSON()) && hub.ReportedVersion() == local.ReportedVersion() &&
			hub.ReportedVersion() == version
	}
	for deadline := time.Now().Add(15 * time.Second); !same(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("twin %s (want $version %d): %s", m, version, diff)
		}
	}
}
