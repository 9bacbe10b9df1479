package daemon

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/twin"
)

// TestHubReportedPatches: the $edgeHub patches add and update clients and
// never remove what was reported before; once the twin holds a status, the
// same status makes no patch (so a steady broker sends nothing).
func TestHubReportedPatches(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	tw := twin.New("edge-1", "$edgeHub", now)
	if _, err := tw.ReplaceDesired([]byte(`{"schemaVersion":"1.1","routes":{"r":"FROM /messages/* INTO $upstream"}}`), now); err != nil {
		t.Fatal(err)
	}
	apply := func(mods []broker.ModuleStatus) map[string]any {
		t.Helper()
		var base map[string]any
		_ = json.Unmarshal(tw.ReportedJSON(), &base)
		patch := overlay(base, hubReported("edge-1", tw, mods))
		if len(patch) > 0 {
			b, _ := json.Marshal(patch)
			if _, err := tw.PatchReported(b, now); err != nil {
				t.Fatal(err)
			}
		}
		return patch
	}
	connected := []broker.ModuleStatus{{ModuleID: "m", Connected: true, Since: now}, {ModuleID: "never"}, {ModuleID: "a.b", Connected: true, Since: now}}
	if p := apply(connected); p["clients"] == nil || p["lastDesiredStatus"] == nil {
		t.Fatalf("first patch %v", p)
	}
	if p := apply(connected); len(p) != 0 {
		t.Fatalf("the same status patched again: %v", p)
	}
	gone := now.Add(time.Minute)
	apply([]broker.ModuleStatus{{ModuleID: "m", Since: gone}})
	var rep struct {
		LastDesiredVersion int64
		LastDesiredStatus  struct {
			Code        int
			Description string
		}
		Clients map[string]map[string]string
	}
	if err := json.Unmarshal(tw.ReportedJSON(), &rep); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"status": "Disconnected", "lastConnectedTimeUtc": "2026-12-02T12:00:00Z", "lastDisconnectedTimeUtc": "2026-12-02T12:01:00Z"}
	if got := rep.Clients["edge-1/m"]; len(got) != len(want) || got["status"] != want["status"] || got["lastConnectedTimeUtc"] != want["lastConnectedTimeUtc"] || got["lastDisconnectedTimeUtc"] != want["lastDisconnectedTimeUtc"] {
		t.Errorf("edge-1/m = %v, want %v", got, want)
	}
	if len(rep.Clients) != 1 { // never connected, and "a.b" cannot be a twin key
		t.Errorf("clients %v", rep.Clients)
	}
	if rep.LastDesiredVersion != tw.DesiredVersion() || rep.LastDesiredStatus.Code != 200 || rep.LastDesiredStatus.Description != "" { // the routes parse
		t.Errorf("reported %s", tw.ReportedJSON())
	}
}
