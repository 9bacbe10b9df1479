package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/dirlock"
)

// Open opens the store in dir, creating dir (mode 0700) if needed, and locks it: a second
// Open of the same dir, from this process or another, fails with ErrLocked until Close.
// Open removes temp files left by a crash and loads every record; it fails, naming the
// file, if a record file is damaged.
func Open(dir string, opts ...Option) (*FileStore, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	lf, err := lock(dir)
	if err != nil {
		return nil, err
	}
	s := &FileStore{
		dir:      dir,
		recDir:   filepath.Join(dir, recordsName),
		log:      o.log,
		lockFile: lf,
		watchers: make(map[*watcher]struct{}),
		done:     make(chan struct{}),
	}
	s.spares.dir = s.recDir
	if err := s.load(); err != nil {
		if s.recFile != nil {
			s.recFile.Close()
		}
		lf.Close()
		return nil, err
	}
	s.dirSync = newGroupSync(s.recFile)
	return s, nil
}

// lock takes the data dir's LOCK file and writes our pid in it.
func lock(dir string) (*os.File, error) {
	f, err := dirlock.Lock(filepath.Join(dir, lockName))
	var busy *dirlock.BusyError
	if errors.As(err, &busy) {
		return nil, wrapf(ErrLocked, "data dir %s is in use by %s (another outpost running?)", dir, busy.Holder)
	}
	if err != nil {
		return nil, fmt.Errorf("store: lock data dir: %w", err)
	}
	return f, nil
}

// load cleans up after a crash and builds the index.
func (s *FileStore) load() error {
	if err := removeTemps(s.dir); err != nil {
		return err
	}
	rev, err := readRevision(filepath.Join(s.dir, revisionName))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.recDir, 0o700); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	if s.recFile, err = os.Open(s.recDir); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	names, err := s.cleanRecordsDir()
	if err != nil {
		return err
	}
	loaded, err := loadRecords(s.recFile, s.recDir, names)
	if err != nil {
		return err
	}
	s.index = make(map[string]entry, len(loaded))
	keys := make([]string, 0, len(loaded))
	for _, r := range loaded {
		s.index[r.key] = r.entry
		keys = append(keys, r.key)
		rev = max(rev, r.version)
	}
	slices.Sort(keys)
	s.keys = newKeyList(keys)
	s.rev = rev
	s.revLimit = 0 // reserve a block with the first write
	return nil
}

// cleanRecordsDir removes the temp files of unfinished writes, finishes the Txns that
// committed, and returns the names of the record files.
func (s *FileStore) cleanRecordsDir() ([]string, error) {
	for pass := 0; ; pass++ {
		d, err := os.Open(s.recDir)
		if err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
		var names, journals []string
		removed := 0
		for _, e := range ents {
			name := e.Name()
			switch {
			case !e.Type().IsRegular():
			case strings.HasSuffix(name, ".tmp"):
				if err := os.Remove(filepath.Join(s.recDir, name)); err != nil {
					return nil, fmt.Errorf("store: open: remove unfinished write: %w", err)
				}
				removed++
			case strings.HasSuffix(name, journalExt):
				journals = append(journals, name)
			case strings.HasSuffix(name, ".json"):
				names = append(names, name)
			}
		}
		if removed > 0 {
			s.log.Info("store: removed unfinished writes", "dir", s.recDir, "files", removed)
		}
		if len(journals) == 0 || pass > 0 {
			return names, nil
		}
		n, err := s.replayJournals(journals)
		if err != nil {
			return nil, err
		}
		s.log.Info("store: finished transactions interrupted by a crash", "dir", s.recDir, "transactions", n)
	}
}

// removeTemps removes the temp files of REVISION writes (and those of older versions).
func removeTemps(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, "."+revisionName+atomicfile.Marker+"*"))
	if err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, revisionName+".*.tmp"))
	if err != nil {
		return err
	}
	for _, name := range append(names, old...) {
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("store: open: remove unfinished write: %w", err)
		}
	}
	return nil
}

type revisionFile struct {
	Format   int   `json:"format"`
	Revision int64 `json:"revision"`
}

func readRevision(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: open: %w", err)
	}
	var r revisionFile
	if err := json.Unmarshal(b, &r); err != nil || r.Revision < 0 {
		return 0, fmt.Errorf("store: %s is damaged (%q): if you know the highest version in the store, "+
			`write {"format":1,"revision":N} there with N above it`, path, b)
	}
	if r.Format != 1 {
		return 0, fmt.Errorf("store: %s has format %d, from a newer outpost: upgrade outpost", path, r.Format)
	}
	return r.Revision, nil
}

func (s *FileStore) writeRevision(rev int64) error {
	b, _ := json.Marshal(revisionFile{Format: 1, Revision: rev})
	return atomicfile.WriteFile(filepath.Join(s.dir, revisionName), append(b, '\n'), 0o600)
}

type loaded struct {
	key string
	entry
}

// loadRecords reads the named record files of dir (open as dirFile) in parallel.
func loadRecords(dirFile *os.File, dir string, names []string) ([]loaded, error) {
	recs := make([]loaded, len(names))
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(len(names), 2*runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			buf := make([]byte, 0, 64<<10)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(names) {
					return
				}
				var err error
				if recs[i], buf, err = loadRecord(dirFile, dir, names[i], buf); err != nil {
					errOnce.Do(func() { firstErr = err })
					next.Store(int64(len(names)))
					return
				}
			}
		})
	}
	wg.Wait()
	return recs, firstErr
}

func loadRecord(dirFile *os.File, dir, name string, buf []byte) (loaded, []byte, error) {
	buf, err := readFileAt(dirFile, dir, name, buf)
	if err != nil {
		return loaded{}, buf, fmt.Errorf("store: open: %w", err)
	}
	key, version, value, err := parseRecord(buf)
	if err == nil {
		var nameBuf [maxNameLen + len(".json")]byte
		if err = checkKey(key); err == nil && string(appendFileName(nameBuf[:0], key)) != name {
			err = fmt.Errorf("it holds key %s, whose file is %s", key, fileName(key))
		}
	}
	if err != nil {
		return loaded{}, buf, fmt.Errorf("store: record file %s is damaged: %v. Records are written atomically, "+
			"so something outside outpost changed it (disk fault, manual edit): restore it from a backup, "+
			"or move it out of %s to go on without that record", filepath.Join(dir, name), err, dir)
	}
	return loaded{key, entry{version: version, value: bytes.Clone(value), size: len(buf)}}, buf, nil
}
