package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// changeLogSize is how many device changes the hub remembers for
// GET /outpost/v1/changes: a client further behind is told to read
// everything again (reset).
const changeLogSize = 8192

// changeLog is the registry-wide change stream for operators (the TUI's
// fleet view): a ring of the ids of devices whose records (identity,
// modules, twins) changed, numbered by a sequence. A cursor is
// "EPOCH.SEQ"; EPOCH is random per hub process, so a cursor from before a
// restart (or from another replica) is answered with a reset.
type changeLog struct {
	epoch string

	mu   sync.Mutex
	seq  uint64   // number of the last change
	ring []string // ring[i % size] is the device of change i+1… (see at)
	wake chan struct{}
}

func newChangeLog() *changeLog {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &changeLog{epoch: hex.EncodeToString(b), ring: make([]string, changeLogSize), wake: make(chan struct{})}
}

// add records a change of deviceID and wakes the waiters.
func (c *changeLog) add(deviceID string) {
	c.mu.Lock()
	c.seq++
	c.ring[c.seq%changeLogSize] = deviceID
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

// run follows the store until ctx is done.
func (c *changeLog) run(ctx context.Context, st store.Store) {
	for ev := range st.Watch(ctx, "") {
		if id := deviceOfKey(ev.Record.Key); id != "" {
			c.add(id)
		}
	}
}

// current returns the cursor of now: following from it reports every change
// the log has not recorded yet (a read of the store after this call sees
// every change the log has recorded).
func (c *changeLog) current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursor(c.seq)
}

func (c *changeLog) cursor(seq uint64) string { return c.epoch + "." + strconv.FormatUint(seq, 10) }

// since returns what changed after cursor: the devices (each once, in the
// order of their last change), the new cursor, and whether the client must
// read everything again (an empty, foreign or too old cursor). wake is
// closed at the next change.
func (c *changeLog) since(cursor string) (devices []string, next string, reset bool, wake <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, wake = c.cursor(c.seq), c.wake
	epoch, s, ok := strings.Cut(cursor, ".")
	from, err := strconv.ParseUint(s, 10, 64)
	if !ok || err != nil || epoch != c.epoch || from > c.seq || c.seq-from > changeLogSize-1 {
		return nil, next, true, wake
	}
	seen := map[string]bool{}
	for i := c.seq; i > from; i-- {
		id := c.ring[i%changeLogSize]
		if !seen[id] {
			seen[id] = true
			devices = append(devices, id)
		}
	}
	for i, j := 0, len(devices)-1; i < j; i, j = i+1, j-1 {
		devices[i], devices[j] = devices[j], devices[i]
	}
	return devices, next, false, wake
}

// serveChanges serves GET /outpost/v1/changes?cursor=C&wait=D, a long poll for
// operators: the ids of the devices whose identity, modules or twins
// changed since cursor C. Without a cursor (or with one the hub cannot
// answer from its memory) it answers at once with reset: the client reads
// what it shows again, then follows from the cursor given. With wait it
// answers when something changed, or after D (at most hubapi.MaxWait)
// with no devices.
func (h *Hub) serveChanges(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryRead); err != nil {
		return err
	}
	q := r.URL.Query()
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		var err error
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "wait=%q: want a duration such as 30s", s)
		}
		wait = min(wait, hubapi.MaxWait)
	}
	cursor := q.Get("cursor")
	var timeout <-chan time.Time
	for {
		devices, next, reset, wake := h.changes.since(cursor)
		if reset || len(devices) > 0 || wait == 0 {
			writeJSON(w, http.StatusOK, hubapi.Changes{Cursor: next, Reset: reset, Devices: devices})
			return nil
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-wake:
		case <-timeout:
			writeJSON(w, http.StatusOK, hubapi.Changes{Cursor: next, Devices: []string{}})
			return nil
		case <-r.Context().Done():
			return errorf(http.StatusServiceUnavailable, "ServerBusy", "the hub is shutting down: ask again")
		}
	}
}
