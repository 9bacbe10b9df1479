// Package syncer keeps a device in step with its hub, and lets it run
// without one. It holds the device's modules (identities with keys) and
// module twins in the daemon's store, follows the hub's sync long poll, and
// queues the modules' reported patches in a durable outbox that it sends in
// order whenever the hub is reachable.
//
// Store layout (the daemon's own store):
//
//	sync/state              cursor, last sync, outbox session, last acked outbox seq
//	identities/{moduleId}   hubapi.SyncModule (with keys)
//	twins/{moduleId}        the module twin as the device knows it
//	outbox/{seq:020d}       reported patches waiting for the hub, from seq on:
//	                        those of one group commit, in order
//	children/{deviceId}     hubapi.SyncChild: a child device (leaf devices
//	                        whose parent this device is), with its keys
//	childtwins/{deviceId}   the child's device twin as the device knows it
//
// Children's twins take reported patches through the same outbox as the
// modules' (a patch names the child's DeviceID instead of a ModuleID).
// Inside the syncer a twin is named by a ref: a module's id, or "/" and a
// child's device id ('/' is in no id).
//
// Reported patches go to the outbox first; the local twins they change are
// written later, at the latest before the patches leave the outbox, so a
// crash in between loses nothing: at start the patches still in the outbox
// are applied to the local twins again, those after the twin's record
// only. A twin record says which those are: it is the twin's JSON with one
// more member, "outboxSeq", the outbox seq up to which the twin's queued
// patches are in it (one record, so one atomic write: a kill -9 leaves the
// twin and the seq it holds together). Laid on again, a patch would give
// the same properties but raise the reported $version once more. The hub
// wins for everything else: a twin from the hub replaces the local one,
// with the patches still queued applied on top.
package syncer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// PollWait is how long one sync long poll waits for a change.
const PollWait = 30 * time.Second

// batchSize is the most reported patches sent in one upload, and
// maxBatchBytes about the most bytes of them (the hub reads bodies of up to
// 256 KiB): one patch over it goes alone. The bytes bound most batches: the
// hub writes each twin a batch changes once, so the more patches a batch
// holds per twin the fewer writes each patch costs (1,000 leaf devices
// reporting small patches: up to about 2,500 patches in 1,000 writes).
const maxBatchBytes = 192 << 10

var batchSize = 4096 // a var for tests that cut a batch by count

// ErrNotSynced means the device has never synced with its hub, so it knows
// no modules yet.
var ErrNotSynced = errors.New("the device has not synced with its hub yet")

// ErrUnknownModule means the device has no such module.
var ErrUnknownModule = errors.New("no such module on this device")

// ErrUnknownChild means the device has no such child device.
var ErrUnknownChild = errors.New("no such child device of this device")

// childRef is the ref of a child's device twin; see the package doc.
func childRef(deviceID string) string { return "/" + deviceID }

// patchRef is the ref of the twin a queued patch is for.
func patchRef(p hubapi.ReportedPatch) string {
	if p.DeviceID != "" {
		return childRef(p.DeviceID)
	}
	return p.ModuleID
}

// twinKey is the store key of the twin ref names.
func twinKey(ref string) string {
	if id, ok := strings.CutPrefix(ref, "/"); ok {
		return "childtwins/" + id
	}
	return "twins/" + ref
}

// Syncer keeps one device's modules and twins in step with its hub.
type Syncer struct {
	hub      *hubclient.Client
	st       store.Store
	deviceID string
	log      *slog.Logger
	now      func() time.Time

	mu        sync.Mutex // guards what follows, and orders local twin writes
	state     state
	connected bool
	since     time.Time // when connected last changed
	lastErr   linkError // the last reason the hub was unreachable; see Status.LastError
	nextSeq   int64
	depth     outboxDepth // what Outbox reports; see outboxDepth
	subs      map[chan Change]struct{}
	statusC   chan struct{} // closed when the link or the outbox changes; see StatusChanged

	// recent holds the patches the hub acked since the current sync request
	// began (at most maxRecent), for apply.
	recent []hubapi.ReportedPatch

	kick    chan struct{} // the outbox has work
	flushMu sync.Mutex    // one upload at a time; guards what follows
	// scanned is the outbox key up to which every record's patches are
	// acked (an upload starts reading after it), and done the keys of
	// those records, removed at the next compaction (see flush), at
	// compacted.
	scanned   string
	done      []string
	compacted time.Time

	qmu        sync.Mutex // guards what follows: PatchReported's group commit
	queue      []*call    // waiting for the next commit
	committing bool       // a caller is committing

	// Local twins changed by reported patches are written to the store
	// only before their patches leave the outbox (and every few seconds
	// offline), each once however many patches changed it meanwhile; until
	// then they are read from dirty. A crash before the write loses
	// nothing: New applies the outbox after the record's seq again.
	twMu  sync.Mutex // held while writing twins/ records, so they go in order
	dmu   sync.Mutex // guards dirty
	dirty map[string]dirtyTwin

	methods atomic.Pointer[MethodHandler] // answers direct method calls; see HandleMethods
}

type state struct {
	Cursor   string    `json:"cursor"`
	LastSync time.Time `json:"lastSync"`
	// Session names this outbox's numbering at the hub. It is made with the
	// store, so a daemon on a new data dir, numbering from 1 again, is a new
	// session there and none of its patches is taken for a retry.
	Session string `json:"session"`
	Acked   int64  `json:"acked"` // every outbox seq ≤ Acked is held by the hub
	// Hub is each module twin's versions as the hub last sent them; see
	// hubSeen.
	Hub map[string]hubSeen `json:"hub,omitempty"`
}

// Change tells watchers what the hub changed. A change of the children
// sets Children or DeviceID; ModuleID is then "".
type Change struct {
	// ModuleID is the module whose twin changed, or "" when the set of
	// modules (or their identities) changed.
	ModuleID string
	// DeviceID is the child device whose device twin changed.
	DeviceID string
	// Children is set when the set of children (or their identities: keys,
	// status) changed.
	Children       bool
	DesiredVersion int64
	// Reported is set when the hub's reported properties differ from what
	// the device had (the hub lost some, or a twin was created anew), and
	// the desired version did not change.
	Reported bool
}

// Option configures a Syncer.
type Option func(*Syncer)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Syncer) { s.log = l } }

// WithClock sets the clock.
func WithClock(now func() time.Time) Option { return func(s *Syncer) { s.now = now } }

// New returns a syncer for deviceID over st, talking to the hub through hub
// (a client with the device's own connection string). It re-applies
// patches left in the outbox by a crash to the local twins.
func New(hub *hubclient.Client, st store.Store, deviceID string, opts ...Option) (*Syncer, error) {
	s := &Syncer{
		hub: hub, st: st, deviceID: deviceID,
		log:   slog.New(slog.DiscardHandler),
		now:   time.Now,
		subs:  map[chan Change]struct{}{},
		kick:  make(chan struct{}, 1),
		dirty: map[string]dirtyTwin{},
	}
	s.statusC = make(chan struct{})
	for _, o := range opts {
		o(s)
	}
	s.since = s.now()
	if migrated, err := migrateLegacyNames(st); err != nil {
		return nil, err
	} else if migrated {
		s.log.Info("sync: renamed the agent's module $agent to $edgeAgent in the device's cache")
	}
	if rec, err := st.Get("sync/state"); err == nil {
		if err := json.Unmarshal(rec.Value, &s.state); err != nil {
			return nil, fmt.Errorf("sync state: %w", err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if s.state.Session == "" {
		s.state.Session = newSession()
		if err := s.saveState(); err != nil {
			return nil, fmt.Errorf("sync state: %w", err)
		}
	}
	pending, depth, err := readOutbox(st, 0, s.state.Acked)
	if err != nil {
		return nil, err
	}
	s.depth = depth
	s.nextSeq = s.state.Acked + 1
	// The patches after each twin record's seq, in memory, then each twin
	// written once.
	held := map[string]int64{} // by ref: the seq its record holds
	for _, p := range pending {
		s.nextSeq = max(s.nextSeq, p.Seq+1)
		ref := patchRef(p)
		seq, ok := held[ref]
		if !ok {
			seq, err = s.recordSeq(ref)
			if errors.Is(err, ErrUnknownModule) || errors.Is(err, ErrUnknownChild) {
				seq = 1<<63 - 1 // a twin the device no longer has
			} else if err != nil {
				return nil, fmt.Errorf("replay the outbox: %w", err)
			}
			held[ref] = seq
		}
		if p.Seq <= seq {
			continue
		}
		t, err := s.localTwin(ref)
		if err == nil {
			_, err = t.PatchReported(p.Patch, s.now().UTC())
		}
		if err != nil {
			return nil, fmt.Errorf("replay outbox seq %d: %w", p.Seq, err)
		}
		s.dirty[ref] = dirtyTwin{t, p.Seq}
	}
	if err := s.writeTwins(); err != nil {
		return nil, fmt.Errorf("replay the outbox: %w", err)
	}
	return s, nil
}

// Run follows the hub until ctx is done: a sync, then long polls, and the
// outbox sent whenever the hub answers. While the hub is unreachable it
// retries with back-off (up to 1 s doubling to up to 30 s, hubclient.Jitter)
// and the device runs on what it has.
func (s *Syncer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.flushLoop(ctx) })
	defer wg.Wait()
	backoff := time.Second
	for ctx.Err() == nil {
		s.mu.Lock()
		cursor, connected := s.state.Cursor, s.connected
		s.mu.Unlock()
		// Long-poll only once the hub has answered: the first call after a
		// start or an outage returns at once, so the link shows connected
		// (and the outbox drains) without waiting for a change.
		wait := PollWait
		if cursor == "" || !connected {
			wait = 0
		}
		s.mu.Lock()
		s.recent = s.recent[:0] // what the hub acks from now on may miss from its answer
		s.mu.Unlock()
		resp, err := s.hub.Sync(ctx, s.deviceID, cursor, wait)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.setConnected(false, err)
			// Spread over the whole back-off: devices cut at once (a hub
			// restart) come back over a second, not within a quarter of one.
			sleep(ctx, hubclient.Jitter(backoff))
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		s.setConnected(true, nil)
		if len(resp.Methods) > 0 {
			s.dispatchMethods(ctx, resp.Methods)
		}
		if err := s.apply(resp); err != nil {
			s.log.Error("sync: apply the hub's state", "err", err)
			sleep(ctx, time.Second)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (s *Syncer) setConnected(ok bool, err error) {
	s.mu.Lock()
	changed := s.connected != ok
	if changed {
		s.connected, s.since = ok, s.now()
	}
	if s.noteErrorLocked(ok, err) || changed {
		s.statusChangedLocked()
	}
	s.mu.Unlock()
	if changed && ok {
		s.log.Info("sync: connected to the hub", "hub", s.hub.HostName())
		s.poke()
	} else if changed {
		s.log.Warn("sync: hub unreachable, running offline", "hub", s.hub.HostName(), "err", err)
	}
}

func (s *Syncer) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// apply stores what the hub sent: identities (removing modules the hub no
// longer has), twins (the hub's, with still-queued patches on top), and the
// new cursor, then tells watchers.
func (s *Syncer) apply(resp *hubapi.Sync) error {
	// The hub's twins may hold patches of an upload under way, which must
	// not be laid on them again (each would bump $version): the answer's
	// Reported says which (see held below). From a hub that does not say,
	// not during an upload, so that Acked says it. (Waiting for the upload
	// delayed desired changes by a whole upload: seconds with 1,000 leaf
	// devices reporting.)
	if r := resp.Reported; r == nil || r.Session != s.state.Session { // Session is set once, in New
		s.flushMu.Lock()
		defer s.flushMu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.twMu.Lock() // the hub's twins go after the local ones being written
	defer s.twMu.Unlock()
	var changes []Change
	modulesChanged := false

	have, err := s.st.List("identities/")
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, m := range resp.Modules {
		keep[m.ModuleID] = true
	}
	for _, rec := range have {
		id := strings.TrimPrefix(rec.Key, "identities/")
		if keep[id] {
			continue
		}
		modulesChanged = true
		if err := deleteIfThere(s.st, rec.Key); err != nil {
			return err
		}
		if err := deleteIfThere(s.st, "twins/"+id); err != nil {
			return err
		}
		s.clean(id, nil)
	}
	byID := map[string]store.Record{}
	for _, rec := range have {
		byID[strings.TrimPrefix(rec.Key, "identities/")] = rec
	}
	for _, m := range resp.Modules {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if old, ok := byID[m.ModuleID]; ok && string(old.Value) == string(b) {
			continue
		}
		modulesChanged = true
		if _, err := s.st.Put("identities/"+m.ModuleID, b, store.Any); err != nil {
			return err
		}
	}

	kids, childrenChanged, err := s.applyChildren(resp.Children)
	if err != nil {
		return err
	}

	queued, err := s.pending(s.state.Acked)
	if err != nil {
		return err
	}
	// Patches the hub acked while this answer was on its way may be missing
	// from its twins, and are no longer in the outbox: lay them on too,
	// before those still queued; but none the hub says its twins hold
	// (laid on again, each would bump the reported $version once more).
	held := int64(0)
	if r := resp.Reported; r != nil && r.Session == s.state.Session {
		held = r.Seq
	}
	// By twin: an answer with many twins (1,000 children) over a deep outbox
	// then costs one pass over the outbox, not one per twin.
	now := s.now().UTC()
	s.pruneHub(keep)
	pending := map[string][]hubapi.ReportedPatch{}
	for _, p := range append(append([]hubapi.ReportedPatch(nil), s.recent...), queued...) {
		if p.Seq > held {
			pending[patchRef(p)] = append(pending[patchRef(p)], p)
		}
	}
	// The twins to write, written together (their fsyncs shared) before
	// the cursor that says the device has them.
	writes := map[string][]byte{}
	for _, raw := range resp.Twins {
		t := new(twin.Twin)
		if err := t.UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("twin from the hub: %w", err)
		}
		if !keep[t.ModuleID] {
			continue
		}
		s.noteHub(t, now) // before the queued patches are laid on
		c, b, err := s.settle(t.ModuleID, t, pending[t.ModuleID], s.nextSeq-1)
		if err != nil {
			return err
		}
		if b != nil {
			writes[t.ModuleID] = b
		}
		if c != nil {
			c.ModuleID = t.ModuleID
			changes = append(changes, *c)
		}
	}

	for _, raw := range resp.ChildTwins {
		t := new(twin.Twin)
		if err := t.UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("child twin from the hub: %w", err)
		}
		if t.ModuleID != "" || !kids[t.DeviceID] {
			continue
		}
		ref := childRef(t.DeviceID)
		c, b, err := s.settle(ref, t, pending[ref], s.nextSeq-1)
		if err != nil {
			return err
		}
		if b != nil {
			writes[ref] = b
		}
		if c != nil {
			c.DeviceID = t.DeviceID
			changes = append(changes, *c)
		}
	}
	if err := s.putTwins(writes); err != nil {
		return err
	}

	s.state.Cursor, s.state.LastSync = resp.Cursor, now
	s.statusChangedLocked()
	if err := s.saveState(); err != nil {
		return err
	}
	if childrenChanged {
		changes = append([]Change{{Children: true}}, changes...)
	}
	if modulesChanged {
		changes = append([]Change{{}}, changes...)
	}
	for _, c := range changes {
		for ch := range s.subs {
			select {
			case ch <- c:
			default: // a watcher that is behind re-reads the state anyway
			}
		}
	}
	return nil
}

// settle lays the patches still queued for ref (pending) on t, its twin
// from the hub, and returns what to tell watchers (nil: nothing changed
// for them) and the record to write: nil when the device has this twin
// already (the hub's answer to the device's own reported patches, which
// with 1,000 leaf devices is most of every answer; only the $lastUpdated
// times the hub gave them differ). The record holds every queued patch of
// ref up to seq (see twinRecord). The caller holds s.mu and s.twMu.
func (s *Syncer) settle(ref string, t *twin.Twin, pending []hubapi.ReportedPatch, seq int64) (*Change, []byte, error) {
	for _, p := range pending {
		if _, err := t.PatchReported(p.Patch, s.now().UTC()); err != nil {
			s.log.Warn("sync: a queued reported patch no longer applies", "twin", ref, "seq", p.Seq, "err", err)
		}
	}
	old, err := s.localTwin(ref)
	if err == nil && sameTwin(old, t) {
		return nil, nil, nil
	}
	b, err := twinRecord(t, seq)
	if err != nil {
		return nil, nil, err
	}
	oldDesired, oldReported := int64(0), ""
	if old != nil {
		oldDesired, oldReported = old.DesiredVersion(), reportedJSON(old)
	}
	switch {
	case t.DesiredVersion() != oldDesired:
		return &Change{DesiredVersion: t.DesiredVersion()}, b, nil
	case reportedJSON(t) != oldReported:
		return &Change{DesiredVersion: t.DesiredVersion(), Reported: true}, b, nil
	}
	return nil, b, nil
}

// sameTwin reports whether a and b hold the same twin: identity, status,
// tags, desired and reported properties and their versions, but not the
// metadata's times.
func sameTwin(a, b *twin.Twin) bool {
	return a.DeviceID == b.DeviceID && a.ModuleID == b.ModuleID && a.Status == b.Status &&
		a.DesiredVersion() == b.DesiredVersion() && a.ReportedVersion() == b.ReportedVersion() &&
		string(a.DesiredJSON()) == string(b.DesiredJSON()) &&
		string(a.ReportedJSON()) == string(b.ReportedJSON()) &&
		string(a.TagsJSON()) == string(b.TagsJSON())
}

// putTwins writes the twin records of writes (by ref), concurrently so that
// the writes share fsyncs, and forgets those twins' dirty copies. The
// caller holds s.twMu (and s.mu: no commit makes a twin dirty meanwhile).
func (s *Syncer) putTwins(writes map[string][]byte) error {
	return s.putConcurrently(writes, func(ref string) { s.clean(ref, nil) })
}

// putConcurrently writes the twin records of recs (by ref), 64 at a time so
// that the writes share fsyncs, and calls written for each one stored.
func (s *Syncer) putConcurrently(recs map[string][]byte, written func(ref string)) error {
	var wg sync.WaitGroup
	var emu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 64)
	for ref, b := range recs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := s.st.Put(twinKey(ref), b, store.Any); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("write the local twin of %s: %w", ref, err))
				emu.Unlock()
				return
			}
			written(ref)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reportedJSON is a twin's reported properties without their metadata,
// keys sorted, to compare.
func reportedJSON(t *twin.Twin) string { return string(t.ReportedJSON()) }

func deleteIfThere(st store.Store, key string) error {
	if err := st.Delete(key, store.Any); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func (s *Syncer) saveState() error {
	b, err := json.Marshal(s.state)
	if err != nil {
		return err
	}
	_, err = s.st.Put("sync/state", b, store.Any)
	return err
}

// Watch returns a channel of changes from the hub until ctx is done. A
// watcher that falls behind misses changes, not the state: it should read
// the modules and twins again on each change.
func (s *Syncer) Watch(ctx context.Context) <-chan Change {
	// Room for a sync answer's changes: one answer can change the twins
	// of 1,000 children (a desired patch to each), and a change dropped
	// here waits for the watcher's next sweep (the broker's: 5 s).
	ch := make(chan Change, 4096)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
		close(ch)
	}()
	return ch
}

// Synced reports whether the device has synced with its hub at least once.
func (s *Syncer) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Cursor != ""
}

// Modules returns the device's modules with their keys, as last synced.
func (s *Syncer) Modules() ([]hubapi.SyncModule, error) {
	if !s.Synced() {
		return nil, ErrNotSynced
	}
	return listJSON[hubapi.SyncModule](s.st, "identities/")
}

// listJSON reads the records under prefix, each a JSON T.
func listJSON[T any](st store.Store, prefix string) ([]T, error) {
	recs, err := st.List(prefix)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(recs))
	for _, rec := range recs {
		var v T
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Twin returns a module's twin as the device knows it.
func (s *Syncer) Twin(moduleID string) (*twin.Twin, error) {
	if !s.Synced() {
		return nil, ErrNotSynced
	}
	if strings.HasPrefix(moduleID, "/") { // a child's ref
		return nil, fmt.Errorf("%w: %q", ErrUnknownModule, moduleID)
	}
	return s.localTwin(moduleID)
}

// localTwin returns the twin ref names (see twinKey) as the device knows it.
func (s *Syncer) localTwin(ref string) (*twin.Twin, error) {
	s.dmu.Lock()
	d, ok := s.dirty[ref]
	s.dmu.Unlock()
	if ok {
		return d.t.Clone(), nil
	}
	rec, err := s.twinRec(ref)
	if err != nil {
		return nil, err
	}
	t := new(twin.Twin)
	if err := t.UnmarshalJSON(rec.Value); err != nil {
		return nil, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	return t, nil
}

// twinRec reads the record of the twin ref names, or returns an error
// wrapping ErrUnknownModule or ErrUnknownChild.
func (s *Syncer) twinRec(ref string) (store.Record, error) {
	rec, err := s.st.Get(twinKey(ref))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		if id, ok := strings.CutPrefix(ref, "/"); ok {
			return rec, fmt.Errorf("%w: %q", ErrUnknownChild, id)
		}
		return rec, fmt.Errorf("%w: %q", ErrUnknownModule, ref)
	}
	return rec, err
}

// recordSeq returns the outbox seq up to which the record of the twin ref
// names holds the twin's queued patches: 0 for a record from a daemon
// before "outboxSeq" (all of them are laid on it again).
func (s *Syncer) recordSeq(ref string) (int64, error) {
	rec, err := s.twinRec(ref)
	if err != nil {
		return 0, err
	}
	seq, err := recordOutboxSeq(rec.Value)
	if err != nil {
		return 0, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	return seq, nil
}

// twinRecord returns the record of t that holds its queued patches up to
// outbox seq: t's JSON with "outboxSeq" (a member the twin's JSON reader
// skips).
func twinRecord(t *twin.Twin, seq int64) ([]byte, error) {
	b, err := t.MarshalJSON()
	if err != nil || len(b) < 2 || b[len(b)-1] != '}' {
		return nil, fmt.Errorf("twin JSON %.40q…: %v", b, err)
	}
	b = append(b[:len(b)-1], `,"outboxSeq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}'), nil
}

// recordOutboxSeq reads the "outboxSeq" of a twin record (see twinRecord).
func recordOutboxSeq(b []byte) (int64, error) {
	var r struct {
		OutboxSeq int64 `json:"outboxSeq"`
	}
	err := json.Unmarshal(b, &r)
	return r.OutboxSeq, err
}

// dirtyTwin is a twin changed by reported patches and not yet written:
// it holds those of its queued patches with a seq up to seq.
type dirtyTwin struct {
	t   *twin.Twin
	seq int64
}

// clean forgets the dirty twin of moduleID, if it is t (nil: whatever it
// is), once its record holds it or something newer.
func (s *Syncer) clean(moduleID string, t *twin.Twin) {
	s.dmu.Lock()
	if t == nil || s.dirty[moduleID].t == t {
		delete(s.dirty, moduleID)
	}
	s.dmu.Unlock()
}

// writeTwins writes the dirty twins to the store, each once, each record
// with the seq its twin holds.
func (s *Syncer) writeTwins() error {
	s.twMu.Lock()
	defer s.twMu.Unlock()
	s.dmu.Lock()
	todo := maps.Clone(s.dirty)
	s.dmu.Unlock()
	recs := make(map[string][]byte, len(todo))
	for id, d := range todo {
		b, err := twinRecord(d.t, d.seq)
		if err != nil {
			return fmt.Errorf("write the local twin of %s: %w", id, err)
		}
		recs[id] = b
	}
	return s.putConcurrently(recs, func(id string) { s.clean(id, todo[id].t) })
}

// PatchReported applies a module's reported patch to its local twin and
// queues it for the hub. It returns once the patch is durable, online or
// not; the hub gets it, in order, when it is reachable.
//
// Concurrent calls commit together (a group commit): the first caller to
// find no commit running commits every patch queued meanwhile, in the order
// they came, with one outbox record (one durable write) for all of them,
// then answers each caller; the twins they change are written later (see
// Syncer.dirty). A patch is checked against its twin as the patches before
// it leave it, and a bad one is answered with its error and never queued.
func (s *Syncer) PatchReported(moduleID string, patch []byte) (*twin.Twin, error) {
	if strings.HasPrefix(moduleID, "/") { // a child's ref
		return nil, fmt.Errorf("%w: %q", ErrUnknownModule, moduleID)
	}
	return s.patchReported(moduleID, patch)
}

// PatchChildReported applies a child device's reported patch to its local
// device twin and queues it for the hub, as PatchReported does a module's.
func (s *Syncer) PatchChildReported(deviceID string, patch []byte) (*twin.Twin, error) {
	if deviceID == "" {
		return nil, fmt.Errorf("%w: no device id", ErrUnknownChild)
	}
	return s.patchReported(childRef(deviceID), patch)
}

func (s *Syncer) patchReported(ref string, patch []byte) (*twin.Twin, error) {
	c := &call{ref: ref, patch: patch}
	s.qmu.Lock()
	s.queue = append(s.queue, c)
	if s.committing {
		c.done = make(chan struct{})
		s.qmu.Unlock()
		<-c.done
		return c.twin, c.err
	}
	s.committing = true
	s.qmu.Unlock()
	// Let callers just answered by the last commit queue their next patch
	// first, so that this commit takes them along.
	runtime.Gosched()
	s.qmu.Lock()
	for len(s.queue) > 0 {
		calls := s.queue
		s.queue = nil
		s.qmu.Unlock()
		s.commit(calls)
		s.qmu.Lock()
	}
	s.committing = false
	s.qmu.Unlock()
	return c.twin, c.err
}

// call is one PatchReported waiting for a commit.
type call struct {
	ref   string // the twin's; see twinKey
	patch []byte
	done  chan struct{} // closed once answered; nil for the committer's own

	twin *twin.Twin
	err  error
}

// commit makes calls durable, in order: the patches that change a twin go
// to one new outbox record, and the twins they change become dirty. Every
// call is answered when commit returns.
func (s *Syncer) commit(calls []*call) {
	defer func() {
		for _, c := range calls {
			if c.done != nil {
				close(c.done)
			}
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Cursor == "" {
		for _, c := range calls {
			c.err = ErrNotSynced
		}
		return
	}
	now := s.now().UTC()
	twins := map[string]*twin.Twin{} // each module's twin with the patches so far
	changed := map[string][]*call{}  // the calls that changed each twin
	rec := outboxRecord{Queued: now}
	for _, c := range calls {
		t, ok := twins[c.ref]
		if !ok {
			var err error
			if t, err = s.localTwin(c.ref); err != nil {
				c.err = err
				continue
			}
			twins[c.ref] = t
		}
		// Check the patch on a copy first, so a bad one is never queued.
		trial := t.Clone()
		ok, err := trial.PatchReported(c.patch, now)
		if err != nil {
			c.err = err
			continue
		}
		if !ok {
			c.twin = t
			continue
		}
		compact, err := compactJSON(c.patch)
		if err != nil {
			c.err = err
			continue
		}
		twins[c.ref], c.twin = trial, trial.Clone() // trial becomes dirty: the caller's is its own
		changed[c.ref] = append(changed[c.ref], c)
		p := hubapi.ReportedPatch{Seq: s.nextSeq + int64(len(rec.Patches)), ModuleID: c.ref, Patch: compact}
		if id, ok := strings.CutPrefix(c.ref, "/"); ok {
			p.ModuleID, p.DeviceID = "", id
		}
		rec.Patches = append(rec.Patches, p)
	}
	if len(rec.Patches) == 0 {
		return
	}
	b, err := json.Marshal(rec)
	if err == nil {
		_, err = s.st.Put(outboxKey(rec.Patches[0].Seq), b, 0)
	}
	if err != nil {
		for _, cs := range changed {
			for _, c := range cs {
				c.twin, c.err = nil, fmt.Errorf("queue reported patch: %w", err)
			}
		}
		return
	}
	s.nextSeq += int64(len(rec.Patches))
	s.depth.add(rec, s.state.Acked)
	s.dmu.Lock()
	for id := range changed {
		s.dirty[id] = dirtyTwin{twins[id], s.nextSeq - 1}
	}
	s.dmu.Unlock()
	s.statusChangedLocked()
	s.poke()
}

// newSession returns a new outbox session id: 128 random bits, in hex.
func newSession() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func compactJSON(b []byte) (json.RawMessage, error) {
	var v json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	out, err := json.Marshal(v)
	return out, err
}

// outboxRecord is one record of the outbox: the patches of one commit,
// in order, and when they were queued. A daemon from before group commits
// wrote one patch per record, as {"seq", "moduleId", "patch", "queued"}:
// such a record reads as a record of that one patch.
type outboxRecord struct {
	Patches []hubapi.ReportedPatch `json:"patches"`
	Queued  time.Time              `json:"queued"`
}

func decodeOutbox(rec store.Record) (outboxRecord, error) {
	var r struct {
		outboxRecord
		hubapi.ReportedPatch
	}
	if err := json.Unmarshal(rec.Value, &r); err != nil {
		return r.outboxRecord, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	if r.Patches == nil && r.Seq > 0 {
		r.Patches = []hubapi.ReportedPatch{r.ReportedPatch}
	}
	return r.outboxRecord, nil
}

func outboxKey(seq int64) string { return fmt.Sprintf("outbox/%020d", seq) }

// pending returns the queued patches with seq above after, oldest first.
func (s *Syncer) pending(after int64) ([]hubapi.ReportedPatch, error) {
	out, _, err := readOutbox(s.st, after, after)
	return out, err
}

// flushLoop sends the outbox whenever there is work and the hub answers.
func (s *Syncer) flushLoop(ctx context.Context) {
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	var written time.Time // when the twins were written offline
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-retry.C:
		}
		for ctx.Err() == nil {
			more, err := s.flush(ctx)
			if err != nil {
				s.setConnected(false, err)
				if time.Since(written) >= 5*time.Second { // offline: now and then, not on each commit
					written = time.Now()
					if err := s.writeTwins(); err != nil {
						s.log.Warn("sync: local twins not written; their patches are safe in the outbox", "err", err)
					}
				}
				break
			}
			if !more {
				break
			}
		}
	}
}

// Flush sends what is in the outbox until it is empty, the hub fails, or
// ctx is done: a daemon stopping calls it, with a deadline, so that the
// agent's last report reaches the hub. What it cannot send stays queued for
// the next start.
func (s *Syncer) Flush(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flush the outbox: %w", err)
		}
		more, err := s.flush(ctx)
		if err != nil {
			// What stays queued is safe; the local twins are written anyway,
			// so that they are current on disk when the daemon stops.
			return errors.Join(fmt.Errorf("flush the outbox: %w", err), s.writeTwins())
		}
		if !more {
			return nil
		}
	}
}

// compactEvery is how often, at most, an upload that leaves more to send
// writes the local twins and removes the acked records from the outbox
// (when the outbox is sent it always does).
const compactEvery = 2 * time.Second

// flush sends one batch of the outbox (at most batchSize patches, at most
// maxBatchBytes of them); more reports whether some is left. The records
// the hub then holds in full are removed at the next compaction: when the
// outbox is sent, or compactEvery after the last one. Until then they stay,
// and New would lay them on the local twins again after a crash (the twins
// that hold them are written first, at the compaction): with 1,000 leaf
// devices and a deep outbox, that writes each twin once per compaction
// rather than once per upload. The hub holds every patch with seq ≤ Acked
// (kept in memory between compactions: after a crash the hub is sent those
// again, and skips them).
func (s *Syncer) flush(ctx context.Context) (more bool, err error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	batch := hubapi.ReportedBatch{Session: s.state.Session}
	acked := s.state.Acked
	s.mu.Unlock()
	type sent struct {
		key  string
		last int64 // the record's last seq
	}
	var recs []sent // records whose every patch is in the batch or acked before
	size := 0
	after := s.scanned
scan:
	for {
		page, err := s.st.Range("outbox/", after, 64)
		if err != nil {
			return false, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Key
		for _, rec := range page {
			r, err := decodeOutbox(rec)
			if err != nil {
				return false, err
			}
			last := int64(0)
			for _, p := range r.Patches {
				last = p.Seq
				if p.Seq <= acked {
					continue // the hub has it: a crash came before the record went
				}
				n := len(p.Patch) + len(p.ModuleID) + len(p.DeviceID) + 64
				if len(batch.Patches) == batchSize || len(batch.Patches) > 0 && size+n > maxBatchBytes {
					more = true
					break scan
				}
				batch.Patches = append(batch.Patches, p)
				size += n
			}
			recs = append(recs, sent{rec.Key, last})
		}
	}
	ack := hubapi.ReportedAck{Acked: acked}
	if len(batch.Patches) > 0 {
		a, err := s.hub.UploadReported(ctx, s.deviceID, batch)
		if err != nil {
			return false, err
		}
		ack = *a
		for _, r := range ack.Rejected {
			s.log.Warn("sync: the hub refused a reported patch", "seq", r.Seq, "err", r.Error)
		}
		if last := batch.Patches[len(batch.Patches)-1].Seq; ack.Acked < last {
			more = true // the hub stopped part way: send the rest again
		}
	}
	for _, r := range recs {
		if r.last > ack.Acked {
			break
		}
		s.done = append(s.done, r.key)
		s.scanned = r.key
	}
	s.mu.Lock()
	if ack.Acked > s.state.Acked {
		s.state.Acked = ack.Acked
		s.depth.ack(ack.Acked)
		s.noteAcked(batch.Patches, &ack)
		s.noteUploaded(batch.Patches, &ack, s.now().UTC())
		s.statusChangedLocked()
	}
	s.mu.Unlock()
	if more && time.Since(s.compacted) < compactEvery {
		return more, nil
	}
	return more, s.compact()
}

// compact writes the local twins, then removes the records of s.done from
// the outbox and writes Acked, in one Txn (one journal and a few fsyncs,
// however many records): Acked is what keeps the seqs of removed records
// from being used again. The caller holds s.flushMu.
func (s *Syncer) compact() error {
	s.compacted = time.Now()
	// The twins that hold the patches go first: the outbox is what New
	// applies again after a crash. (s.mu: a commit in progress has made its
	// twins dirty: taking it waits for that commit to end.)
	s.mu.Lock()
	//lint:ignore SA2001 a barrier, not a critical section
	s.mu.Unlock()
	if err := s.writeTwins(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.done) == 0 {
		return nil
	}
	ops := make([]store.Op, 0, len(s.done)+1)
	for _, k := range s.done {
		ops = append(ops, store.DeleteOp(k, store.Any))
	}
	b, err := json.Marshal(s.state)
	if err != nil {
		return err
	}
	ops = append(ops, store.PutOp("sync/state", b, store.Any))
	if _, err := s.st.Txn(ops...); err != nil {
		return fmt.Errorf("remove sent patches from the outbox: %w", err)
	}
	s.done = s.done[:0]
	return nil
}

// maxRecent bounds Syncer.recent: past it, a twin may lack some of its
// module's acked patches until the next sync answer, milliseconds later.
const maxRecent = 10000

// noteAcked keeps the patches of batch that ack took (not those it
// rejected) in s.recent; the caller holds s.mu.
func (s *Syncer) noteAcked(batch []hubapi.ReportedPatch, ack *hubapi.ReportedAck) {
	rejected := map[int64]bool{}
	for _, r := range ack.Rejected {
		rejected[r.Seq] = true
	}
	for _, p := range batch {
		if p.Seq <= ack.Acked && !rejected[p.Seq] && len(s.recent) < maxRecent {
			s.recent = append(s.recent, p)
		}
	}
}

// Status is the device's view of its link to the hub.
type Status struct {
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	LastSync  time.Time `json:"lastSync,omitzero"`
	// LastError is why the hub was last unreachable (kept once the link is
	// back), and LastErrorAt when that was first seen; "" when it never was.
	LastError   string         `json:"lastError,omitempty"`
	LastErrorAt time.Time      `json:"lastErrorAt,omitzero"`
	Outbox      OutboxStatus   `json:"outbox"`
	Twins       []TwinVersions `json:"twins"`
}

// OutboxStatus describes the reported patches waiting for the hub.
type OutboxStatus struct {
	Patches int       `json:"patches"`
	Bytes   int       `json:"bytes"`
	Oldest  time.Time `json:"oldest,omitzero"`
}

// TwinVersions are a cached twin's section versions.
type TwinVersions struct {
	ModuleID        string `json:"moduleId"`
	DesiredVersion  int64  `json:"desiredVersion"`
	ReportedVersion int64  `json:"reportedVersion"`
	// HubDesiredVersion and HubReportedVersion are the twin's versions as
	// the hub last sent them, HubSeenAt when (the time of that sync
	// answer); zero until an answer carried the twin. The hub's twin is
	// unchanged from HubSeenAt until LastSync at least.
	HubDesiredVersion  int64     `json:"hubDesiredVersion,omitempty"`
	HubReportedVersion int64     `json:"hubReportedVersion,omitempty"`
	HubSeenAt          time.Time `json:"hubSeenAt,omitzero"`
	// QueuedReports are the twin's reported patches waiting in the outbox.
	QueuedReports int `json:"queuedReports,omitempty"`
}

// StatusChanged returns a channel that is closed at the next change of
// what Link or Outbox return: the link going up or down, a sync answer, a
// commit to the outbox or patches leaving it. Read the channel first, then
// the status, so that no change is missed:
//
//	for { c := s.StatusChanged(); show(s.Link()); <-c }
func (s *Syncer) StatusChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusC
}

// statusChangedLocked wakes StatusChanged's waiters; the caller holds s.mu.
func (s *Syncer) statusChangedLocked() {
	close(s.statusC)
	s.statusC = make(chan struct{})
}

// Link reports the link to the hub: the Connected, Since and LastSync of
// Status, without reading the store.
func (s *Syncer) Link() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Connected: s.connected, Since: s.since.UTC(), LastSync: s.state.LastSync,
		LastError: s.lastErr.msg, LastErrorAt: s.lastErr.at}
}

// Outbox reports the reported patches waiting for the hub, without reading
// the store (see outboxDepth). The error is always nil.
func (s *Syncer) Outbox() (OutboxStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.depth.status(), nil
}

// Status reports the link, the outbox and the cached twins' versions.
func (s *Syncer) Status() (Status, error) {
	st := s.Link()
	var err error
	if st.Outbox, err = s.Outbox(); err != nil {
		return st, err
	}
	twins, err := s.st.List("twins/")
	if err != nil {
		return st, err
	}
	hub, queued := s.twinExtras()
	st.Twins = make([]TwinVersions, 0, len(twins))
	for _, rec := range twins {
		t := new(twin.Twin)
		if err := t.UnmarshalJSON(rec.Value); err != nil {
			return st, fmt.Errorf("record %s: %w", rec.Key, err)
		}
		if d, err := s.localTwin(t.ModuleID); err == nil {
			t = d // a dirty twin is newer
		}
		h := hub[t.ModuleID]
		st.Twins = append(st.Twins, TwinVersions{ModuleID: t.ModuleID, DesiredVersion: t.DesiredVersion(), ReportedVersion: t.ReportedVersion(),
			HubDesiredVersion: h.Desired, HubReportedVersion: h.Reported, HubSeenAt: h.At, QueuedReports: queued[t.ModuleID]})
	}
	return st, nil
}
