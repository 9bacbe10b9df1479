package hub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Readiness (/readyz, the status) is probed in the background, not on the
// request: a /readyz that asked the store and gave it 2 s failed on a
// replica that was only busy (10,000 devices connecting at once on 2 cores),
// and HAProxy then refused every new connection for half a minute. The hub
// now probes its store once a second and /readyz answers at once from the
// probes:
//
//   - a probe that failed outright (etcd refused, no leader, the file store's
//     records directory not writable) makes the hub not ready at once;
//   - a probe that ran out of time (etcd's request timeout: no quorum, or a
//     hub or etcd too busy to answer in time) makes it not ready once no
//     probe has succeeded for probeStale: etcd without a quorum is noticed
//     within that, a busy hub whose probes answer late is not marked down;
//   - a probe still running after probeStale (a store that hangs) makes it
//     not ready too.
const (
	probeEvery = time.Second
	probeStale = 10 * time.Second
)

// readiness holds what the probes found.
type readiness struct {
	once  sync.Once
	first chan struct{} // closed when the first probe ends

	mu      sync.Mutex
	stop    context.CancelFunc
	err     error     // the last probe's error
	lastOK  time.Time // when a probe last succeeded
	running time.Time // when the probe under way began; zero when none is
}

// probeStore asks the store for a record, as a request would, and on the
// file store checks that its records directory takes a new file: a data
// dir remounted read-only or on a failed disk still answers reads from
// memory. (A full disk is not a reason: the hub serves reads there, and
// creating an empty file needs no free blocks.)
func (h *Hub) probeStore() error {
	if _, err := h.st.Get(ownerPolicyKey); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if h.cfg.Store != nil {
		return nil
	}
	dir := filepath.Join(h.cfg.DataDir, storeDirName, "records")
	f, err := os.CreateTemp(dir, "readyz-*.tmp") // a *.tmp the store removes when it opens, if a kill -9 left it
	if err != nil {
		return fmt.Errorf("the file store's records directory %s takes no new file (%v): check the data dir's disk and its mount", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// startProbes starts probing the store, once (the first /readyz or status
// asks); Close stops it.
func (h *Hub) startProbes() *readiness {
	r := &h.readiness
	r.once.Do(func() {
		r.first = make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		r.mu.Lock()
		r.stop = cancel
		r.mu.Unlock()
		go r.run(ctx, h.probeStore)
	})
	return r
}

// stopProbes ends the probes, if they were started.
func (r *readiness) stopProbes() {
	r.mu.Lock()
	stop := r.stop
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (r *readiness) run(ctx context.Context, probe func() error) {
	t := time.NewTimer(0)
	defer t.Stop()
	for first := true; ; first = false {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		r.running = time.Now()
		r.mu.Unlock()
		err := probe()
		r.mu.Lock()
		r.running, r.err = time.Time{}, err
		if err == nil {
			r.lastOK = time.Now()
		}
		r.mu.Unlock()
		if first {
			close(r.first)
		}
		t.Reset(probeEvery)
	}
}

// state says why the hub is not ready, nil when it is. Before the first
// probe ends it waits for it (or for ctx).
func (r *readiness) state(ctx context.Context) error {
	select {
	case <-r.first:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.running.IsZero() && now.Sub(r.running) > probeStale {
		return fmt.Errorf("the store has not answered for %s", now.Sub(r.running).Round(time.Second))
	}
	if r.err == nil {
		return nil
	}
	if timedOut(r.err) && !r.lastOK.IsZero() && now.Sub(r.lastOK) <= probeStale {
		return nil // slow, not down (yet): see probeStale
	}
	return r.err
}

// timedOut reports whether err is a store request that ran out of time.
func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded ||
		errors.Is(err, os.ErrDeadlineExceeded)
}
