package local

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/tui/app"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/tuitest"
)

// ui is the whole UI (frame and view stack) over f, on a terminal of w×h,
// its clock stopped at t0, without colour.
type ui struct {
	tm *teatest.TestModel
}

func start(t *testing.T, f *fakeDaemon, w, h int, module string) *ui {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := common.New(ctx, false, func() time.Time { return t0 })
	m := app.New(c, "device socket "+f.Socket(), Root(c, f, module))
	return &ui{tm: tuitest.Start(t, m, w, h)}
}

// waitFor waits until the screen shows every one of want.
func (u *ui) waitFor(t *testing.T, want ...string) {
	t.Helper()
	tuitest.WaitFor(t, u.tm, want...)
}

// keys types each key of ks.
func (u *ui) keys(ks ...string) { tuitest.Keys(u.tm, ks...) }

// final quits and returns the UI's last frame, without escapes.
func (u *ui) final(t *testing.T) (*app.Model, string) {
	t.Helper()
	m := tuitest.Final(t, u.tm).(*app.Model)
	return m, ansi.Strip(m.Render())
}

func sizes() [][2]int { return [][2]int{{80, 24}, {120, 40}} }

// TestGoldenOffline is the view as it is opened: the hub unreachable, the
// outbox holding reports.
func TestGoldenOffline(t *testing.T) {
	for _, sz := range sizes() {
		t.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(t *testing.T) {
			u := start(t, newFake(), sz[0], sz[1], "")
			// The header names the device once its status came (a message of its own).
			u.waitFor(t, "37 patches ·", "$edgeAgent 3/58 ↑21", "connected", "5/198", "device dev-7 (")
			_, view := u.final(t)
			golden.RequireEqual(t, []byte(view))
		})
	}
}

// TestGoldenDraining: the hub is back and the outbox drains.
func TestGoldenDraining(t *testing.T) {
	f := newFake()
	u := start(t, f, 80, 24, "")
	u.waitFor(t, "37 patches ·", "device dev-7 (")
	f.setStatus(func(s *mgmtclient.Status) {
		s.Connected, s.Since, s.LastSync = true, t0.Add(-2*time.Second), t0.Add(-1*time.Second)
		// 20 of the 37 reports reached the hub: its versions moved up.
		s.Twins[0].QueuedReports, s.Twins[0].HubReportedVersion, s.Twins[0].HubSeenAt = 11, 47, s.LastSync
		s.Twins[3].QueuedReports, s.Twins[3].HubReportedVersion, s.Twins[3].HubSeenAt = 6, 208, s.LastSync
	})
	f.events <- mgmtclient.Event{Type: mgmtclient.EventLink, Time: t0.Add(-2 * time.Second),
		Link: &mgmtclient.Link{Connected: true, Since: t0.Add(-2 * time.Second), LastSync: t0.Add(-2 * time.Second), LastError: f.status.LastError, LastErrorAt: f.status.LastErrorAt}}
	f.events <- mgmtclient.Event{Type: mgmtclient.EventOutbox, Time: t0.Add(-1 * time.Second),
		Outbox: &mgmtclient.Outbox{Patches: 17, Bytes: 4500, Oldest: t0.Add(-3 * time.Minute)}}
	u.waitFor(t, "draining 20/s", "3/47")
	_, view := u.final(t)
	golden.RequireEqual(t, []byte(view))
}

// TestGoldenLogs: a module's logs, searched.
func TestGoldenLogs(t *testing.T) {
	for _, sz := range sizes() {
		t.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(t *testing.T) {
			u := start(t, newFake(), sz[0], sz[1], "tempsensor")
			u.waitFor(t, "logs of tempsensor", "temperature 21.5", "device dev-7 (")
			u.keys("/", "timeout", "enter")
			u.waitFor(t, "/timeout 1 of 2")
			_, view := u.final(t)
			golden.RequireEqual(t, []byte(view))
		})
	}
}
