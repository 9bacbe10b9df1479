package hubview_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/outpost-edge/outpost/tui/tuitest"
)

// openTree opens d1/m1's twin with desired {"interval": 5, "list": [1, 2,
// {"x": true}], "nested": {"a": 1}} (version 3) and switches to the tree.
func openTree(t *testing.T, w, h int) (*fixture, *teatest.TestModel) {
	t.Helper()
	f := newFixture(t)
	f.patch(t, `{"list": [1, 2, {"x": true}]}`)
	tm := f.openTwin(t, w, h, "d1/m1: version 3")
	tuitest.Keys(tm, "t")
	tuitest.WaitFor(t, tm, "▾ desired ($version 3)", "interval: 5")
	return f, tm
}

// TestTwinTreeToggle: t shows the tree (one line per member, every node
// open) and t again the JSON.
func TestTwinTreeToggle(t *testing.T) {
	_, tm := openTree(t, 120, 40)
	_, v := twinOf(t, tm)
	if !v.TreeMode() {
		t.Fatal("after t: not in tree mode")
	}
	want := []string{"desired", "desired.interval", "desired.list", "desired.list[0]", "desired.list[1]", "desired.list[2]", "desired.list[2].x", "desired.nested", "desired.nested.a", "reported"}
	if got := v.VisibleNodes(); !slices.Equal(got, want) {
		t.Fatalf("visible nodes %v, want %v", got, want)
	}

	_, tm = openTree(t, 120, 40)
	tuitest.Keys(tm, "t")
	_, v = twinOf(t, tm)
	if v.TreeMode() {
		t.Fatal("after t twice: still in tree mode, want JSON")
	}
	if s := ansi.Strip(v.View()); !strings.Contains(s, `"interval": 5`) || strings.Contains(s, "▾") {
		t.Fatalf("after t twice the view is not the JSON:\n%s", s)
	}
}

// TestTwinTreeExpandCollapse: enter collapses the node under the cursor
// into a summary, → opens it and then enters it, ← goes back to the
// parent and then collapses it, C collapses every object and array but
// the sections, E opens everything.
func TestTwinTreeExpandCollapse(t *testing.T) {
	_, tm := openTree(t, 120, 40)
	tuitest.Keys(tm, "down", "down", "enter")
	tuitest.WaitFor(t, tm, "›   ▸ list [3 items]")
	tuitest.Keys(tm, "right", "right", "down", "down", "right", "right") // into list[2] then x (a scalar: stays)
	tuitest.Keys(tm, "left", "left", "left")                             // x → list[2] → collapse it → list
	tuitest.Keys(tm, "up", "h", "j", "j", " ")                           // interval (h: up to desired), then list: space collapses
	_, v := twinOf(t, tm)
	if got := v.CursorPath(); got != "desired.list" {
		t.Fatalf("cursor on %q, want desired.list", got)
	}
	if !v.Collapsed("desired.list") || !v.Collapsed("desired.list[2]") || v.Collapsed("desired.nested") {
		t.Fatalf("collapsed list %v, list[2] %v, nested %v; want true, true, false",
			v.Collapsed("desired.list"), v.Collapsed("desired.list[2]"), v.Collapsed("desired.nested"))
	}
	want := []string{"desired", "desired.interval", "desired.list", "desired.nested", "desired.nested.a", "reported"}
	if got := v.VisibleNodes(); !slices.Equal(got, want) {
		t.Fatalf("visible nodes %v, want %v", got, want)
	}

	_, tm = openTree(t, 120, 40)
	tuitest.Keys(tm, "G", "k", "C") // on nested.a: C leaves the cursor on nested
	tuitest.WaitFor(t, tm, "›   ▸ nested {1 key}", "    ▸ list [3 items]")
	tuitest.Keys(tm, "E")
	_, v = twinOf(t, tm)
	if v.CursorPath() != "desired.nested" || v.Collapsed("desired.list") || v.Collapsed("desired.nested") {
		t.Fatalf("after C then E: cursor %q, list collapsed %v, nested collapsed %v; want nested, both open",
			v.CursorPath(), v.Collapsed("desired.list"), v.Collapsed("desired.nested"))
	}
	if n := len(v.VisibleNodes()); n != 10 {
		t.Fatalf("after E %d nodes visible, want all 10", n)
	}
}

// TestTwinTreeLiveUpdate: a live update keeps the collapsed nodes that
// still exist and the cursor on its node (though members were added above
// it), marks the collapsed node holding a change, and forgets nodes that
// were removed.
func TestTwinTreeLiveUpdate(t *testing.T) {
	f, tm := openTree(t, 120, 40)
	tuitest.Keys(tm, "down", "down", "h", "down", "h") // list collapsed, cursor on nested, collapsed
	tuitest.WaitFor(t, tm, "›   ▸ nested {1 key}")
	f.patch(t, `{"added": {"c": 1}, "nested": {"b": 2}}`)
	tuitest.WaitFor(t, tm, "›•  ▸ nested {2 keys}", " •  ▾ added")
	f.patch(t, `{"list": null}`)
	tuitest.WaitFor(t, tm, "version 5  etag")
	_, v := twinOf(t, tm)
	if v.CursorPath() != "desired.nested" || !v.Collapsed("desired.nested") {
		t.Fatalf("after live updates: cursor %q, nested collapsed %v; want the cursor on desired.nested, collapsed", v.CursorPath(), v.Collapsed("desired.nested"))
	}
	if v.Collapsed("desired.list") {
		t.Fatal("desired.list was removed from the twin but is still remembered as collapsed")
	}
}

// TestTwinTreeGolden80x24 and 120x40: the tree with list collapsed and the
// cursor on it.
func TestTwinTreeGolden80x24(t *testing.T) {
	_, tm := openTree(t, 80, 24)
	tuitest.Keys(tm, "down", "down", "enter")
	m, _ := twinOf(t, tm)
	tuitest.Golden(t, m.Render())
}

func TestTwinTreeGolden120x40(t *testing.T) {
	_, tm := openTree(t, 120, 40)
	tuitest.Keys(tm, "down", "down", "enter")
	m, _ := twinOf(t, tm)
	tuitest.Golden(t, m.Render())
}

// TestTwinTreeMetadata: m shows $metadata (collapsed until opened) and
// $version in the tree as in the JSON, and the tags tab is a tree of its
// own.
func TestTwinTreeMetadata(t *testing.T) {
	_, tm := openTree(t, 120, 40)
	tuitest.Keys(tm, "m")
	tuitest.WaitFor(t, tm, "$version: 3", "    ▸ $metadata {5 keys}")
	tuitest.Keys(tm, "E")
	tuitest.WaitFor(t, tm, "    ▾ $metadata", "$lastUpdatedVersion: 3")
	tuitest.Keys(tm, "tab", "tab") // side by side: to reported, then to the tags
	_, v := twinOf(t, tm)
	if got := v.VisibleNodes(); !slices.Equal(got, []string{"tags"}) {
		t.Fatalf("tags tab shows nodes %v, want the empty tags alone", got)
	}
}
