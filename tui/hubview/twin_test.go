package hubview_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/tui/app"
	"github.com/outpost-edge/outpost/tui/hubview"
	"github.com/outpost-edge/outpost/tui/tuitest"
)

// fixture is a real hub with device d1, module m1 and desired
// {"interval": 5, "nested": {"a": 1}} (twin version 2).
type fixture struct {
	hub *hubtest.Hub
	c   *hubclient.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	ctx := context.Background()
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d1", ModuleID: "m1"}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{hub: h, c: c}
	f.patch(t, `{"interval": 5, "nested": {"a": 1}}`)
	return f
}

func (f *fixture) patch(t *testing.T, desired string) {
	t.Helper()
	if _, err := f.c.PatchTwin(context.Background(), "d1", "m1", []byte(`{"properties":{"desired":`+desired+`}}`), ""); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) desired(t *testing.T) (map[string]any, int64) {
	t.Helper()
	tw, err := f.c.GetTwin(context.Background(), "d1", "m1")
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(tw.DesiredJSON(), &d); err != nil {
		t.Fatal(err)
	}
	return d, tw.Version
}

// openTwin runs the UI on d1/m1's twin at w×h and waits for its first frame
// (and for the texts of also).
func (f *fixture) openTwin(t *testing.T, w, h int, also ...string) *teatest.TestModel {
	t.Helper()
	c := tuitest.Common(t)
	m := app.New(c, "hub test-hub:8443", hubview.NewTwin(c, f.c, "d1", "m1"))
	tm := tuitest.Start(t, m, w, h)
	tuitest.WaitFor(t, tm, append([]string{`"interval": 5`}, also...)...)
	return tm
}

func twinOf(t *testing.T, tm *teatest.TestModel) (*app.Model, *hubview.Twin) {
	t.Helper()
	m := tuitest.Final(t, tm).(*app.Model)
	return m, m.Front().(*hubview.Twin)
}

func TestTwinGolden80x24(t *testing.T) {
	f := newFixture(t)
	tm := f.openTwin(t, 80, 24, "d1/m1: version 2") // the status line comes after the twin
	m, _ := twinOf(t, tm)
	tuitest.Golden(t, m.Render())
}

func TestTwinGolden120x40(t *testing.T) {
	f := newFixture(t)
	tm := f.openTwin(t, 120, 40, "d1/m1: version 2") // the status line comes after the twin
	m, _ := twinOf(t, tm)
	tuitest.Golden(t, m.Render())
}

// TestTwinLiveHighlight: a desired patch made elsewhere appears in the open
// view, its keys marked as changed.
func TestTwinLiveHighlight(t *testing.T) {
	f := newFixture(t)
	tm := f.openTwin(t, 120, 40)
	f.patch(t, `{"interval": 7, "added": true}`)
	tuitest.WaitFor(t, tm, `•   "interval": 7`, `•   "added": true`)
	_, v := twinOf(t, tm)
	ch := v.Changed()
	if !ch["desired.interval"] || !ch["desired.added"] || ch["desired.nested.a"] {
		t.Fatalf("changed keys %v, want desired.interval and desired.added (not nested.a)", ch)
	}
}

// TestTwinEditValidationError: a key with a '.' is refused with the line
// and the JSON path; nothing is sent.
func TestTwinEditValidationError(t *testing.T) {
	f := newFixture(t)
	tm := f.openTwin(t, 120, 40)
	tuitest.Keys(tm, "i", "down", "down", "down", "down")
	tm.Type(`"a.b": 1, `)
	tuitest.WaitFor(t, tm, `properties.desired["a.b"]`)
	tuitest.Keys(tm, "ctrl+s")
	tuitest.WaitFor(t, tm, "not sent")
	_, v := twinOf(t, tm)
	err := v.EditError()
	if err == nil || !strings.Contains(err.Error(), "at 5:") || !strings.Contains(err.Error(), `properties.desired["a.b"]`) {
		t.Fatalf("edit error %v, want one at line 5 naming properties.desired[\"a.b\"]", err)
	}
	if _, ver := f.desired(t); ver != 2 {
		t.Fatalf("twin version %d after a refused edit, want 2 (nothing sent)", ver)
	}
}

// TestTwinEditPreviewSend: removing a key shows the merge patch with null
// for it; ctrl+s sends it with If-Match and the hub has the next version.
func TestTwinEditPreviewSend(t *testing.T) {
	f := newFixture(t)
	tm := f.openTwin(t, 120, 40)
	// line 5 is `      "interval": 5,`: delete it.
	tuitest.Keys(tm, "i", "down", "down", "down", "down", "ctrl+k")
	tuitest.WaitFor(t, tm, `"interval": null`)
	tuitest.Keys(tm, "ctrl+s")
	tuitest.WaitFor(t, tm, "sent: twin d1/m1 is at version 3")
	_, v := twinOf(t, tm)
	if v.Mode() != "browse" {
		t.Fatalf("mode %s after sending, want browse", v.Mode())
	}
	d, ver := f.desired(t)
	if _, ok := d["interval"]; ok || ver != 3 || d["nested"] == nil {
		t.Fatalf("hub desired %v at version %d, want nested only at version 3", d, ver)
	}
}

// TestTwinConflictReapply: the twin changes on the hub while it is edited;
// ctrl+s gets 412 and shows base, theirs and yours with the key both
// changed; r re-applies the edit on theirs and ctrl+s sends it.
func TestTwinConflictReapply(t *testing.T) {
	f := newFixture(t)
	tm := f.openTwin(t, 120, 40)
	tuitest.Keys(tm, "i", "down", "down", "down", "down", "ctrl+k")
	tuitest.WaitFor(t, tm, `"interval": null`)
	f.patch(t, `{"interval": 9, "other": 1}`)
	tuitest.Keys(tm, "ctrl+s")
	tuitest.WaitFor(t, tm, "theirs (version 3)", "changed on both sides (yours would win): properties.desired.interval")
	tuitest.Keys(tm, "r")
	tuitest.WaitFor(t, tm, "your change re-applied on version 3")
	tuitest.Keys(tm, "ctrl+s")
	tuitest.WaitFor(t, tm, "sent: twin d1/m1 is at version 4")
	tuitest.Final(t, tm)
	d, ver := f.desired(t)
	if _, ok := d["interval"]; ok || d["other"] != 1.0 || ver != 4 {
		t.Fatalf("hub desired %v at version %d, want other kept, interval removed, version 4", d, ver)
	}
}

// TestTwinConflictDiscard: d after a conflict sends nothing.
func TestTwinConflictDiscard(t *testing.T) {
	f := newFixture(t)
	tm := f.openTwin(t, 120, 40)
	tuitest.Keys(tm, "i", "down", "down", "down", "down", "ctrl+k")
	tuitest.WaitFor(t, tm, `"interval": null`)
	f.patch(t, `{"interval": 9}`)
	tuitest.Keys(tm, "ctrl+s")
	tuitest.WaitFor(t, tm, "theirs (version 3)")
	tuitest.Keys(tm, "d")
	tuitest.WaitFor(t, tm, "discarded; nothing was sent")
	_, v := twinOf(t, tm)
	if v.Mode() != "browse" || v.Conflict() != nil {
		t.Fatalf("after d: mode %s, conflict %v; want browse without a conflict", v.Mode(), v.Conflict())
	}
	if d, ver := f.desired(t); d["interval"] != 9.0 || ver != 3 {
		t.Fatalf("hub desired %v at version %d, want interval 9 at version 3", d, ver)
	}
}
