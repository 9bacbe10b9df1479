package hubview_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/tui/tuitest"
)

// report sends reported properties of d1/m1 to the hub as the device does
// (an upload of its outbox), so that the twin has both sides.
func (f *fixture) report(t *testing.T, reported string) {
	t.Helper()
	ctx := context.Background()
	d, err := f.c.GetDevice(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	dev := f.hub.ClientFor(t, f.hub.DeviceConnectionString("d1", "", d.Authentication.SymmetricKey.PrimaryKey))
	ack, err := dev.UploadReported(ctx, "d1", hubapi.ReportedBatch{Session: "tui-test",
		Patches: []hubapi.ReportedPatch{{Seq: 1, ModuleID: "m1", Patch: json.RawMessage(reported)}}})
	if err != nil || ack.Acked != 1 || len(ack.Rejected) > 0 {
		t.Fatalf("upload reported: %+v %v", ack, err)
	}
}

// openSides opens d1/m1's tree with desired as openTree's and reported
// {"firmware": "1.2", "sensors": {"t1": 21.5, "t2": 19}} (version 2).
func openSides(t *testing.T, w, h int) *teatest.TestModel {
	t.Helper()
	f := newFixture(t)
	f.patch(t, `{"list": [1, 2, {"x": true}]}`)
	f.report(t, `{"firmware": "1.2", "sensors": {"t1": 21.5, "t2": 19}}`)
	tm := f.openTwin(t, w, h, "d1/m1: version 4")
	tuitest.Keys(tm, "t")
	tuitest.WaitFor(t, tm, "▾ desired ($version 3)", "▾ reported ($version 2)")
	return tm
}

// TestTwinTreeSideBySide: from 100 columns the tree shows desired and
// reported side by side; the cursor moves within the focused side (G
// stops at its last node), tab goes to reported where it starts at the
// top and folds only there (C), tab again to the tags tab, and tab from
// there back to desired with the cursor where it was.
func TestTwinTreeSideBySide(t *testing.T) {
	tm := openSides(t, 120, 40)
	tuitest.Keys(tm, "G")
	tuitest.WaitFor(t, tm, "›       a: 1")
	tuitest.Keys(tm, "tab", "j", "j", "C")
	tuitest.WaitFor(t, tm, "│›   ▸ sensors {2 keys}")
	_, v := twinOf(t, tm)
	if !v.SideBySide() || v.FocusedSide() != "reported" || v.CursorPath() != "reported.sensors" {
		t.Fatalf("after G, tab, j, j, C: side by side %v, on %s at %q; want reported.sensors", v.SideBySide(), v.FocusedSide(), v.CursorPath())
	}
	if !v.Collapsed("reported.sensors") || v.Collapsed("desired.list") || v.Collapsed("desired.nested") {
		t.Fatal("C on the reported side folded the desired side too, or not reported's")
	}
	// Every line has both sides, cut at the middle.
	lines := strings.Split(ansi.Strip(v.View()), "\n")
	if !strings.Contains(lines[1], "▾ desired ($version 3)") || !strings.Contains(lines[1], "│  ▾ reported ($version 2)") {
		t.Fatalf("first tree line %q, want desired | reported", lines[1])
	}

	tm = openSides(t, 120, 40)
	tuitest.Keys(tm, "j", "j", "tab", "j", "tab")
	tuitest.WaitFor(t, tm, "[tags]")
	tuitest.Keys(tm, "tab")
	_, v = twinOf(t, tm)
	if v.FocusedSide() != "desired" || v.CursorPath() != "desired.list" {
		t.Fatalf("back from the tags: on %s at %q, want desired.list", v.FocusedSide(), v.CursorPath())
	}
	want := []string{"desired", "desired.interval", "desired.list", "desired.list[0]", "desired.list[1]", "desired.list[2]", "desired.list[2].x",
		"desired.nested", "desired.nested.a", "reported", "reported.firmware", "reported.sensors", "reported.sensors.t1", "reported.sensors.t2"}
	if got := v.VisibleNodes(); !slices.Equal(got, want) {
		t.Fatalf("visible nodes %v, want %v", got, want)
	}
}

// TestTwinTreeStackedBelow100: narrower, the sections are one above the
// other and the cursor goes from desired into reported; tab is the tags.
func TestTwinTreeStackedBelow100(t *testing.T) {
	tm := openSides(t, 99, 40)
	tuitest.Keys(tm, "G")
	tuitest.WaitFor(t, tm, "›       t2: 19")
	_, v := twinOf(t, tm)
	if v.SideBySide() || v.CursorPath() != "reported.sensors.t2" {
		t.Fatalf("at 99 columns: side by side %v, cursor %q; want stacked, on reported.sensors.t2", v.SideBySide(), v.CursorPath())
	}
	if s := ansi.Strip(v.View()); strings.Contains(s, "│") {
		t.Fatalf("at 99 columns the tree has a column separator:\n%s", s)
	}
}

func TestTwinTreeSidesGolden80x24(t *testing.T) {
	tm := openSides(t, 80, 24)
	tuitest.Keys(tm, "j", "j", "enter")
	m, _ := twinOf(t, tm)
	tuitest.Golden(t, m.Render())
}

func TestTwinTreeSidesGolden120x40(t *testing.T) {
	tm := openSides(t, 120, 40)
	tuitest.Keys(tm, "j", "j", "enter", "tab", "j", "j")
	m, _ := twinOf(t, tm)
	tuitest.Golden(t, m.Render())
}
