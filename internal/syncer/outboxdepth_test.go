package syncer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
)

// decodedByRef is what Outbox reported before it kept the depth in memory
// (every outbox record decoded, the patches above acked counted), with the
// patches counted by twin too. The tests hold the in-memory depth to it.
func decodedByRef(t *testing.T, st store.Store, acked int64) (OutboxStatus, map[string]int) {
	t.Helper()
	var ob OutboxStatus
	byRef := map[string]int{}
	recs, err := st.List("outbox/")
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		r, err := decodeOutbox(rec)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range r.Patches {
			if p.Seq > acked {
				ob.Patches++
				ob.Bytes += len(p.Patch)
				byRef[patchRef(p)]++
				if ob.Oldest.IsZero() {
					ob.Oldest = r.Queued
				}
			}
		}
	}
	return ob, byRef
}

// sameAsStore checks that s's depth matches a full decode of st, with s.mu
// held: commits and acks change the outbox under it, so the check holds a
// running syncer still for a moment.
func sameAsStore(t *testing.T, what string, s *Syncer, st store.Store) OutboxStatus {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.depth.status()
	full, byRef := decodedByRef(t, st, s.state.Acked)
	if got.Patches != full.Patches || got.Bytes != full.Bytes || !got.Oldest.Equal(full.Oldest) {
		t.Fatalf("%s: Outbox says %+v, a full decode of the store %+v", what, got, full)
	}
	if q := s.depth.queuedByRef(); fmt.Sprint(q) != fmt.Sprint(byRef) {
		t.Fatalf("%s: the depth by twin says %v, a full decode of the store %v", what, q, byRef)
	}
	return got
}

// checkDepth checks that s's Outbox matches a full decode of st and holds
// want patches queued at oldest (zero: none); it returns the Outbox.
func checkDepth(t *testing.T, what string, s *Syncer, st store.Store, want int, oldest time.Time) OutboxStatus {
	t.Helper()
	sameAsStore(t, what, s, st)
	got, err := s.Outbox()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got.Patches != want || !got.Oldest.Equal(oldest) {
		t.Fatalf("%s: outbox %+v, want %d patches, the oldest queued at %v", what, got, want, oldest)
	}
	if (got.Bytes == 0) != (want == 0) {
		t.Fatalf("%s: outbox %+v: %d bytes for %d patches", what, got, got.Bytes, want)
	}
	return got
}

// TestOutboxDepth follows Outbox through commits, a partial ack (one that
// ends inside a record of many patches), a crash with that record still
// in the store, a reopened data dir, and a full ack: at each step it
// matches a full decode of the store and the patches expected.
func TestOutboxDepth(t *testing.T) {
	f := setup(t)
	var cmu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := func() time.Time { // the next commit's time
		cmu.Lock()
		defer cmu.Unlock()
		clock = clock.Add(time.Minute)
		return clock
	}
	now := func() time.Time { cmu.Lock(); defer cmu.Unlock(); return clock }
	s, err := New(f.device, f.st, "d", WithClock(now)) // not run: the test flushes
	if err != nil {
		t.Fatal(err)
	}
	checkDepth(t, "new data dir", s, f.st, 0, time.Time{})
	resp, err := f.device.Sync(t.Context(), "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.apply(resp); err != nil {
		t.Fatal(err)
	}

	t1 := tick()
	for i := range 3 { // seqs 1-3, a record each
		if _, err := s.PatchReported("a", fmt.Appendf(nil, `{"single":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	checkDepth(t, "3 commits", s, f.st, 3, t1)
	t4 := tick()
	calls := make([]*call, 700) // seqs 4-703, one record: a group commit
	for i := range calls {
		calls[i] = &call{ref: "b", patch: fmt.Appendf(nil, `{"group":%d,"pad":%q}`, i, strings.Repeat("x", i%50))}
	}
	s.commit(calls)
	for _, c := range calls {
		if c.err != nil {
			t.Fatal(c.err)
		}
	}
	tick()
	for i := range 2 { // seqs 704, 705
		if _, err := s.PatchReported("a", fmt.Appendf(nil, `{"after":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if recs, _ := f.st.List("outbox/"); len(recs) != 6 {
		t.Fatalf("%d outbox records, want 6", len(recs))
	}
	checkDepth(t, "a group commit", s, f.st, 705, t1)

	// One upload: 500 patches, the first 3 records and 497 of the group's.
	defer func(n int) { batchSize = n }(batchSize)
	batchSize = 500
	more, err := s.flush(t.Context())
	if err != nil || !more {
		t.Fatalf("flush: more %v, %v", more, err)
	}
	if s.state.Acked != int64(batchSize) {
		t.Fatalf("acked %d, want %d", s.state.Acked, batchSize)
	}
	if _, err := f.st.Get(outboxKey(4)); err != nil {
		t.Fatalf("the group's record, partly acked: %v", err)
	}
	before := checkDepth(t, "a partial ack", s, f.st, 205, t4)

	// A crash: the syncer goes without a word; the data dir is reopened.
	f.st.Close()
	st := f.openStore(t)
	s2, err := New(f.device, st, "d", WithClock(now))
	if err != nil {
		t.Fatal(err)
	}
	if after := checkDepth(t, "reopened after a crash", s2, st, 205, t4); after != before {
		t.Fatalf("outbox %+v before the crash, %+v after", before, after)
	}
	tick()
	if _, err := s2.PatchReported("b", []byte(`{"reopened":true}`)); err != nil {
		t.Fatal(err)
	}
	checkDepth(t, "a commit after the crash", s2, st, 206, t4)

	if err := s2.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkDepth(t, "all acked", s2, st, 0, time.Time{})
	if recs, _ := st.List("outbox/"); len(recs) != 0 {
		t.Fatalf("%d outbox records left after all acked", len(recs))
	}
}

const depthCrashEnv = "OUTPOST_SYNCER_TEST_DEPTH_CRASH" // see crashChild: run TestOutboxDepthCrashChild

// TestOutboxDepthCrashChild is the process TestOutboxDepthAfterKill kills: a
// running syncer, online, with 4 writers reporting as fast as they are
// answered, so that commits and acks interleave (see reportUntilKilled).
func TestOutboxDepthCrashChild(t *testing.T) {
	s, round, fail := crashChild(t, depthCrashEnv, "TestOutboxDepthAfterKill")
	go s.Run(context.Background())
	deadline := time.Now().Add(60 * time.Second)
	for !s.Synced() {
		if time.Now().After(deadline) {
			fail("no sync within 60 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	reportUntilKilled(s, 4, round, fail)
}

// TestOutboxDepthAfterKill kills a syncer (a child process) at a random
// moment while it commits and the hub acks, several times over one data
// dir: each time the depth a new syncer starts with matches a full decode.
// Then, with the syncer running and writers reporting, the depth matches
// the store at every look, and ends at zero once the outbox drains.
func TestOutboxDepthAfterKill(t *testing.T) {
	f := setup(t)
	f.st.Close()
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	total := 0
	for round := range 4 {
		n := killChild(t, "TestOutboxDepthCrashChild", crashSpec(depthCrashEnv, f, round), 50+rnd.IntN(1000), 0, func(string, int) {})
		total += n

		st, s := f.restart(t)
		ob := sameAsStore(t, fmt.Sprintf("round %d, killed after %d patches", round, n), s, st)
		t.Logf("round %d: killed after %d patches; acked up to %d; outbox %+v", round, n, s.state.Acked, ob)
		st.Close()
	}
	if total == 0 {
		t.Fatal("the children queued nothing before they were killed")
	}

	st := f.openStore(t)
	s, _ := run(t, f, st)
	eventually(t, "a sync", s.Synced)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for j := range 200 {
				if _, err := s.PatchReported(writerModule(g), fmt.Appendf(nil, `{"live%d":%d}`, g, j)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	looks := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; looks++ {
		select {
		case <-done:
			running = false
		default:
		}
		sameAsStore(t, fmt.Sprintf("look %d while running", looks), s, st)
	}
	eventually(t, "the outbox to drain", func() bool {
		ob, _ := s.Outbox()
		return ob.Patches == 0
	})
	checkDepth(t, "drained", s, st, 0, time.Time{})
}
