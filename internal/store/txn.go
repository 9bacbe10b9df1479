package store

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// A Txn of more than one write goes through a journal, records/txn-V.journal (V its
// version): the new records and the keys to delete, written to a temp file, fsynced and
// renamed into place before any record file changes. The durable rename is the commit
// point: Open replays a journal it finds (rewrites its records, removes its deletes) and
// removes it, so a crash leaves all of a Txn or none. Txn removes the journal, durably,
// before it returns and before any other write to its keys.
const journalExt = ".journal"

// journal is the contents of a journal file, followed by a line with the crc32c (hex)
// of the JSON document.
type journal struct {
	Format  int          `json:"format"`
	Version int64        `json:"v"`
	Puts    []journalPut `json:"puts,omitempty"`
	Deletes []string     `json:"deletes,omitempty"`
}

type journalPut struct {
	Key   string `json:"key"`
	Value []byte `json:"value"` // base64, so that the value comes back byte for byte
}

// txnWriters is how many temp files a Txn writes at once.
const txnWriters = 32

// Txn applies ops all or none; see Store.Txn.
func (s *FileStore) Txn(ops ...Op) (int64, error) {
	keys, err := CheckOps(ops)
	if err != nil {
		return 0, err
	}
	s.opMu.RLock()
	defer s.opMu.RUnlock()
	if err := s.writable(); err != nil {
		return 0, err
	}
	for _, k := range keys { // in order, so that Txns sharing keys cannot deadlock
		defer s.lockKey(k)()
	}

	// Check every expected version, and leave out deletes of what does not exist.
	type write struct {
		Op
		cur    entry
		exists bool
		data   []byte // the record file, for a put
		tmp    string // the temp file holding data
		spare  string // the old file, kept as a spare
	}
	ws := make([]write, 0, len(ops))
	s.mu.RLock()
	for _, op := range ops {
		cur, exists := s.index[op.Key]
		if err := checkExpect(op.Key, op.Expect, cur.version, exists); err != nil {
			s.mu.RUnlock()
			return 0, err
		}
		if op.Check || op.Delete && !exists {
			continue
		}
		ws = append(ws, write{Op: op, cur: cur, exists: exists})
	}
	s.mu.RUnlock()
	if len(ws) == 0 {
		return 0, nil
	}
	version, err := s.nextVersion()
	if err != nil {
		return 0, s.writeErr("txn", err)
	}

	// All data is written before the commit point, so that running out of space there
	// changes nothing.
	removeTemps := func() {
		for _, w := range ws {
			if w.tmp != "" {
				os.Remove(w.tmp)
			}
		}
	}
	j := journal{Format: 1, Version: version}
	for i := range ws {
		w := &ws[i]
		if w.Delete {
			j.Deletes = append(j.Deletes, w.Key)
			continue
		}
		w.Value = bytes.Clone(w.Value)
		w.data = encodeRecord(w.Key, version, w.Value)
		j.Puts = append(j.Puts, journalPut{Key: w.Key, Value: w.Value})
	}
	// The temp files are written and fsynced concurrently, so that their
	// fsyncs share journal commits: one after the other, a Txn of 1,000
	// records (a hub applying a device's upload for 1,000 leaf devices)
	// took 1,000 fsyncs' time, 1 – 5 s on a loaded machine.
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	sem := make(chan struct{}, txnWriters)
	for i := range ws {
		w := &ws[i]
		if w.Delete {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if w.tmp, errs[i] = s.writeTemp(w.data); errs[i] != nil {
				errs[i] = s.writeErr("txn: put "+w.Key, errs[i])
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			removeTemps()
			return 0, err
		}
	}
	var jpath string
	if len(ws) > 1 {
		if jpath, err = s.writeJournal(j); err != nil {
			removeTemps()
			return 0, s.writeErr("txn", err)
		}
		if err := s.sync(); err != nil {
			removeTemps()
			return 0, fmt.Errorf("store: txn: %w", err)
		}
	}

	// Committed: apply. A failure from here on leaves the Txn for Open to finish.
	for i := range ws {
		w := &ws[i]
		if w.Delete {
			w.spare, err = s.detach(w.Key)
		} else {
			w.spare, err = s.install(w.Key, w.tmp, w.exists)
			w.tmp = ""
		}
		if err != nil {
			removeTemps()
			if jpath == "" {
				return 0, s.writeErr("txn", err)
			}
			return 0, s.fail(fmt.Errorf("txn %s: %w", filepath.Base(jpath), err))
		}
	}
	if err := s.sync(); err != nil {
		return 0, fmt.Errorf("store: txn: %w", err)
	}
	if jpath != "" {
		if err := os.Remove(jpath); err != nil {
			return 0, s.fail(fmt.Errorf("txn: remove %s: %w", jpath, err))
		}
		if err := s.sync(); err != nil {
			return 0, fmt.Errorf("store: txn: %w", err)
		}
	}
	for _, w := range ws {
		if w.spare != "" {
			s.spares.put(w.spare, w.cur.size)
		}
	}
	s.mu.Lock()
	for _, w := range ws {
		if w.Delete {
			delete(s.index, w.Key)
			s.keys.remove(w.Key)
			s.publish(Event{Type: Delete, Record: Record{Key: w.Key, Version: w.cur.version}})
			continue
		}
		s.index[w.Key] = entry{version: version, value: w.Value, size: len(w.data)}
		if !w.exists {
			s.keys.insert(w.Key)
		}
		s.publish(Event{Type: Put, Record: Record{Key: w.Key, Version: version, Value: w.Value}})
	}
	s.mu.Unlock()
	return version, nil
}

// fail makes the store refuse writes until it is opened again, for a Txn that committed
// but could not be applied: Open finishes it.
func (s *FileStore) fail(err error) error {
	err = fmt.Errorf("store: %w; the store refuses writes until it is opened again, which finishes the write", err)
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	return err
}

// writeJournal writes j durably under a temp name and renames it to its journal name;
// the caller syncs the directory.
func (s *FileStore) writeJournal(j journal) (string, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return "", err
	}
	b = append(b, '\n')
	b = append(b, fmt.Sprintf("%08X\n", crc32.Checksum(b, castagnoli))...)
	tmp, err := s.createTemp("txn-*.tmp", b)
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.recDir, "txn-"+strconv.FormatInt(j.Version, 10)+journalExt)
	if err := atomicfile.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return path, nil
}

// readJournal reads and checks a journal file.
func readJournal(path string) (journal, error) {
	var j journal
	b, err := os.ReadFile(path)
	if err != nil {
		return j, err
	}
	body, sum, ok := bytes.Cut(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if !ok {
		return j, errors.New("it is truncated")
	}
	want, err := strconv.ParseUint(string(sum), 16, 32)
	if err != nil || uint32(want) != crc32.Checksum(append(body, '\n'), castagnoli) {
		return j, errors.New("checksum mismatch")
	}
	if err := json.Unmarshal(body, &j); err != nil {
		return j, err
	}
	if j.Format != 1 {
		return j, fmt.Errorf("format %d, from a newer outpost", j.Format)
	}
	for _, p := range j.Puts {
		if err := checkKey(p.Key); err != nil || !json.Valid(p.Value) {
			return j, fmt.Errorf("bad put of %q", p.Key)
		}
	}
	for _, k := range j.Deletes {
		if err := checkKey(k); err != nil {
			return j, fmt.Errorf("bad delete of %q", k)
		}
	}
	return j, nil
}

// replayJournals finishes the Txns that committed before a crash, in the order of their
// versions, and returns how many there were.
func (s *FileStore) replayJournals(names []string) (int, error) {
	version := func(name string) int64 {
		v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, "txn-"), journalExt), 10, 64)
		return v
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(version(a), version(b)) })
	for _, name := range names {
		path := filepath.Join(s.recDir, name)
		j, err := readJournal(path)
		if err != nil {
			return 0, fmt.Errorf("store: transaction journal %s is damaged: %v. Journals are written atomically, "+
				"so something outside outpost changed it: restore it from a backup, or move it out of %s "+
				"(the transaction may then be left half done)", path, err, s.recDir)
		}
		for _, p := range j.Puts {
			if err := s.writeRecordFile(p.Key, encodeRecord(p.Key, j.Version, p.Value)); err != nil {
				return 0, fmt.Errorf("store: open: finish transaction %s: %w", name, err)
			}
		}
		for _, k := range j.Deletes {
			if err := os.Remove(filepath.Join(s.recDir, fileName(k))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return 0, fmt.Errorf("store: open: finish transaction %s: %w", name, err)
			}
		}
		if err := syncDir(s.recFile); err != nil {
			return 0, fmt.Errorf("store: open: %w", err)
		}
		if err := os.Remove(path); err != nil {
			return 0, fmt.Errorf("store: open: %w", err)
		}
		if err := syncDir(s.recFile); err != nil {
			return 0, fmt.Errorf("store: open: %w", err)
		}
	}
	return len(names), nil
}

// writeRecordFile replaces key's record file with data, through a temp file; the caller
// syncs the directory.
func (s *FileStore) writeRecordFile(key string, data []byte) error {
	tmp, err := s.writeTemp(data)
	if err != nil {
		return err
	}
	if err := atomicfile.Rename(tmp, filepath.Join(s.recDir, fileName(key))); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
