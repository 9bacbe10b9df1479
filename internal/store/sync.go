package store

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// groupSync makes renames in one directory durable with as few directory fsyncs as
// possible: a writer that needs a sync while another one runs waits for it to end and then
// shares the next one with every writer that arrived meanwhile.
type groupSync struct {
	dir *os.File

	mu      sync.Mutex
	cond    sync.Cond
	issued  uint64 // tickets handed out
	done    uint64 // every ticket <= done is durable
	running bool
	err     error // sticky: after a failed fsync nothing is known to be durable
}

func newGroupSync(dir *os.File) *groupSync {
	g := &groupSync{dir: dir}
	g.cond.L = &g.mu
	return g
}

// sync returns once every change made to the directory before the call is durable.
func (g *groupSync) sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.issued++
	ticket := g.issued
	for g.done < ticket && g.err == nil {
		if g.running {
			g.cond.Wait()
			continue
		}
		// Lead a sync covering every ticket issued so far: each was taken after its
		// writer's change.
		g.running = true
		target := g.issued
		g.mu.Unlock()
		err := syncDir(g.dir)
		g.mu.Lock()
		g.running = false
		if err != nil {
			g.err = err
		} else {
			g.done = target
		}
		g.cond.Broadcast()
	}
	if g.done >= ticket {
		return nil
	}
	return g.err
}

// spares keeps files that held records until their record was replaced or deleted. Their
// blocks are allocated and written, so overwriting one with data of the same size and
// fdatasync-ing it flushes data only, where a new file would cost a journal commit too.
// A file becomes a spare only once the rename that detached it from its key is durable;
// before that a crash could bring the old record back. Spares are temp files (*.tmp): Open
// removes those left over, never reuses them.
type spares struct {
	dir string

	mu   sync.Mutex
	free map[int][]string // by size
	n    int              // files in free, plus names reserved
	seq  int
}

// maxSpares bounds the spares kept. Every write in flight holds one from its
// rename until its directory sync, so it is above the writers a hub has at
// once (with 64, 256 concurrent PATCHes ran out and created new files, each
// a journal commit), and enough for a Txn of 1,000 records (a hub applying
// an upload for 1,000 leaf devices) to find a spare for each (with 64, 936
// of them were new files, whose creation in the flat records dir was most of
// the CPU of such a Txn).
const maxSpares = 1024

// reserve returns a fresh name for a future spare, or "" if there are enough of them.
func (s *spares) reserve() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= maxSpares {
		return ""
	}
	s.n++
	s.seq++
	return filepath.Join(s.dir, "spare-"+strconv.Itoa(s.seq)+".tmp")
}

// reserveSlot counts a spare to come whose name the caller has, and reports false
// if there are enough of them.
func (s *spares) reserveSlot() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= maxSpares {
		return false
	}
	s.n++
	return true
}

// unreserve gives back a name from reserve (or a slot from reserveSlot) that will not be
// used.
func (s *spares) unreserve() {
	s.mu.Lock()
	s.n--
	s.mu.Unlock()
}

// put adds the file name, with a reserved name, holding size bytes.
func (s *spares) put(name string, size int) {
	s.mu.Lock()
	if s.free == nil {
		s.free = make(map[int][]string)
	}
	s.free[size] = append(s.free[size], name)
	s.mu.Unlock()
}

// get takes a spare of size bytes, or returns "" if there is none.
func (s *spares) get(size int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := s.free[size]
	if len(names) == 0 {
		return ""
	}
	name := names[len(names)-1]
	s.free[size] = names[:len(names)-1]
	s.n--
	return name
}

// removeAll deletes every spare file.
func (s *spares) removeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for size, names := range s.free {
		for _, name := range names {
			os.Remove(name)
		}
		s.n -= len(names)
		delete(s.free, size)
	}
}
