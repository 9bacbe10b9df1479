package mgmt

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// EventBuffer is how many events a subscriber of GET /events may be behind
// before it is dropped.
const EventBuffer = 256

// outboxEvery is the least time between two reads of the outbox (each reads
// all of it): a burst of reported patches costs one read, not one each.
const outboxEvery = 100 * time.Millisecond

// eventWriteTimeout is how long a client of GET /events may take to accept
// one line before the daemon gives it up.
const eventWriteTimeout = 30 * time.Second

// Events holds the daemon's state as GET /events shows it (modules, link,
// outbox) and sends each change to its subscribers. Publishing never waits
// for a subscriber: one more than its buffer behind is dropped.
type Events struct {
	now    func() time.Time
	buffer int

	mu      sync.Mutex
	modules map[string]mgmtclient.Module
	link    mgmtclient.Link
	outbox  mgmtclient.Outbox
	msgs    *mgmtclient.MessageQueue
	subs    map[*Subscription]struct{}
}

// NewEvents returns an empty state whose subscribers may be buffer events
// behind.
func NewEvents(buffer int, now func() time.Time) *Events {
	if now == nil {
		now = time.Now
	}
	return &Events{now: now, buffer: buffer, modules: map[string]mgmtclient.Module{}, subs: map[*Subscription]struct{}{}}
}

// Subscription is one subscriber's changes.
type Subscription struct {
	e  *Events
	ch chan mgmtclient.Event
	// dropped is set (under e.mu) when the subscriber fell behind.
	dropped bool
	closed  bool
}

// C delivers the changes; it is closed when the subscriber is dropped or
// closed.
func (s *Subscription) C() <-chan mgmtclient.Event { return s.ch }

// Dropped reports whether the subscriber was dropped for falling behind.
func (s *Subscription) Dropped() bool {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	return s.dropped
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	s.e.remove(s)
}

// remove ends s; the caller holds e.mu.
func (e *Events) remove(s *Subscription) {
	if !s.closed {
		s.closed = true
		delete(e.subs, s)
		close(s.ch)
	}
}

// Subscribe returns the current state as a snapshot event and the changes
// from it on.
func (e *Events) Subscribe() (mgmtclient.Event, *Subscription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &Subscription{e: e, ch: make(chan mgmtclient.Event, e.buffer)}
	e.subs[s] = struct{}{}
	mods := make([]mgmtclient.Module, 0, len(e.modules))
	for _, m := range e.modules {
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Name < mods[j].Name })
	link, outbox := e.link, e.outbox
	var msgs *mgmtclient.MessageQueue
	if e.msgs != nil {
		q := *e.msgs
		msgs = &q
	}
	return mgmtclient.Event{Type: mgmtclient.EventSnapshot, Time: e.now().UTC(), Modules: mods, Link: &link, Outbox: &outbox, Messages: msgs}, s
}

// publish sends ev to every subscriber; the caller holds e.mu.
func (e *Events) publish(ev mgmtclient.Event) {
	ev.Time = e.now().UTC()
	for s := range e.subs {
		select {
		case s.ch <- ev:
		default:
			s.dropped = true
			e.remove(s)
		}
	}
}

// SetModules records the modules' status and publishes what changed: a
// module event for each module added or changed, a moduleRemoved for each
// gone.
func (e *Events) SetModules(mods []mgmtclient.Module) {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := make(map[string]bool, len(mods))
	for _, m := range mods {
		seen[m.Name] = true
		if old, ok := e.modules[m.Name]; ok && reflect.DeepEqual(old, m) {
			continue
		}
		e.modules[m.Name] = m
		e.publish(mgmtclient.Event{Type: mgmtclient.EventModule, Module: &m})
	}
	gone := []string{}
	for name := range e.modules {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		delete(e.modules, name)
		e.publish(mgmtclient.Event{Type: mgmtclient.EventModuleRemoved, Name: name})
	}
}

// SetLink records the link and publishes it if it changed.
func (e *Events) SetLink(l mgmtclient.Link) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.Connected == e.link.Connected && l.Since.Equal(e.link.Since) && l.LastSync.Equal(e.link.LastSync) &&
		l.LastError == e.link.LastError && l.LastErrorAt.Equal(e.link.LastErrorAt) {
		return
	}
	e.link = l
	e.publish(mgmtclient.Event{Type: mgmtclient.EventLink, Link: &l})
}

// SetOutbox records the outbox and publishes it if it changed.
func (e *Events) SetOutbox(o mgmtclient.Outbox) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if o.Patches == e.outbox.Patches && o.Bytes == e.outbox.Bytes && o.Oldest.Equal(e.outbox.Oldest) {
		return
	}
	e.outbox = o
	e.publish(mgmtclient.Event{Type: mgmtclient.EventOutbox, Outbox: &o})
}

// SetMessages records the message queue and publishes it if it changed.
func (e *Events) SetMessages(q mgmtclient.MessageQueue) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.msgs != nil && sameQueue(*e.msgs, q) {
		return
	}
	e.msgs = &q
	e.publish(mgmtclient.Event{Type: mgmtclient.EventMessages, Messages: &q})
}

func sameQueue(a, b mgmtclient.MessageQueue) bool {
	same := func(x, y mgmtclient.QueueStats) bool {
		return x.Count == y.Count && x.Bytes == y.Bytes && x.Oldest.Equal(y.Oldest) && x.Expired == y.Expired && x.Refused == y.Refused
	}
	return same(a.Upstream, b.Upstream) && same(a.Inputs, b.Inputs) && a.RoutesError == b.RoutesError
}

// messagesEvery is how often the message queue's counts are read for
// GET /events: they are in memory, but change with every message, so a
// burst costs one event a second, not one a message.
const messagesEvery = time.Second

// updateModules reads the agent's modules into s.ev.
func (s *Server) updateModules() {
	ms := s.agent.Modules()
	out := make([]mgmtclient.Module, 0, len(ms))
	for _, m := range ms {
		out = append(out, Module(m))
	}
	s.ev.SetModules(out)
}

// updateSync reads the syncer's link and outbox into s.ev.
func (s *Server) updateSync() {
	sy := s.agent.Syncer()
	l := sy.Link()
	s.ev.SetLink(mgmtclient.Link{Connected: l.Connected, Since: l.Since, LastSync: l.LastSync,
		LastError: l.LastError, LastErrorAt: l.LastErrorAt})
	ob, err := sy.Outbox()
	if err != nil {
		s.log.Warn("events: read the outbox", "err", err)
		return
	}
	s.ev.SetOutbox(mgmtclient.Outbox{Patches: ob.Patches, Bytes: ob.Bytes, Oldest: ob.Oldest})
}

// track keeps s.ev current until ctx is done: it reads the agent's and the
// syncer's status once, then again each time they say it changed.
func (s *Server) track(ctx context.Context, wg *sync.WaitGroup) {
	s.updateModules()
	s.updateSync()
	wg.Go(func() {
		for {
			c := s.agent.StatusChanged()
			s.updateModules()
			select {
			case <-ctx.Done():
				return
			case <-c:
			}
		}
	})
	if s.msgs != nil {
		s.ev.SetMessages(s.msgs())
		wg.Go(func() {
			t := time.NewTicker(messagesEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s.ev.SetMessages(s.msgs())
				}
			}
		})
	}
	wg.Go(func() {
		sy := s.agent.Syncer()
		for {
			c := sy.StatusChanged()
			s.updateSync()
			select {
			case <-ctx.Done():
				return
			case <-c:
			}
			t := time.NewTimer(outboxEvery)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	})
}

// events serves GET /events: the snapshot, then each change, one JSON
// object a line, flushed each.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	snap, sub := s.ev.Subscribe()
	defer sub.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	send := func(ev mgmtclient.Event) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if err := enc.Encode(ev); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(snap) {
		return
	}
	for {
		select {
		case ev, ok := <-sub.C():
			if !ok {
				if sub.Dropped() {
					send(mgmtclient.Event{Type: mgmtclient.EventError, Time: s.now().UTC(),
						Error: fmt.Sprintf("this client fell more than %d events behind and was dropped: read the stream as it comes, then watch again (the first line is a fresh snapshot)", s.ev.buffer)})
				}
				return
			}
			if !send(ev) {
				return
			}
		case <-r.Context().Done(): // the client left, or the daemon stops
			select {
			case <-s.stopping:
				send(mgmtclient.Event{Type: mgmtclient.EventError, Time: s.now().UTC(), Error: "the daemon is stopping"})
			default:
			}
			return
		}
	}
}
