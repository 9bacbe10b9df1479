package local

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// row is the fields of the view's line for module (the cursor's mark left
// out).
func row(view, module string) []string {
	for _, line := range strings.Split(view, "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "▸"))
		if len(f) > 0 && f[0] == module {
			return f
		}
	}
	return nil
}

// TestTwinVersionsCatchUp: offline, a module's row shows its cached
// versions with its queued reports and the hub's as last seen, with their
// age; once the hub is back and has every report, the hub's are the cached
// ones, as of the last sync, and nothing is marked queued.
func TestTwinVersionsCatchUp(t *testing.T) {
	f := newFake()
	u := start(t, f, 120, 40, "") // the legend on one line
	u.waitFor(t, "5/214 ↑16", "hub's last seen 12:25:48, 4m12s", "(offline since 12:25:50)")

	synced := t0.Add(-time.Second)
	f.setStatus(func(s *mgmtclient.Status) {
		s.Connected, s.Since, s.LastSync = true, t0.Add(-3*time.Second), synced
		s.Outbox = mgmtclient.Outbox{}
		for i := range s.Twins {
			tv := &s.Twins[i]
			tv.QueuedReports, tv.HubDesiredVersion, tv.HubReportedVersion, tv.HubSeenAt = 0, tv.DesiredVersion, tv.ReportedVersion, synced
		}
	})
	f.events <- mgmtclient.Event{Type: mgmtclient.EventLink, Time: synced,
		Link: &mgmtclient.Link{Connected: true, Since: t0.Add(-3 * time.Second), LastSync: synced}}
	f.events <- mgmtclient.Event{Type: mgmtclient.EventOutbox, Time: synced, Outbox: &mgmtclient.Outbox{}}
	u.waitFor(t, "hub's as of 12:29:59", "hub 3/58")
	_, view := u.final(t)
	if r := row(view, "tempsensor"); len(r) < 6 || r[4] != "5/214" || r[5] != "5/214" {
		t.Errorf("tempsensor's row %q, want cached and hub 5/214\n%s", r, view)
	}
	if strings.Contains(view, "↑1") || strings.Contains(view, "queued;") {
		t.Errorf("reports still marked queued once the hub has them all:\n%s", view)
	}
}

// TestTwinVersionsNeverSeen: a daemon that has not heard the hub's versions
// (or does not say them) shows "—" for them, not zeros, and says why.
func TestTwinVersionsNeverSeen(t *testing.T) {
	f := newFake()
	f.setStatus(func(s *mgmtclient.Status) {
		for i := range s.Twins {
			tv := &s.Twins[i]
			tv.HubDesiredVersion, tv.HubReportedVersion, tv.HubSeenAt = 0, 0, time.Time{}
		}
	})
	u := start(t, f, 120, 40, "") // the legend on one line
	u.waitFor(t, "hub's — (offline since 12:25:50)")
	u.keys("j") // tempsensor's particulars
	u.waitFor(t, "twin 5/214, 16 reports queued; hub —")
	_, view := u.final(t)
	if r := row(view, "filter"); len(r) < 6 || r[4] != "2/9" || r[5] != "—" {
		t.Errorf("filter's row %q, want cached 2/9 and hub —\n%s", r, view)
	}
	if strings.Contains(view, "0/0") {
		t.Errorf("unknown hub versions shown as zeros:\n%s", view)
	}
}
