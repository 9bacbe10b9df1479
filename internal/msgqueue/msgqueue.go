// Package msgqueue is the device's durable message log: every message a
// module sends that a route takes is appended once, with the destinations
// it goes to (the hub, module inputs) and when it expires for each, and is
// kept until every destination has acknowledged it or it has expired.
//
// Appends are group-committed: one write and one fdatasync for all the
// messages that arrived while the previous commit was under way, and each
// caller learns that its message is durable through a callback (the broker
// sends the PUBACK from there). Each destination reads its messages in
// order and acknowledges a prefix; what it acknowledged is written now and
// then (at-least-once: after a crash a destination may get again what it
// acknowledged last). The log is bounded by bytes: an append beyond the
// bound fails with ErrFull and writes nothing.
//
// On disk: segment files {first seq}.log of records
// [len u32][crc32c u32][seq u64][at unixnano i64][n u16]{[len u16][dest][expires unixnano i64]}×n[data],
// and state.json with each destination's acknowledged seq and expired count.
// A torn record at the end of the last segment (a crash mid-write) is cut off.
package msgqueue

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// Defaults.
const (
	DefaultMaxBytes = 64 << 20
	segmentSize     = 8 << 20
	headerSize      = 4 + 4 + 8 + 8
	maxBatch        = 4096
	stateFlushEvery = 200 * time.Millisecond
)

// ErrFull is returned when an append would pass the log's bound.
var ErrFull = errors.New("the message queue is full")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("the message queue is closed")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Dest is one destination of a record and when the record expires there
// (zero: never). ReadsValue says the destination reads the record's Value:
// the Value is kept until every such destination has acknowledged the
// record (or it expired there), then dropped (not written).
type Dest struct {
	Name       string
	Expires    time.Time
	ReadsValue bool
}

// Record is what is appended: the data and where it goes. Value, when set,
// is kept beside the data in memory only, for the destinations that read it
// (Dest.ReadsValue) in this process (the data decoded, say): it is not
// written, and a record read back after a restart has none.
//
// Flush, when set, is called once per group commit after the done
// callbacks of the group's records (once for all the records that share
// it), so that what the callbacks leave to send goes out together.
//
// Source names who sent the record (a module, a leaf device), for
// BySource; it is not written: Options.SourceOf finds it again in the
// data of a record read back.
type Record struct {
	Dests  []Dest
	Data   []byte
	Value  any
	Flush  Flusher
	Source string
}

// Flusher is a Record's Flush.
type Flusher interface{ Flush() }

// Entry is a record as a destination reads it.
type Entry struct {
	Seq   uint64
	At    time.Time // when it was appended
	Data  []byte
	Value any // the record's Value; nil when read back from disk
}

// Stats describes what waits for a set of destinations.
type Stats struct {
	Count   int       `json:"count"`
	Bytes   int64     `json:"bytes"`
	Oldest  time.Time `json:"oldest,omitzero"`
	Expired int64     `json:"expired"`
	Refused int64     `json:"refused"` // appends refused because the queue was full
}

// Options configure Open.
type Options struct {
	MaxBytes int64            // default DefaultMaxBytes
	Now      func() time.Time // default time.Now
	// SourceOf finds a record's Source in its data when the record is
	// read back from disk (nil: records read back count under "").
	SourceOf func(data []byte) string
}

type entry struct {
	seq     uint64
	at      time.Time
	data    []byte
	value   any
	readers []string // the destinations that read value and have not acknowledged it
	seg     *segment
	refs    int // destinations still to take it
	expires map[string]time.Time
	source  string
}

type destQ struct {
	items       []*entry
	acked       uint64
	expired     int64
	expiredUpTo uint64 // the highest seq counted in expired, so a replay counts none twice
	// soonest is no later than the earliest expiry among items (zero: none
	// expires), so that expire looks through them only when one may have.
	soonest time.Time
}

type segment struct {
	first uint64
	path  string
	live  int
}

type pending struct {
	rec  Record
	done func(seq uint64, err error)
}

// Log is an open message log.
type Log struct {
	dir  string
	opts Options

	mu       sync.Mutex
	dests    map[string]*destQ
	segs     []*segment
	bytes    int64
	nextSeq  uint64
	changed  chan struct{}
	refused  int64
	dirty    bool
	closed   bool
	incoming []pending
	wake     chan struct{}
	bySource map[string]int // records not yet taken by every destination, by Record.Source

	epoch   string
	f       *os.File // the current segment, appended to by the committer only
	fsize   int64
	stop    chan struct{}
	stopped sync.WaitGroup // the committer and the maintainer
}

// Open opens (creating) the log in dir.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("message queue: %w", err)
	}
	l := &Log{dir: dir, opts: opts, dests: map[string]*destQ{}, bySource: map[string]int{}, nextSeq: 1, changed: make(chan struct{}),
		wake: make(chan struct{}, 1), stop: make(chan struct{})}
	if err := l.load(); err != nil {
		return nil, fmt.Errorf("message queue %s: %w", dir, err)
	}
	if err := l.loadEpoch(); err != nil {
		return nil, fmt.Errorf("message queue %s: %w", dir, err)
	}
	l.stopped.Go(l.commitLoop)
	l.stopped.Go(l.maintainLoop)
	return l, nil
}

type stateFile struct {
	Acked       map[string]uint64 `json:"acked"`
	Expired     map[string]int64  `json:"expired"`
	ExpiredUpTo map[string]uint64 `json:"expiredUpTo"`
}

func (l *Log) load() error {
	var st stateFile
	b, err := os.ReadFile(filepath.Join(l.dir, "state.json"))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("state.json: %w", err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	for d, n := range st.Expired {
		l.dest(d).expired = n
	}
	for d, s := range st.Acked {
		l.dest(d).acked = s
	}
	for d, s := range st.ExpiredUpTo {
		l.dest(d).expiredUpTo = s
	}
	names, err := filepath.Glob(filepath.Join(l.dir, "*.log"))
	if err != nil {
		return err
	}
	sort.Slice(names, func(i, j int) bool { return segFirst(names[i]) < segFirst(names[j]) })
	for i, name := range names {
		seg := &segment{first: segFirst(name), path: name}
		good, err := l.replay(seg, st.Acked)
		if err != nil {
			return err
		}
		if i == len(names)-1 {
			f, err := os.OpenFile(name, os.O_RDWR, 0o600)
			if err != nil {
				return err
			}
			if err := f.Truncate(good); err != nil { // a torn tail
				f.Close()
				return err
			}
			if _, err := f.Seek(good, io.SeekStart); err != nil {
				f.Close()
				return err
			}
			l.f, l.fsize = f, good
		}
		l.segs = append(l.segs, seg)
	}
	for _, seg := range l.segs[:max(len(l.segs)-1, 0)] {
		if seg.live == 0 {
			l.dropSegment(seg)
		}
	}
	return nil
}

func segFirst(path string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".log"), 10, 64)
	return n
}

// replay reads seg's records into the destinations and returns the length
// of its whole records.
func (l *Log) replay(seg *segment, acked map[string]uint64) (int64, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	hdr := make([]byte, headerSize)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return off, nil
		}
		n := binary.LittleEndian.Uint32(hdr[0:])
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if n > 64<<20 {
			return off, nil
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return off, nil
		}
		if crc32.Checksum(append(hdr[8:headerSize:headerSize], body...), castagnoli) != sum {
			return off, nil
		}
		seq := binary.LittleEndian.Uint64(hdr[8:])
		at := time.Unix(0, int64(binary.LittleEndian.Uint64(hdr[16:])))
		dests, data, ok := decodeBody(body)
		if !ok {
			return off, nil
		}
		off += headerSize + int64(n)
		l.nextSeq = max(l.nextSeq, seq+1)
		e := &entry{seq: seq, at: at, data: data, seg: seg}
		for _, d := range dests {
			if seq <= acked[d.Name] {
				continue
			}
			l.addTo(e, d)
		}
		if e.refs > 0 {
			l.bytes += int64(len(data))
			if l.opts.SourceOf != nil {
				e.source = l.opts.SourceOf(data)
			}
			l.bySource[e.source]++
		}
	}
}

func (l *Log) addTo(e *entry, d Dest) {
	q := l.dest(d.Name)
	q.items = append(q.items, e)
	if !d.Expires.IsZero() {
		if e.expires == nil {
			e.expires = map[string]time.Time{}
		}
		e.expires[d.Name] = d.Expires
		if q.soonest.IsZero() || d.Expires.Before(q.soonest) {
			q.soonest = d.Expires
		}
	}
	if d.ReadsValue && e.value != nil {
		e.readers = append(e.readers, d.Name)
	}
	e.refs++
	e.seg.live++
}

func (l *Log) dest(name string) *destQ {
	q := l.dests[name]
	if q == nil {
		q = &destQ{}
		l.dests[name] = q
	}
	return q
}

// recordSize is the length of r's record on disk.
func recordSize(r Record) int {
	n := 2 + len(r.Data)
	for _, d := range r.Dests {
		n += 2 + len(d.Name) + 8
	}
	return headerSize + n
}

// appendRecord appends r's record to buf.
func appendRecord(buf []byte, seq uint64, at time.Time, r Record) []byte {
	start := len(buf)
	size := recordSize(r)
	buf = slices.Grow(buf, size)[:start+headerSize] // every header byte is set below
	binary.LittleEndian.PutUint32(buf[start:], uint32(size-headerSize))
	binary.LittleEndian.PutUint64(buf[start+8:], seq)
	binary.LittleEndian.PutUint64(buf[start+16:], uint64(at.UnixNano()))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(r.Dests)))
	for _, d := range r.Dests {
		buf = binary.LittleEndian.AppendUint16(buf, uint16(len(d.Name)))
		buf = append(buf, d.Name...)
		var exp int64
		if !d.Expires.IsZero() {
			exp = d.Expires.UnixNano()
		}
		buf = binary.LittleEndian.AppendUint64(buf, uint64(exp))
	}
	buf = append(buf, r.Data...)
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[start+8:], castagnoli))
	return buf
}

func decodeBody(b []byte) ([]Dest, []byte, bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	dests := make([]Dest, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, nil, false
		}
		ln := int(binary.LittleEndian.Uint16(b))
		if len(b) < 2+ln+8 {
			return nil, nil, false
		}
		d := Dest{Name: string(b[2 : 2+ln])}
		if exp := int64(binary.LittleEndian.Uint64(b[2+ln:])); exp != 0 {
			d.Expires = time.Unix(0, exp)
		}
		dests = append(dests, d)
		b = b[2+ln+8:]
	}
	return dests, b, true
}

// Append queues r to be written; done is called (from the committer, in
// append order) with its seq once it is durable, or with an error (ErrFull
// at once when it does not fit). A record without destinations is done at
// in its turn, writing nothing (so that callers' callbacks keep their order).
func (l *Log) Append(r Record, done func(seq uint64, err error)) {
	for _, d := range r.Dests {
		if d.Name == "" || len(d.Name) > 1024 {
			done(0, fmt.Errorf("message queue: destination name %q is empty or too long", d.Name))
			return
		}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		done(0, ErrClosed)
		return
	}
	if l.bytes+int64(len(r.Data)) > l.opts.MaxBytes {
		l.refused++
		l.mu.Unlock()
		done(0, ErrFull)
		return
	}
	l.bytes += int64(len(r.Data)) // reserved now, so that concurrent appends see it
	l.incoming = append(l.incoming, pending{rec: r, done: done})
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// AppendSync appends r and waits until it is durable.
func (l *Log) AppendSync(r Record) (uint64, error) {
	ch := make(chan struct{})
	var seq uint64
	var err error
	l.Append(r, func(s uint64, e error) { seq, err = s, e; close(ch) })
	<-ch
	return seq, err
}

// commitLoop writes what is appended. It does nothing else, so that a
// commit never waits behind the state's write (maintainLoop's).
func (l *Log) commitLoop() {
	for {
		select {
		case <-l.wake:
			l.commit()
		case <-l.stop:
			l.commit()
			return
		}
	}
}

// maintainLoop expires, writes the state and drops segments now and then.
func (l *Log) maintainLoop() {
	flush := time.NewTicker(stateFlushEvery)
	defer flush.Stop()
	for {
		select {
		case <-flush.C:
			l.maintain()
		case <-l.stop:
			return
		}
	}
}

func (l *Log) commit() {
	for {
		l.mu.Lock()
		batch := l.incoming
		if len(batch) > maxBatch {
			batch = batch[:maxBatch]
		}
		l.incoming = l.incoming[len(batch):]
		seq := l.nextSeq
		l.nextSeq += uint64(len(batch))
		l.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		now := l.opts.Now()
		size := 0
		for _, p := range batch {
			if len(p.rec.Dests) > 0 {
				size += recordSize(p.rec)
			}
		}
		buf := make([]byte, 0, size)
		for i, p := range batch {
			if len(p.rec.Dests) > 0 {
				buf = appendRecord(buf, seq+uint64(i), now, p.rec)
			}
		}
		err := l.write(seq, buf)
		l.mu.Lock()
		if err != nil {
			for _, p := range batch {
				l.bytes -= int64(len(p.rec.Data))
			}
		} else {
			for i, p := range batch {
				if len(p.rec.Dests) == 0 {
					continue
				}
				seg := l.segs[len(l.segs)-1]
				e := &entry{seq: seq + uint64(i), at: now, data: p.rec.Data, value: p.rec.Value, seg: seg, source: p.rec.Source}
				for _, d := range p.rec.Dests {
					l.addTo(e, d)
				}
				l.bySource[e.source]++
				if len(e.readers) == 0 {
					e.value = nil // no destination reads it
				}
			}
			close(l.changed)
			l.changed = make(chan struct{})
		}
		l.mu.Unlock()
		var flush []Flusher
		for i, p := range batch {
			if err != nil {
				p.done(0, fmt.Errorf("message queue: write: %w", err))
			} else {
				p.done(seq+uint64(i), nil)
			}
			if p.rec.Flush != nil && !slices.Contains(flush, p.rec.Flush) {
				flush = append(flush, p.rec.Flush)
			}
		}
		for _, f := range flush {
			f.Flush()
		}
	}
}

// write appends buf (records from seq on) to the current segment, starting
// a new one when it is full, and syncs it.
func (l *Log) write(seq uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	if l.f == nil || l.fsize >= segmentSize {
		if l.f != nil {
			if err := l.f.Close(); err != nil {
				return err
			}
		}
		path := filepath.Join(l.dir, fmt.Sprintf("%020d.log", seq))
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if err := atomicfile.SyncDir(l.dir); err != nil {
			f.Close()
			return err
		}
		l.f, l.fsize = f, 0
		l.mu.Lock()
		l.segs = append(l.segs, &segment{first: seq, path: path})
		l.mu.Unlock()
	}
	if _, err := l.f.Write(buf); err != nil {
		_ = l.f.Truncate(l.fsize)
		_, _ = l.f.Seek(l.fsize, io.SeekStart)
		return err
	}
	if err := datasync(l.f); err != nil {
		return err
	}
	l.fsize += int64(len(buf))
	return nil
}

// maintain drops what expired, removes segments nothing needs and writes
// the state when it changed.
func (l *Log) maintain() {
	l.mu.Lock()
	now := l.opts.Now()
	for name, q := range l.dests {
		l.expire(name, q, now)
	}
	var drop []*segment
	if len(l.segs) > 1 {
		keep := l.segs[:0]
		for i, s := range l.segs {
			if s.live == 0 && i < len(l.segs)-1 {
				drop = append(drop, s)
				continue
			}
			keep = append(keep, s)
		}
		l.segs = keep
	}
	var st []byte
	if l.dirty {
		s := stateFile{Acked: map[string]uint64{}, Expired: map[string]int64{}, ExpiredUpTo: map[string]uint64{}}
		for name, q := range l.dests {
			if q.acked > 0 {
				s.Acked[name] = q.acked
			}
			if q.expired > 0 {
				s.Expired[name] = q.expired
				s.ExpiredUpTo[name] = q.expiredUpTo
			}
		}
		st, _ = json.Marshal(s)
		l.dirty = false
	}
	l.mu.Unlock()
	if st != nil {
		// The state goes first: a segment is removed only once no
		// destination would read it again after a crash.
		if err := atomicfile.WriteFile(filepath.Join(l.dir, "state.json"), st, 0o600); err != nil {
			l.mu.Lock()
			l.dirty = true
			l.mu.Unlock()
			return
		}
	}
	for _, s := range drop {
		l.dropSegment(s)
	}
}

func (l *Log) dropSegment(s *segment) { _ = os.Remove(s.path) }

// expire drops the expired entries at the head of q and every expired one
// within it (the caller holds l.mu).
func (l *Log) expire(name string, q *destQ, now time.Time) {
	if q.soonest.IsZero() || now.Before(q.soonest) {
		return
	}
	q.soonest = time.Time{}
	keep := q.items[:0]
	for _, e := range q.items {
		exp, ok := e.expires[name]
		if ok && now.Before(exp) && (q.soonest.IsZero() || exp.Before(q.soonest)) {
			q.soonest = exp
		}
		if ok && !now.Before(exp) {
			if e.seq > q.expiredUpTo {
				q.expired++
				q.expiredUpTo = e.seq
			}
			l.release(e, name)
			l.dirty = true
			continue
		}
		keep = append(keep, e)
	}
	clear(q.items[len(keep):])
	q.items = keep
}

func (l *Log) release(e *entry, dest string) {
	if i := slices.Index(e.readers, dest); i >= 0 {
		e.readers = slices.Delete(e.readers, i, i+1)
		if len(e.readers) == 0 {
			e.value, e.readers = nil, nil
		}
	}
	e.refs--
	e.seg.live--
	if e.refs == 0 {
		l.bytes -= int64(len(e.data))
		if l.bySource[e.source]--; l.bySource[e.source] <= 0 {
			delete(l.bySource, e.source)
		}
	}
}

// Pending returns up to max (0: all) of dest's unacknowledged entries with
// seq > after, oldest first; expired ones are dropped and counted.
func (l *Log) Pending(dest string, after uint64, max int) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.dests[dest]
	if q == nil {
		return nil
	}
	l.expire(dest, q, l.opts.Now())
	i := sort.Search(len(q.items), func(i int) bool { return q.items[i].seq > after })
	var out []Entry
	for _, e := range q.items[i:] {
		if max > 0 && len(out) == max {
			break
		}
		out = append(out, Entry{Seq: e.seq, At: e.at, Data: e.data, Value: e.value})
	}
	return out
}

// Ack acknowledges dest's entries up to and including seq.
func (l *Log) Ack(dest string, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.dests[dest]
	if q == nil || seq <= q.acked {
		return
	}
	q.acked = seq
	l.dirty = true
	n := 0
	for n < len(q.items) && q.items[n].seq <= seq {
		l.release(q.items[n], dest)
		n++
	}
	clear(q.items[:n])
	q.items = q.items[n:]
}

// Changed returns a channel closed at the next commit.
func (l *Log) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Stats sums what waits for the destinations whose names start with prefix.
func (l *Log) Stats(prefix string) Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{Refused: l.refused}
	now := l.opts.Now()
	for name, q := range l.dests {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		l.expire(name, q, now)
		st.Count += len(q.items)
		st.Expired += q.expired
		for _, e := range q.items {
			st.Bytes += int64(len(e.data))
		}
		if len(q.items) > 0 && (st.Oldest.IsZero() || q.items[0].at.Before(st.Oldest)) {
			st.Oldest = q.items[0].at.UTC()
		}
	}
	return st
}

// BySource counts the records some destination has still to take (not
// acknowledged, not expired), by their Record.Source.
func (l *Log) BySource() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.Now()
	for name, q := range l.dests {
		l.expire(name, q, now)
	}
	return maps.Clone(l.bySource)
}

// Dests returns the names of the destinations with prefix, sorted.
func (l *Log) Dests(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for name := range l.dests {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Close commits what was appended, writes the state and closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.stopped.Wait()
	l.maintain()
	if l.f != nil {
		return l.f.Close()
	}
	return nil
}

// Epoch names this log: made at random when the log is created, so that a
// reader of its seqs (the hub) can tell a log started afresh from an old one.
func (l *Log) Epoch() string { return l.epoch }

func (l *Log) loadEpoch() error {
	path := filepath.Join(l.dir, "epoch")
	b, err := os.ReadFile(path)
	if err == nil && len(b) > 0 {
		l.epoch = strings.TrimSpace(string(b))
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var r [12]byte
	if _, err := rand.Read(r[:]); err != nil {
		return err
	}
	l.epoch = hex.EncodeToString(r[:])
	return atomicfile.WriteFile(path, []byte(l.epoch+"\n"), 0o600)
}
