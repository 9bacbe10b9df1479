package local

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// TestMain shows times in UTC, so that the goldens do not depend on the
// machine's zone.
func TestMain(m *testing.M) {
	time.Local = time.UTC
	os.Exit(m.Run())
}

// t0 is the fake clock's now.
var t0 = time.Date(2026, 12, 2, 12, 30, 0, 0, time.UTC)

// fakeDaemon is a stand-in of the daemon's management API for the goldens
// and model tests: fixed data, events sent by the test. The end-to-end test
// (e2e_test.go) runs the real daemon.
type fakeDaemon struct {
	mu       sync.Mutex
	status   mgmtclient.Status
	snapshot mgmtclient.Event
	events   chan mgmtclient.Event
	follow   chan mgmtclient.FollowEvent // after the lines of logs
	logs     map[string][]string
	restarts []string
}

func newFake() *fakeDaemon {
	exit := 0
	mods := []mgmtclient.Module{
		{Name: "filter", Status: "backoff", DesiredStatus: "running", Image: "localhost:5000/filter:1.2", ImageDigest: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Restarts: 4, StartedAt: t0.Add(-2 * time.Minute), ExitedAt: t0.Add(-5 * time.Second), ExitCode: &exit, NextRestartAt: t0.Add(3 * time.Second),
			Description:     "exited with code 0; restarting in 8s (back-off)",
			LastHealthCheck: &mgmtclient.HealthCheck{At: t0.Add(-20 * time.Second), OK: false, Output: "the check exited with code 1: no sensor on /dev/i2c-1"}},
		{Name: "tempsensor", Status: "running", DesiredStatus: "running", Image: "localhost:5000/tempsensor:1.0", ImageDigest: "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
			Restarts: 0, StartedAt: t0.Add(-3*time.Hour - 12*time.Minute), Pid: 4242,
			LastHealthCheck: &mgmtclient.HealthCheck{At: t0.Add(-12 * time.Second), OK: true}},
	}
	link := mgmtclient.Link{Connected: false, Since: t0.Add(-4*time.Minute - 10*time.Second), LastSync: t0.Add(-4*time.Minute - 12*time.Second),
		LastError: `sync: Get "https://hub.example:8443/devices/dev-7/sync": dial tcp 10.0.0.5:8443: connect: connection refused`, LastErrorAt: t0.Add(-4*time.Minute - 10*time.Second)}
	outbox := mgmtclient.Outbox{Patches: 37, Bytes: 9830, Oldest: t0.Add(-4 * time.Minute)}
	return &fakeDaemon{
		status: mgmtclient.Status{DeviceID: "dev-7", HubHost: "hub.example:8443", Runtime: "process",
			Connected: link.Connected, Since: link.Since, LastSync: link.LastSync, LastError: link.LastError, LastErrorAt: link.LastErrorAt,
			Outbox: outbox,
			// The 37 queued reports are $edgeAgent's 21 and tempsensor's 16,
			// on top of the versions the hub last sent at the last sync.
			Twins: []mgmtclient.TwinVersions{
				{ModuleID: "$edgeAgent", DesiredVersion: 3, ReportedVersion: 58, QueuedReports: 21, HubDesiredVersion: 3, HubReportedVersion: 37, HubSeenAt: link.LastSync},
				{ModuleID: "$edgeHub", DesiredVersion: 1, ReportedVersion: 2, HubDesiredVersion: 1, HubReportedVersion: 2, HubSeenAt: t0.Add(-2 * time.Hour)},
				{ModuleID: "filter", DesiredVersion: 2, ReportedVersion: 9, HubDesiredVersion: 2, HubReportedVersion: 9, HubSeenAt: t0.Add(-time.Hour)},
				{ModuleID: "tempsensor", DesiredVersion: 5, ReportedVersion: 214, QueuedReports: 16, HubDesiredVersion: 5, HubReportedVersion: 198, HubSeenAt: link.LastSync}},
			Broker: mgmtclient.BrokerStatus{Modules: []mgmtclient.BrokerModule{{ModuleID: "filter", Connected: false, Since: t0.Add(-5 * time.Second)},
				{ModuleID: "tempsensor", Connected: true, Since: t0.Add(-3 * time.Hour)}}},
		},
		snapshot: mgmtclient.Event{Type: mgmtclient.EventSnapshot, Time: t0, Modules: mods, Link: &link, Outbox: &outbox},
		events:   make(chan mgmtclient.Event, 16),
		follow:   make(chan mgmtclient.FollowEvent, 16),
		logs: map[string][]string{"tempsensor": {
			"2026-12-02T09:18:00Z starting tempsensor 1.0",
			"2026-12-02T09:18:01Z connected to the module broker",
			"2026-12-02T12:29:50Z temperature 21.4",
			"2026-12-02T12:29:55Z warning: sensor timeout, retrying",
			"2026-12-02T12:29:56Z temperature 21.5",
			"2026-12-02T12:29:57Z report queued (hub offline)",
			"2026-12-02T12:29:58Z warning: sensor timeout, retrying",
			"2026-12-02T12:29:59Z temperature 21.5",
		}},
	}
}

func (f *fakeDaemon) Socket() string { return "/run/outpost/mgmt.sock" }

func (f *fakeDaemon) Status(context.Context) (*mgmtclient.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	st.Twins = slices.Clone(st.Twins) // setStatus edits them in place
	return &st, nil
}

func (f *fakeDaemon) setStatus(edit func(*mgmtclient.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(&f.status)
}

// Watch sends the snapshot, then what the test sends on f.events.
func (f *fakeDaemon) Watch(ctx context.Context) (<-chan mgmtclient.Event, error) {
	ch := make(chan mgmtclient.Event)
	go func() {
		defer close(ch)
		f.mu.Lock()
		snap := f.snapshot
		f.mu.Unlock()
		for ev := snap; ; {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
			select {
			case ev = <-f.events:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// Follow sends the module's lines, then what the test sends on f.follow,
// until ctx is done; a module without lines is not deployed.
func (f *fakeDaemon) Follow(ctx context.Context, opts mgmtclient.FollowOptions, fn func(mgmtclient.FollowEvent)) error {
	f.mu.Lock()
	var lines []string
	for _, m := range opts.Modules {
		ls, ok := f.logs[m]
		if !ok {
			f.mu.Unlock()
			return &mgmtclient.Error{Status: 404, Message: "module " + m + " is not deployed"}
		}
		lines = append(lines, ls...)
	}
	f.mu.Unlock()
	for _, s := range lines {
		fn(mgmtclient.FollowEvent{Kind: mgmtclient.FollowLine, Module: opts.Modules[0], Line: s})
	}
	for {
		select {
		case ev := <-f.follow:
			fn(ev)
		case <-ctx.Done():
			return nil
		}
	}
}

func (f *fakeDaemon) Restart(_ context.Context, module string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts = append(f.restarts, module)
	return nil
}

func (f *fakeDaemon) restarted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.restarts...)
}
