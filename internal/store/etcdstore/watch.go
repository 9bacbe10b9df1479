package etcdstore

import (
	"context"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch returns the changes to records under prefix made after Watch returns, in
// revision order (etcd's commit order, for all keys). The channel is closed when ctx
// is done or the store is closed.
//
// The watch starts at the revision etcd has when Watch is called. If etcd's watch
// breaks (a member lost, no leader), it is started again from the revision after the
// last event, so no change is skipped. Only if etcd compacted its history past that
// revision meanwhile are changes lost from history: the watch then lists the prefix
// and sends a Put for every record written after the last event (deletions in the
// gap cannot be told; the hub reads current records, not history, so it is not
// misled by that).
//
// Like the file store's, a watcher that falls behind never slows writers: etcd's
// client queues its events in memory.
func (s *Store) Watch(ctx context.Context, prefix string) <-chan store.Event {
	out := make(chan store.Event)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		close(out)
		return out
	}
	s.watchWG.Add(1)
	s.mu.RUnlock()
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	rev := s.currentRevision(wctx)
	go func() {
		defer s.watchWG.Done()
		defer close(out)
		defer stop()
		defer cancel()
		s.follow(wctx, prefix, rev, out)
	}()
	return out
}

// currentRevision is etcd's revision now, or 0 if etcd does not answer (the watch
// then starts from whatever etcd has when it answers).
func (s *Store) currentRevision(ctx context.Context) int64 {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+"\x00", clientv3.WithKeysOnly())
	if err != nil {
		s.log.Warn("etcd store: watch: could not read the current revision; watching from when etcd answers", "err", err)
		return 0
	}
	return resp.Header.Revision
}

// follow sends the events of prefix after revision rev to out until ctx is done.
func (s *Store) follow(ctx context.Context, prefix string, rev int64, out chan<- store.Event) {
	key := s.prefix + prefix
	for ctx.Err() == nil {
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev+1))
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range s.cli.Watch(wctx, key, opts...) {
			if resp.CompactRevision > 0 {
				s.log.Warn("etcd store: watch: etcd compacted the history this watch needed; resending the records written since",
					"prefix", prefix, "from", rev+1, "compacted", resp.CompactRevision)
				var ok bool
				if rev, ok = s.resend(ctx, prefix, rev, out); !ok {
					cancel()
					return
				}
				break
			}
			if err := resp.Err(); err != nil {
				s.log.Debug("etcd store: watch broke; starting it again", "prefix", prefix, "err", err)
				break
			}
			for _, ev := range resp.Events {
				e := store.Event{Type: store.Put, Record: s.record(ev.Kv)}
				if ev.Type == clientv3.EventTypeDelete {
					e = store.Event{Type: store.Delete, Record: store.Record{Key: e.Record.Key}}
					if ev.PrevKv != nil {
						e.Record.Version = ev.PrevKv.ModRevision
					}
				}
				select {
				case out <- e:
				case <-ctx.Done():
					cancel()
					return
				}
				rev = ev.Kv.ModRevision
			}
		}
		cancel()
		if rev == 0 {
			rev = s.currentRevision(ctx)
		}
		select { // the watch broke: give etcd a moment before watching again
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// resend sends a Put for each record under prefix written after rev, and returns the
// revision of the listing, from which the watch goes on.
func (s *Store) resend(ctx context.Context, prefix string, rev int64, out chan<- store.Event) (int64, bool) {
	for ctx.Err() == nil {
		recs, at, err := s.listAt(prefix, "")
		if err != nil {
			s.log.Warn("etcd store: watch: list after compaction failed; retrying", "prefix", prefix, "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		for _, r := range recs {
			if r.Version <= rev {
				continue
			}
			select {
			case out <- store.Event{Type: store.Put, Record: r}:
			case <-ctx.Done():
				return 0, false
			}
		}
		return at, true
	}
	return 0, false
}

// listAt lists the records under prefix after `after` and returns the revision of
// the listing.
func (s *Store) listAt(prefix, after string) ([]store.Record, int64, error) {
	var all []store.Record
	rev := int64(0)
	for {
		recs, r, err := s.rangeAt(prefix, after, listPage, rev, false)
		if err != nil {
			return nil, 0, err
		}
		all = append(all, recs...)
		rev = r
		if len(recs) < listPage {
			return all, rev, nil
		}
		after = recs[len(recs)-1].Key
	}
}
