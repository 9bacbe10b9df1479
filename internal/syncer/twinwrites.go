package syncer

import (
	"math"
	"sync"

	"github.com/outpost-edge/outpost/internal/store"
)

// twinWrites puts the writes of each twin record in the order of what they
// hold, without one lock over all of them: a sync answer's twins (the
// hub's, newest) no longer wait for a compaction writing up to 1,000 dirty
// twins (hundreds of ms, in the daemon, for every desired change that came
// meanwhile), and a compaction's write of an older copy of a twin never
// lands over the hub's newer one.
//
// Each record write or removal holds its twin's lock, and notes the outbox
// seq the record now holds (math.MaxInt64 once removed): a dirty twin's
// write is left out when the record holds its seq already (then the record
// holds all its patches: the hub's twin with the queued patches on top, or
// the same copy). A sync answer's writes always go: the caller holds s.mu,
// so no commit is newer than the twin it writes.
type twinWrites struct {
	mu   sync.Mutex
	held map[string]int64     // by ref: the seq the record holds
	lock map[string]*twinLock // by ref, while held or waited for
}

type twinLock struct {
	sync.Mutex
	refs int // callers holding or waiting; guarded by twinWrites.mu
}

func (w *twinWrites) acquire(ref string) func() {
	w.mu.Lock()
	if w.lock == nil {
		w.lock, w.held = map[string]*twinLock{}, map[string]int64{}
	}
	l := w.lock[ref]
	if l == nil {
		l = &twinLock{}
		w.lock[ref] = l
	}
	l.refs++
	w.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		w.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(w.lock, ref)
		}
		w.mu.Unlock()
	}
}

// put writes ref's record b, which holds its twin's queued patches up to
// seq, unless newest is false and the record holds seq already; it reports
// whether it wrote.
func (w *twinWrites) put(st store.Store, ref string, b []byte, seq int64, newest bool) (bool, error) {
	defer w.acquire(ref)()
	w.mu.Lock()
	last, ok := w.held[ref]
	w.mu.Unlock()
	if !newest && ok && last >= seq {
		return false, nil
	}
	if _, err := st.Put(twinKey(ref), b, store.Any); err != nil {
		return false, err
	}
	w.mu.Lock()
	w.held[ref] = seq
	w.mu.Unlock()
	return true, nil
}

// remove deletes ref's record, if there is one; a dirty copy's write after
// it is left out.
func (w *twinWrites) remove(st store.Store, ref string) error {
	defer w.acquire(ref)()
	if err := deleteIfThere(st, twinKey(ref)); err != nil {
		return err
	}
	w.mu.Lock()
	w.held[ref] = math.MaxInt64
	w.mu.Unlock()
	return nil
}
