package local

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/tui/components"
)

// TestRestartConfirmation: R asks first; n sends nothing; y restarts the
// selected module and says so.
func TestRestartConfirmation(t *testing.T) {
	f := newFake()
	u := start(t, f, 80, 24, "")
	u.waitFor(t, "tempsensor", "running")
	u.keys("j", "R") // the second module: tempsensor
	u.waitFor(t, "Restart module tempsensor?", "y: yes")
	u.keys("n")
	u.waitFor(t, "MODULE") // back on the device
	if got := f.restarted(); len(got) != 0 {
		t.Fatalf("n restarted %v", got)
	}
	u.keys("R")
	u.waitFor(t, "Restart module tempsensor?")
	u.keys("y")
	u.waitFor(t, "restarted tempsensor")
	m, view := u.final(t)
	if got := f.restarted(); !slices.Equal(got, []string{"tempsensor"}) {
		t.Errorf("restarts %v, want [tempsensor]", got)
	}
	if m.Depth() != 1 || !strings.Contains(view, "restarted tempsensor") {
		t.Errorf("after y: %d views, view:\n%s", m.Depth(), view)
	}
}

// TestRestartEscapeSendsNothing: Esc in the dialog is a no.
func TestRestartEscapeSendsNothing(t *testing.T) {
	f := newFake()
	u := start(t, f, 80, 24, "")
	u.waitFor(t, "filter", "backoff")
	u.keys("R")
	u.waitFor(t, "Restart module filter?")
	u.keys("esc")
	u.waitFor(t, "MODULE")
	m, _ := u.final(t)
	if got := f.restarted(); len(got) != 0 || m.Depth() != 1 {
		t.Errorf("esc: restarts %v, %d views", got, m.Depth())
	}
}

// TestLogSearch: / finds the first match, n the next (wrapping), N the
// previous; Esc clears the search, then goes back.
func TestLogSearch(t *testing.T) {
	f := newFake()
	u := start(t, f, 80, 24, "")
	u.waitFor(t, "tempsensor")
	u.keys("j", "L")
	u.waitFor(t, "logs of tempsensor", "8 lines")
	u.keys("/", "TIMEOUT", "enter")
	u.waitFor(t, "/timeout 1 of 2")
	u.keys("n")
	u.waitFor(t, "/timeout 2 of 2")
	u.keys("n")
	u.waitFor(t, "/timeout 1 of 2")
	u.keys("N")
	u.waitFor(t, "/timeout 2 of 2")
	u.keys("/", "no such thing", "enter")
	u.waitFor(t, "/no such thing 0 of 0")
	u.keys("esc") // clears the search
	m, view := u.final(t)
	l, ok := m.Front().(*Logs)
	if !ok {
		t.Fatalf("front view %T, want the logs", m.Front())
	}
	if l.query != "" || l.current != -1 || strings.Contains(view, "/no such") {
		t.Errorf("after esc: query %q current %d\n%s", l.query, l.current, view)
	}
	if l.follow {
		t.Error("a search stops following")
	}
}

// TestLogsFollowInstances: the log view goes on across the module's
// instances: an exit shows as a marker and in the title, the next
// instance's lines follow its start marker, without a key.
func TestLogsFollowInstances(t *testing.T) {
	f := newFake()
	u := start(t, f, 100, 24, "tempsensor")
	u.waitFor(t, "logs of tempsensor · following", "8 lines")
	exit := 0
	f.follow <- mgmtclient.FollowEvent{Kind: mgmtclient.FollowLine, Module: "tempsensor", Line: "got SIGTERM"}
	f.follow <- mgmtclient.FollowEvent{Kind: mgmtclient.FollowExited, Module: "tempsensor", Time: t0,
		Instance: &mgmtclient.Module{Name: "tempsensor", Status: "stopped", ExitCode: &exit}}
	u.waitFor(t, "--- tempsensor stopped ---", "exited 12:30:00; the next instance's lines follow", "10 lines")
	f.follow <- mgmtclient.FollowEvent{Kind: mgmtclient.FollowRestarted, Module: "tempsensor", Time: t0.Add(time.Second),
		Instance: &mgmtclient.Module{Name: "tempsensor", Status: "running", Pid: 4343, Restarts: 1, StartedAt: t0.Add(time.Second)}}
	f.follow <- mgmtclient.FollowEvent{Kind: mgmtclient.FollowLine, Module: "tempsensor", Line: "2026-12-02T12:30:01Z starting tempsensor 1.0"}
	u.waitFor(t, "--- tempsensor restarted (instance pid 4343", "logs of tempsensor · following", "12 lines")
	m, view := u.final(t)
	l := m.Front().(*Logs)
	n := len(l.lines)
	if n != 12 || !l.lines[n-2].marker || l.lines[n-1].marker || l.lines[n-1].text != "2026-12-02T12:30:01Z starting tempsensor 1.0" {
		t.Errorf("last lines %+v\n%s", l.lines[max(n-4, 0):], view)
	}
}

// TestLogsNotDeployed: following a module the daemon doesn't know says why.
func TestLogsNotDeployed(t *testing.T) {
	f := newFake()
	f.logs = map[string][]string{}
	u := start(t, f, 80, 24, "tempsensor")
	u.waitFor(t, "not available", "is not deployed")
	u.final(t)
}

// TestLogSearchFindsTheLine: the current match is the line searched for.
func TestLogSearchFindsTheLine(t *testing.T) {
	f := newFake()
	u := start(t, f, 80, 24, "tempsensor")
	u.waitFor(t, "8 lines")
	u.keys("/", "queued", "enter")
	u.waitFor(t, "/queued 1 of 1")
	m, _ := u.final(t)
	l := m.Front().(*Logs)
	if l.current < 0 || !strings.Contains(l.lines[l.current].text, "report queued (hub offline)") {
		t.Errorf("current match %d", l.current)
	}
}

// TestLiveUpdate: events change the view as they come, without a key: a
// module's status, the link going up, the outbox draining to 0.
func TestLiveUpdate(t *testing.T) {
	f := newFake()
	u := start(t, f, 120, 40, "")
	u.waitFor(t, "backoff", "○ offline since", "37 patches")
	f.events <- mgmtclient.Event{Type: mgmtclient.EventModule, Time: t0,
		Module: &mgmtclient.Module{Name: "filter", Status: "running", DesiredStatus: "running", Restarts: 5, StartedAt: t0.Add(-7 * time.Second)}}
	u.waitFor(t, "7s")
	f.setStatus(func(s *mgmtclient.Status) { s.Connected = true })
	f.events <- mgmtclient.Event{Type: mgmtclient.EventLink, Time: t0.Add(-3 * time.Second),
		Link: &mgmtclient.Link{Connected: true, Since: t0.Add(-3 * time.Second), LastSync: t0.Add(-3 * time.Second)}}
	u.waitFor(t, "● connected since")
	f.events <- mgmtclient.Event{Type: mgmtclient.EventOutbox, Time: t0.Add(-1 * time.Second), Outbox: &mgmtclient.Outbox{}}
	u.waitFor(t, "last drained 37 patches in 2s")
	m, view := u.final(t)
	d := m.Front().(*Device)
	if row := rowOf(d.table, "filter"); row == nil || row.Cells[1] != "running" || row.Cells[2] != "5" || row.Cells[3] != "7s" {
		t.Errorf("filter's row: %+v", row)
	}
	for _, want := range []string{"Outbox  empty", "● connected"} {
		if !strings.Contains(view, want) {
			t.Errorf("view lacks %q:\n%s", want, view)
		}
	}
}

func rowOf(t *components.Table, id string) *components.Row {
	for _, r := range t.Rows() {
		if r.ID == id {
			return &r
		}
	}
	return nil
}

// TestOpenFirst: `outpost tui MODULE` opens its logs; the device's own id
// opens the device; another name says there is no such module.
func TestOpenFirst(t *testing.T) {
	for _, tc := range []struct {
		arg, want string
		depth     int
	}{
		{"tempsensor", "logs of tempsensor", 2},
		{"dev-7", "MODULE", 1},
		{"nosuch", "no module nosuch on device dev-7", 1},
	} {
		u := start(t, newFake(), 80, 24, tc.arg)
		u.waitFor(t, tc.want, "dev-7")
		if m, _ := u.final(t); m.Depth() != tc.depth {
			t.Errorf("%s: %d views, want %d", tc.arg, m.Depth(), tc.depth)
		}
	}
}

// TestLeaves: the child (leaf) devices the daemon's status lists show in
// the panel, connected or not, when last heard, with their queued reports
// and messages.
func TestLeaves(t *testing.T) {
	f := newFake()
	f.setStatus(func(s *mgmtclient.Status) {
		s.Children = []mgmtclient.Child{
			{DeviceID: "sensor-1", Connected: true, Since: t0.Add(-time.Hour), LastActivity: t0.Add(-3 * time.Second), QueuedReports: 2, QueuedMessages: 31},
			{DeviceID: "sensor-2", Connected: false, Since: t0.Add(-time.Minute)},
		}
	})
	u := start(t, f, 120, 40, "")
	u.waitFor(t, "Leaves", "● sensor-1 heard 3s ago · 2 reports queued · 31 messages queued", "○ sensor-2")
	_, view := u.final(t)
	if strings.Contains(view, "sensor-2 heard") || strings.Contains(view, "sensor-2 · ") {
		t.Errorf("sensor-2, never heard and with nothing queued, shows more:\n%s", view)
	}
}

// TestMessageQueue: the message queue's line follows the daemon's events:
// from the snapshot, then each messages event; the routes' error shows.
func TestMessageQueue(t *testing.T) {
	f := newFake()
	f.snapshot.Messages = &mgmtclient.MessageQueue{Upstream: mgmtclient.QueueStats{Count: 12, Bytes: 14000, Oldest: t0.Add(-3 * time.Second), Expired: 2}}
	u := start(t, f, 120, 40, "")
	u.waitFor(t, "Msgs", "upstream 12 messages · 13.7 KiB · oldest 3s ago · 2 expired", "held until the hub is back", "inputs empty")
	f.events <- mgmtclient.Event{Type: mgmtclient.EventMessages, Time: t0, Messages: &mgmtclient.MessageQueue{
		Inputs:      mgmtclient.QueueStats{Count: 1, Bytes: 10, Oldest: t0.Add(-time.Second), Refused: 4},
		Upstream:    mgmtclient.QueueStats{Refused: 4},
		RoutesError: `routes.r: column 23: sink "nowhere" is not supported`,
	}}
	u.waitFor(t, "upstream empty", "inputs 1 message · 10 B · oldest 1s ago", "4 messages refused: queue full", `routes: routes.r: column 23: sink "nowhere" is not supported`)
	u.final(t)
}
