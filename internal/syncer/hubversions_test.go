package syncer

import (
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// twinStatus returns module's entry of s.Status.
func twinStatus(t *testing.T, s *Syncer, module string) (Status, TwinVersions) {
	t.Helper()
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, tv := range st.Twins {
		if tv.ModuleID == module {
			return st, tv
		}
	}
	t.Fatalf("status: no twin %s in %+v", module, st.Twins)
	return st, TwinVersions{}
}

// TestStatusHubVersions: Status shows, per twin, the versions the real hub
// last sent in a sync answer and when, apart from the cached ones; offline,
// reported patches raise the cached version and the twin's queued count
// while the hub's stay as last seen, also across a restart of the syncer;
// once the hub is back and the outbox drained, both agree again.
func TestStatusHubVersions(t *testing.T) {
	f := setup(t)
	s, stop := run(t, f, f.st)
	eventually(t, "first sync", s.Synced)
	tw, err := f.hub.Client(t).PatchTwin(t.Context(), "d", "a", []byte(`{"properties":{"desired":{"interval":9}}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	hubDesired, hubReported := tw.DesiredVersion(), tw.ReportedVersion()
	eventually(t, "the hub's desired version in the status", func() bool {
		_, tv := twinStatus(t, s, "a")
		return tv.HubDesiredVersion == hubDesired
	})
	st, a := twinStatus(t, s, "a")
	if a.DesiredVersion != hubDesired || a.ReportedVersion != hubReported || a.HubReportedVersion != hubReported ||
		a.QueuedReports != 0 || a.HubSeenAt.IsZero() || a.HubSeenAt.After(st.LastSync) {
		t.Fatalf("twin a after a desired patch at the hub (d%d r%d): %+v, last sync %v", hubDesired, hubReported, a, st.LastSync)
	}
	seen := a.HubSeenAt

	// Offline: two reports queue; the hub's versions are those last seen.
	addr := f.hub.Addr().String()
	f.hub.Stop()
	eventually(t, "offline", func() bool { return !s.Link().Connected })
	for _, p := range []string{`{"n":1}`, `{"n":2}`} {
		if _, err := s.PatchReported("a", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	// (After a restart, New lays the outbox on the cached twin again, which
	// may raise its reported version once more: only the hub's are checked.)
	check := func(what string, s *Syncer, cached bool) {
		t.Helper()
		_, a := twinStatus(t, s, "a")
		if cached && a.ReportedVersion != hubReported+2 || a.QueuedReports != 2 || a.HubDesiredVersion != hubDesired ||
			a.HubReportedVersion != hubReported || !a.HubSeenAt.Equal(seen) {
			t.Fatalf("%s: twin a %+v, want cached r%d with 2 queued, the hub's d%d r%d seen at %v", what, a, hubReported+2, hubDesired, hubReported, seen)
		}
		if _, b := twinStatus(t, s, "b"); b.QueuedReports != 0 || b.HubSeenAt.IsZero() {
			t.Fatalf("%s: twin b %+v, want none queued and the hub's versions", what, b)
		}
	}
	check("offline", s, true)
	stop()
	s2, _ := run(t, f, f.st)
	check("offline, after a restart", s2, false)

	// The hub back: the outbox drains and the hub's versions catch up.
	hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	eventually(t, "the hub's reported version to catch up", func() bool {
		_, a := twinStatus(t, s2, "a")
		return a.QueuedReports == 0 && a.HubReportedVersion == hubReported+2
	})
	if _, a := twinStatus(t, s2, "a"); a.ReportedVersion != hubReported+2 || !a.HubSeenAt.After(seen) {
		t.Fatalf("twin a back online: %+v", a)
	}

	// Online, a report's upload: the hub leaves its echo out of the sync
	// answers, and the acknowledged upload says the hub has the version.
	if _, err := s2.PatchReported("a", []byte(`{"n":3}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the hub's reported version after an online upload", func() bool {
		_, a := twinStatus(t, s2, "a")
		return a.QueuedReports == 0 && a.ReportedVersion == hubReported+3 && a.HubReportedVersion == hubReported+3
	})
	if tw, err := f.hub.Client(t).GetTwin(t.Context(), "d", "a"); err != nil || tw.ReportedVersion() != hubReported+3 {
		t.Fatalf("the hub's own twin a: r%d, %v; want r%d", tw.ReportedVersion(), err, hubReported+3)
	}
}
