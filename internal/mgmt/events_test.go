package mgmt_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/mgmt"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// waitEvent reads events until one satisfies ok, and returns it. The
// stream ending first, or nothing fitting for a minute (a hang, not a
// measure), fails the test.
func waitEvent(t *testing.T, ch <-chan mgmtclient.Event, what string, ok func(mgmtclient.Event) bool) mgmtclient.Event {
	t.Helper()
	hang := time.NewTimer(time.Minute)
	defer hang.Stop()
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("waiting for %s: the event stream ended", what)
			}
			if ev.Type == mgmtclient.EventError {
				t.Fatalf("waiting for %s: error event: %s", what, ev.Error)
			}
			if ok(ev) {
				return ev
			}
		case <-hang.C:
			t.Fatalf("waiting for %s: no such event", what)
		}
	}
}

func TestEventsStream(t *testing.T) {
	f := agenttest.New(t, runtime.KindProcess)
	f.Deploy(t, map[string]any{"m1": map[string]any{"image": f.Image}})
	r := f.Start(t, func(c *agent.Config) { c.BackoffBase = time.Hour })
	c, stop := serveStoppable(t, r)
	ctx := t.Context()

	var m1 mgmtclient.Module
	agenttest.Eventually(t, 20*time.Second, "m1 running, the hub connected", func() bool {
		mods, err := c.Modules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(mods) == 1 {
			m1 = mods[0]
		}
		return m1.Status == "running" && st.Connected
	})

	ch, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The first line is the state as it is.
	snap := <-ch
	if snap.Type != mgmtclient.EventSnapshot || len(snap.Modules) != 1 || snap.Modules[0].Name != "m1" ||
		snap.Modules[0].Status != "running" || snap.Link == nil || !snap.Link.Connected || snap.Outbox == nil || snap.Time.IsZero() {
		t.Fatalf("snapshot: %+v", snap)
	}
	pid := snap.Modules[0].Pid

	// A module's status change.
	if err := c.Restart(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, ch, "m1 running again with a new pid", func(ev mgmtclient.Event) bool {
		return ev.Type == mgmtclient.EventModule && ev.Module.Name == "m1" && ev.Module.Status == "running" && ev.Module.Pid != pid
	})
	if ev.Module.StartedAt.IsZero() {
		t.Errorf("module event: %+v", ev.Module)
	}

	// The hub goes away: the link goes down, and what the agent reports
	// meanwhile waits in the outbox.
	f.Hub.Stop()
	ev = waitEvent(t, ch, "the link down", func(ev mgmtclient.Event) bool {
		return ev.Type == mgmtclient.EventLink && !ev.Link.Connected
	})
	if ev.Link.Since.IsZero() {
		t.Errorf("link event: %+v", ev.Link)
	}
	if ev.Link.LastError == "" { // the same change may come in two events
		ev = waitEvent(t, ch, "the link's last error", func(ev mgmtclient.Event) bool {
			return ev.Type == mgmtclient.EventLink && ev.Link.LastError != ""
		})
	}
	if ev.Link.Connected || ev.Link.LastErrorAt.IsZero() {
		t.Errorf("link event with the last error: %+v", ev.Link)
	}
	// Status has the event's last error, or a later one (the syncer tries
	// again meanwhile: "shutting down", then "connection refused").
	if st, err := c.Status(ctx); err != nil || st.LastError == "" || st.LastErrorAt.Before(ev.Link.LastErrorAt) ||
		st.LastErrorAt.Equal(ev.Link.LastErrorAt) && st.LastError != ev.Link.LastError {
		t.Errorf("status's last error: %+v %v, want %q at %v or a later one", st, err, ev.Link.LastError, ev.Link.LastErrorAt)
	}
	if err := c.Restart(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, ch, "the agent's report in the outbox", func(ev mgmtclient.Event) bool {
		return ev.Type == mgmtclient.EventOutbox && ev.Outbox.Patches > 0
	})
	if ev.Outbox.Bytes == 0 || ev.Outbox.Oldest.IsZero() {
		t.Errorf("outbox event: %+v", ev.Outbox)
	}
	if st, err := c.Status(ctx); err != nil || st.Connected || st.Outbox.Patches == 0 {
		t.Errorf("status after the events: %+v %v", st, err)
	}

	// A second watcher starts from the state as it is now.
	wctx, wcancel := context.WithCancel(ctx)
	ch2, err := c.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	snap = <-ch2
	if snap.Type != mgmtclient.EventSnapshot || snap.Link.Connected || snap.Outbox.Patches == 0 {
		t.Errorf("second snapshot: %+v", snap)
	}
	wcancel()
	for range ch2 { // closed once ctx is done
	}

	// The daemon stopping ends the stream with a last line saying so.
	stop()
	var last mgmtclient.Event
	for ev := range ch {
		last = ev
	}
	if last.Type != mgmtclient.EventError || !strings.Contains(last.Error, "stopping") {
		t.Errorf("last event: %+v", last)
	}

	// No daemon: Watch says so at once.
	_, err = mgmtclient.New(filepath.Join(t.TempDir(), "none.sock")).Watch(ctx)
	var ue *mgmtclient.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("no daemon: %v", err)
	}
}

func TestEventsSlowSubscriberIsDropped(t *testing.T) {
	const buffer = 4
	e := mgmt.NewEvents(buffer, nil)
	e.SetModules([]mgmtclient.Module{{Name: "a", Status: "running"}})
	snap, slow := e.Subscribe()
	if len(snap.Modules) != 1 || snap.Modules[0].Name != "a" {
		t.Fatalf("snapshot: %+v", snap)
	}
	_, fast := e.Subscribe()
	var fastGot []mgmtclient.Event
	// Publishing never waits: the slow subscriber, which reads nothing, is
	// dropped once its buffer is full; the fast one keeps up.
	for i := range 3 * buffer {
		e.SetModules([]mgmtclient.Module{{Name: "a", Status: "running", Restarts: i + 1}})
		fastGot = append(fastGot, <-fast.C())
	}
	if !slow.Dropped() || fast.Dropped() {
		t.Fatalf("dropped: slow %v, fast %v", slow.Dropped(), fast.Dropped())
	}
	n := 0
	for ev := range slow.C() { // what it had, then closed
		if ev.Module.Restarts != n+1 {
			t.Errorf("slow subscriber's event %d: %+v", n, ev.Module)
		}
		n++
	}
	if n != buffer {
		t.Errorf("the slow subscriber got %d events before it was dropped, want %d", n, buffer)
	}
	if len(fastGot) != 3*buffer || fastGot[len(fastGot)-1].Module.Restarts != 3*buffer {
		t.Errorf("fast subscriber: %d events", len(fastGot))
	}

	// Only changes are published; a module gone is published as removed.
	e.SetModules([]mgmtclient.Module{{Name: "a", Status: "running", Restarts: 3 * buffer}})
	e.SetModules([]mgmtclient.Module{{Name: "b", Status: "backoff"}})
	e.SetLink(mgmtclient.Link{})
	var got []string
	for range 2 {
		ev := <-fast.C()
		got = append(got, ev.Type+":"+ev.Name+moduleName(ev))
	}
	if strings.Join(got, " ") != "module:b moduleRemoved:a" {
		t.Errorf("events: %v", got)
	}
	select { // publishing is synchronous: nothing more is coming
	case ev := <-fast.C():
		t.Errorf("an unchanged link was published: %+v", ev)
	default:
	}
	fast.Close()
	if _, open := <-fast.C(); open {
		t.Error("closed subscription still open")
	}
	fast.Close() // twice is fine
}

func moduleName(ev mgmtclient.Event) string {
	if ev.Module == nil {
		return ""
	}
	return ev.Module.Name
}

// TestEventsMessages: a daemon that routes messages puts its message queue
// in the snapshot and sends a messages event when the queue changes.
func TestEventsMessages(t *testing.T) {
	f := agenttest.New(t, runtime.KindProcess)
	f.Deploy(t, map[string]any{})
	r := f.Start(t, nil)
	var mu sync.Mutex
	q := mgmtclient.MessageQueue{Upstream: mgmtclient.QueueStats{Count: 3, Bytes: 300}}
	msgs := func() mgmtclient.MessageQueue {
		mu.Lock()
		defer mu.Unlock()
		return q
	}
	sock := filepath.Join(t.TempDir(), "mgmt.sock")
	l, err := mgmt.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = mgmt.New(r.Agent, "hub.test", nil).WithMessages(msgs).Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	ch, err := mgmtclient.New(sock).Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	snap := <-ch
	if snap.Type != mgmtclient.EventSnapshot || snap.Messages == nil || snap.Messages.Upstream.Count != 3 {
		t.Fatalf("snapshot's messages: %+v", snap.Messages)
	}
	mu.Lock()
	q.Upstream = mgmtclient.QueueStats{}
	q.Inputs = mgmtclient.QueueStats{Count: 1, Bytes: 10, Expired: 2}
	mu.Unlock()
	ev := waitEvent(t, ch, "the queue's change", func(ev mgmtclient.Event) bool { return ev.Type == mgmtclient.EventMessages })
	if ev.Messages.Upstream.Count != 0 || ev.Messages.Inputs.Count != 1 || ev.Messages.Inputs.Expired != 2 {
		t.Errorf("messages event: %+v", ev.Messages)
	}
}
