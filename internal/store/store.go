package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/keylock"
)

// Record is a key, its version and its value, a JSON document.
type Record struct {
	Key     string
	Version int64
	Value   []byte
}

// Any, as the expected version, makes Put and Delete unconditional.
const Any int64 = -1

// Store is what outpost asks of a durable key-value store. FileStore implements it on local
// files; keep it small enough for a backend on etcd.
type Store interface {
	// Get returns the record under key, or an error wrapping ErrNotFound.
	Get(key string) (Record, error)
	// List returns the records whose keys start with prefix, sorted by key.
	List(prefix string) ([]Record, error)
	// Range returns, sorted by key, at most limit (0: no limit) records whose keys
	// start with prefix and sort after `after` ("" for from the start): one page.
	Range(prefix, after string, limit int) ([]Record, error)
	// Put writes value under key if the record's version is expect: 0 means the record
	// must not exist, Any means no condition. It returns the new version, or a
	// *ConflictError (wrapping ErrConflict) when the version is not the expected one.
	Put(key string, value []byte, expect int64) (int64, error)
	// Delete removes the record under key, with the same rule for expect as Put. It
	// returns an error wrapping ErrNotFound if there is no such record.
	Delete(key string, expect int64) error
	// Txn applies ops, puts and deletes of distinct keys, all or none: if the version of
	// any record is not the one its op expects, nothing is written and the error is a
	// *ConflictError for that key. A delete of a record that does not exist is no error
	// (if its op expects 0 or Any). A check (CheckOp) writes nothing: it makes the Txn
	// depend on another record's version, such as the module whose twin it writes. Every
	// put gets the same new version, which Txn returns (0 if ops changed nothing). On
	// etcd this is one Txn: a compare on each key's revision, then the writes.
	Txn(ops ...Op) (int64, error)
	// Watch returns the changes to records under prefix once they are durable, in commit
	// order for each key. The channel is closed when ctx is done or the store is closed.
	// An event's value may be shared with the store and other watchers: read it, never
	// change it.
	Watch(ctx context.Context, prefix string) <-chan Event
	// Close releases the store. Calls after Close fail with ErrClosed.
	Close() error
}

var _ Store = (*FileStore)(nil)

// TxnLimiter is a store that takes at most TxnLimit ops in one Txn (etcd: its
// --max-txn-ops). A store without it takes any number.
type TxnLimiter interface {
	TxnLimit() int
}

// TxnLimit returns how many ops st takes in one Txn, 0 for no limit.
func TxnLimit(st Store) int {
	if l, ok := st.(TxnLimiter); ok {
		return l.TxnLimit()
	}
	return 0
}

// Errors, to be matched with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("version conflict")
	ErrLocked   = errors.New("data dir is in use")
	ErrClosed   = errors.New("store: closed")
	ErrInvalid  = errors.New("invalid key or value")
)

// Op is one part of a Txn: a put of Value under Key, with Delete set a removal of Key, or
// with Check set no write at all, each if the record's version is Expect (0: the record
// must not exist; Any: no condition).
type Op struct {
	Key    string
	Value  []byte
	Expect int64
	Delete bool
	Check  bool
}

// PutOp returns the Op that puts value under key if the record's version is expect.
func PutOp(key string, value []byte, expect int64) Op {
	return Op{Key: key, Value: value, Expect: expect}
}

// DeleteOp returns the Op that deletes key if the record's version is expect.
func DeleteOp(key string, expect int64) Op { return Op{Key: key, Expect: expect, Delete: true} }

// CheckOp returns the Op that writes nothing and fails the Txn unless the record under
// key is at version expect (0: it must not exist). While the Txn runs, no other write to
// key does.
func CheckOp(key string, expect int64) Op { return Op{Key: key, Expect: expect, Check: true} }

// SpaceError is a write that failed because the file system of the store's dir is full
// (or a disk quota is used up). Nothing of the write was made: free space and retry.
type SpaceError struct {
	Dir string // the store's dir
	Err error
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("%v: the file system of %s is full: free space there (or raise the quota), then retry", e.Err, e.Dir)
}

func (e *SpaceError) Unwrap() error { return e.Err }

// ConflictError is the error of a Put or Delete whose expected version did not match.
type ConflictError struct {
	Key     string
	Expect  int64 // the version the caller expected, 0 for "no record"
	Current int64 // the record's version, 0 if it does not exist
}

func (e *ConflictError) Error() string {
	want := "version " + strconv.FormatInt(e.Expect, 10)
	if e.Expect == 0 {
		want = "no record"
	}
	have := "version " + strconv.FormatInt(e.Current, 10)
	if e.Current == 0 {
		have = "no record"
	}
	return fmt.Sprintf("store: %s: version conflict: expected %s, found %s", e.Key, want, have)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// sentinelError is an error with its own message that matches a sentinel.
type sentinelError struct {
	msg string
	err error
}

func (e *sentinelError) Error() string { return e.msg }
func (e *sentinelError) Unwrap() error { return e.err }

func wrapf(sentinel error, format string, args ...any) error {
	return &sentinelError{msg: fmt.Sprintf(format, args...), err: sentinel}
}

// Option configures Open.
type Option func(*options)

type options struct {
	log *slog.Logger
}

// WithLogger makes the store log what it repairs at Open. By default it logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// Names inside the data dir.
const (
	lockName     = "LOCK"
	revisionName = "REVISION"
	recordsName  = "records"
)

// revBlock is how many versions are reserved at once in the REVISION file.
const revBlock = 1024

// FileStore is a Store on local files; see the package documentation.
type FileStore struct {
	dir, recDir string
	log         *slog.Logger
	lockFile    *os.File
	recFile     *os.File // the records directory, for fsync
	dirSync     *groupSync
	spares      spares
	noExchange  atomic.Bool // set once exchange failed as unsupported

	opMu sync.RWMutex // writes hold it shared, Close exclusively

	keyLocks keylock.Locks

	revMu    sync.Mutex
	rev      int64 // last version handed out
	revLimit int64 // as in the REVISION file: no version above it was handed out

	mu       sync.RWMutex
	closed   bool
	err      error // set when a write could not be made durable; writes fail after it
	index    map[string]entry
	keys     keyList
	watchers map[*watcher]struct{}
	done     chan struct{} // closed by Close
	watchWG  sync.WaitGroup
}

type entry struct {
	version int64
	value   []byte // never modified once stored
	size    int    // of the record file
}

// Get returns the record under key.
func (s *FileStore) Get(key string) (Record, error) {
	rec, err := s.GetShared(key)
	rec.Value = bytes.Clone(rec.Value)
	return rec, err
}

// GetShared is Get without copying the value: it is the store's own, which it never
// changes (a write installs a new slice), and the caller must not change it either (see
// ListShared). For readers that only decode the value.
func (s *FileStore) GetShared(key string) (Record, error) {
	if err := checkKey(key); err != nil {
		return Record{}, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return Record{}, ErrClosed
	}
	e, ok := s.index[key]
	s.mu.RUnlock()
	if !ok {
		return Record{}, fmt.Errorf("store: %s: %w", key, ErrNotFound)
	}
	return Record{Key: key, Version: e.version, Value: e.value}, nil
}

// List returns the records whose keys start with prefix, sorted by key.
func (s *FileStore) List(prefix string) ([]Record, error) {
	return s.Range(prefix, "", 0)
}

// Range returns at most limit (0: no limit) records under prefix whose keys sort after
// `after`, sorted by key.
func (s *FileStore) Range(prefix, after string, limit int) ([]Record, error) {
	from := prefix
	if after != "" && after >= prefix {
		from = after + "\x00" // the smallest key above after
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	var recs []Record
	s.keys.ascend(from, func(k string) bool {
		if !strings.HasPrefix(k, prefix) || (limit > 0 && len(recs) == limit) {
			return false
		}
		e := s.index[k]
		recs = append(recs, Record{Key: k, Version: e.version, Value: e.value})
		return true
	})
	s.mu.RUnlock()
	for i := range recs {
		recs[i].Value = bytes.Clone(recs[i].Value)
	}
	return recs, nil
}

// Put writes value under key if the record's version is expect (0: must not exist; Any:
// unconditionally) and returns the new version once the write is durable.
func (s *FileStore) Put(key string, value []byte, expect int64) (int64, error) {
	if err := CheckPut(key, value, expect); err != nil {
		return 0, err
	}
	s.opMu.RLock()
	defer s.opMu.RUnlock()
	if err := s.writable(); err != nil {
		return 0, err
	}
	defer s.lockKey(key)()
	s.mu.RLock()
	cur, exists := s.index[key]
	s.mu.RUnlock()
	if err := checkExpect(key, expect, cur.version, exists); err != nil {
		return 0, err
	}
	version, err := s.nextVersion()
	if err != nil {
		return 0, s.writeErr("put "+key, err)
	}
	value = bytes.Clone(value)
	buf := recordBuffers.Get().(*[]byte)
	data := appendRecord(*buf, key, version, value)
	err = s.replace(key, data, cur, exists)
	size := len(data)
	if cap(data) <= maxPooledRecord {
		*buf = data[:0]
		recordBuffers.Put(buf)
	}
	if err != nil {
		return 0, s.writeErr("put "+key, err)
	}
	s.mu.Lock()
	s.index[key] = entry{version: version, value: value, size: size}
	if !exists {
		s.keys.insert(key)
	}
	s.publish(Event{Type: Put, Record: Record{Key: key, Version: version, Value: value}})
	s.mu.Unlock()
	return version, nil
}

// Delete removes the record under key if its version is expect (or expect is Any), once
// the removal is durable.
func (s *FileStore) Delete(key string, expect int64) error {
	if err := CheckDelete(key, expect); err != nil {
		return err
	}
	s.opMu.RLock()
	defer s.opMu.RUnlock()
	if err := s.writable(); err != nil {
		return err
	}
	defer s.lockKey(key)()
	s.mu.RLock()
	cur, exists := s.index[key]
	s.mu.RUnlock()
	if !exists {
		return fmt.Errorf("store: delete %s: %w", key, ErrNotFound)
	}
	if err := checkExpect(key, expect, cur.version, exists); err != nil {
		return err
	}
	spare, err := s.detach(key)
	if err != nil {
		return s.writeErr("delete "+key, err)
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	if spare != "" {
		s.spares.put(spare, cur.size)
	}
	s.mu.Lock()
	delete(s.index, key)
	s.keys.remove(key)
	s.publish(Event{Type: Delete, Record: Record{Key: key, Version: cur.version}})
	s.mu.Unlock()
	return nil
}

func checkExpect(key string, expect, current int64, exists bool) error {
	if !exists {
		current = 0
	}
	if expect == Any || expect == current {
		return nil
	}
	return &ConflictError{Key: key, Expect: expect, Current: current}
}

// writable returns why writes are refused, if they are.
func (s *FileStore) writable() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.err
}

// lockKey serializes writes to one key and returns the unlock function.
func (s *FileStore) lockKey(key string) (unlock func()) { return s.keyLocks.Lock(key) }

// nextVersion hands out the next version, first reserving a block of them in the
// REVISION file when the reserved ones are used up. Versions so never repeat, even for a
// key deleted and created again, and even across crashes.
func (s *FileStore) nextVersion() (int64, error) {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	v := s.rev + 1
	if v > s.revLimit {
		limit := s.rev + revBlock
		if err := s.writeRevision(limit); err != nil {
			return 0, fmt.Errorf("reserve versions: %w", err)
		}
		s.revLimit = limit
	}
	s.rev = v
	return v, nil
}

// replace makes data the durable contents of key's record file.
func (s *FileStore) replace(key string, data []byte, cur entry, exists bool) error {
	tmp, err := s.writeTemp(data)
	if err != nil {
		return err
	}
	spare, err := s.install(key, tmp, exists)
	if err != nil {
		return err
	}
	if err := s.sync(); err != nil {
		return err
	}
	if spare != "" {
		s.spares.put(spare, cur.size)
	}
	return nil
}

// install renames the temp file tmp over key's record file. The file it replaces, if
// any, is kept under the returned name to become a spare once the rename is durable.
func (s *FileStore) install(key, tmp string, exists bool) (spare string, err error) {
	path := filepath.Join(s.recDir, fileName(key))
	if exists && recycle && !s.noExchange.Load() && s.spares.reserveSlot() {
		// tmp and the record swap names: tmp then holds the old record, the spare.
		err := exchange(tmp, path)
		if err == nil {
			return tmp, nil
		}
		s.spares.unreserve()
		switch {
		case exchangeUnsupported(err):
			s.noExchange.Store(true)
			s.log.Info("store: the file system cannot exchange files in one rename; replacing records with a link and a rename", "dir", s.recDir, "err", err)
		case errors.Is(err, fs.ErrNotExist):
			// The record's file is gone (removed by hand?): the rename below puts it back.
		default:
			os.Remove(tmp)
			return "", err
		}
	}
	if exists && recycle {
		if spare = s.spares.reserve(); spare != "" {
			if os.Link(path, spare) != nil {
				s.spares.unreserve()
				spare = ""
			}
		}
	}
	if err := atomicfile.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		if spare != "" {
			os.Remove(spare)
			s.spares.unreserve()
		}
		return "", err
	}
	return spare, nil
}

// detach removes key's record file, keeping it under the returned name to become a
// spare once the removal is durable.
func (s *FileStore) detach(key string) (spare string, err error) {
	path := filepath.Join(s.recDir, fileName(key))
	if recycle {
		spare = s.spares.reserve()
	}
	if spare != "" {
		err = atomicfile.Rename(path, spare)
	} else {
		err = os.Remove(path)
	}
	if err != nil {
		if spare != "" {
			s.spares.unreserve()
		}
		return "", err
	}
	return spare, nil
}

// writeErr wraps err, the failure of a write that changed nothing, for op ("put KEY").
func (s *FileStore) writeErr(op string, err error) error {
	if isNoSpace(err) {
		err = &SpaceError{Dir: s.dir, Err: err}
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// writeTemp returns the name of a temp file in the records dir holding data durably:
// a spare of the same size overwritten in place, or else a new file.
func (s *FileStore) writeTemp(data []byte) (string, error) {
	if name := s.spares.get(len(data)); name != "" {
		if err := overwrite(name, data); err == nil {
			return name, nil
		}
		os.Remove(name)
	}
	return s.createTemp("new-*.tmp", data)
}

// createTemp returns the name of a new temp file in the records dir, named after
// pattern as os.CreateTemp does, holding data durably.
func (s *FileStore) createTemp(pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(s.recDir, pattern)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// sync makes the renames and removals done so far in the records dir durable. If that
// fails, nothing written since the last good sync is known to be on disk, so the store
// refuses writes from then on.
func (s *FileStore) sync() error {
	err := s.dirSync.sync()
	if err == nil {
		return nil
	}
	err = fmt.Errorf("sync %s: %w", s.recDir, err)
	s.mu.Lock()
	if s.err == nil {
		s.err = fmt.Errorf("store: a write could not be made durable (%w); restart to recover", err)
	}
	s.mu.Unlock()
	return err
}

// Close waits for writes in progress, closes every watch channel and releases the data
// dir. Closing a closed store does nothing.
func (s *FileStore) Close() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	failed := s.err != nil
	s.mu.Unlock()
	close(s.done)
	s.watchWG.Wait()

	s.spares.removeAll()
	var errs []error
	// Give back the unused reserved versions, so that the next Open continues from here.
	if s.rev < s.revLimit && !failed {
		if err := s.writeRevision(s.rev); err != nil {
			errs = append(errs, fmt.Errorf("store: close: %w", err))
		}
	}
	errs = append(errs, s.recFile.Close(), s.lockFile.Close())
	return errors.Join(errs...)
}
