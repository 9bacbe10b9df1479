package hubview

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/outpost-edge/outpost/tui/components"
)

// sideBySideFrom is the width from which the tree shows desired and
// reported side by side (below it, one above the other).
const sideBySideFrom = 100

// sideBySide says whether the tree shows desired and reported side by side:
// the cursor then moves within the focused side (v.side), tab goes to the
// other.
func (v *Twin) sideBySide() bool { return v.tree && v.tab == 0 && v.Width >= sideBySideFrom }

// sidePos is where the cursor was on a side of the side-by-side tree.
type sidePos struct {
	path           string
	cursor, offset int
}

// switchSide focuses side to (0 desired, 1 reported), the cursor back
// where it was on it.
func (v *Twin) switchSide(to int) {
	if to == v.side {
		return
	}
	v.sidePos[v.side] = sidePos{v.cursorPath, v.cursor, v.offset}
	v.side = to
	p := v.sidePos[to]
	v.cursorPath, v.cursor, v.offset = p.path, p.cursor, p.offset
}

// sideOf is the side of the section holding path.
func sideOf(path string) int {
	if path == "reported" || strings.HasPrefix(path, "reported.") || strings.HasPrefix(path, "reported[") {
		return 1
	}
	return 0
}

// roots are the sections the cursor moves in, as trees: the tab's, or
// side by side the focused one.
func (v *Twin) roots() []treeRoot {
	all := v.allRoots()
	if v.sideBySide() {
		return all[v.side : v.side+1]
	}
	return all
}

// allRoots are the sections of the tab shown, as trees.
func (v *Twin) allRoots() []treeRoot {
	sec := sectionsOf(v.doc)
	val := func(name string) any {
		if v.meta {
			return sec[name]
		}
		return withoutMeta(sec[name])
	}
	if v.tab == 1 {
		return []treeRoot{{"tags", "tags", val("tags")}}
	}
	return []treeRoot{
		{"desired", fmt.Sprintf("desired ($version %d)", v.tw.DesiredVersion()), val("desired")},
		{"reported", fmt.Sprintf("reported ($version %d)", v.tw.ReportedVersion()), val("reported")},
	}
}

// nodes returns the visible tree nodes and puts the cursor on the node of
// cursorPath (a live update may have moved it), or keeps its index when
// that node is gone.
func (v *Twin) nodes() []tnode {
	ns := treeLines(v.roots(), v.collapsed.closed)
	for i, n := range ns {
		if n.path == v.cursorPath {
			v.cursor = i
			return ns
		}
	}
	v.cursor = max(min(v.cursor, len(ns)-1), 0)
	if len(ns) > 0 {
		v.cursorPath = ns[v.cursor].path
	}
	return ns
}

func (v *Twin) moveTo(ns []tnode, i int) {
	if len(ns) == 0 {
		return
	}
	v.cursor = max(min(i, len(ns)-1), 0)
	v.cursorPath = ns[v.cursor].path
}

func (v *Twin) setCollapsed(path string, c bool) {
	if v.collapsed == nil {
		v.collapsed = folds{}
	}
	v.collapsed[path] = c
}

// treeKey handles the keys of the tree; false when msg is not one of them.
func (v *Twin) treeKey(msg tea.KeyPressMsg) bool {
	if v.tw == nil {
		return false
	}
	k := v.KeyMap
	ns := v.nodes()
	if len(ns) == 0 {
		return false
	}
	cur := ns[v.cursor]
	switch {
	case key.Matches(msg, k.Up):
		v.moveTo(ns, v.cursor-1)
	case key.Matches(msg, k.Down):
		v.moveTo(ns, v.cursor+1)
	case key.Matches(msg, k.PageUp):
		v.moveTo(ns, v.cursor-max(v.Height-3, 1))
	case key.Matches(msg, k.PageDown):
		v.moveTo(ns, v.cursor+max(v.Height-3, 1))
	case key.Matches(msg, k.Home):
		v.moveTo(ns, 0)
	case key.Matches(msg, k.End):
		v.moveTo(ns, len(ns)-1)
	case key.Matches(msg, k.Select), key.Matches(msg, k.Toggle):
		if cur.container {
			v.setCollapsed(cur.path, cur.open)
		}
	case key.Matches(msg, k.Right):
		switch {
		case cur.container && !cur.open:
			v.setCollapsed(cur.path, false)
		case cur.container && v.cursor+1 < len(ns) && ns[v.cursor+1].depth > cur.depth:
			v.moveTo(ns, v.cursor+1) // into the first child
		}
	case key.Matches(msg, k.Left):
		if cur.container && cur.open {
			v.setCollapsed(cur.path, true)
			break
		}
		for i := v.cursor - 1; i >= 0; i-- { // up to the parent
			if ns[i].depth < cur.depth {
				v.moveTo(ns, i)
				break
			}
		}
	case key.Matches(msg, k.ExpandAll): // side by side, the focused side's
		for p := range containerPaths(v.roots()) {
			v.setCollapsed(p, false)
		}
	case key.Matches(msg, k.CollapseAll):
		// Every object and array but the sections themselves.
		for p := range containerPaths(v.roots()) {
			v.setCollapsed(p, true)
		}
		for _, r := range v.roots() {
			v.collapsed[r.path] = false
		}
		// The cursor goes to the visible node holding it.
		for p := v.cursorPath; p != ""; p = parentPath(p) {
			if ns := treeLines(v.roots(), v.collapsed.closed); indexOf(ns, p) >= 0 {
				v.cursorPath = p
				break
			}
		}
	default:
		return false
	}
	return true
}

func indexOf(ns []tnode, path string) int {
	for i, n := range ns {
		if n.path == path {
			return i
		}
	}
	return -1
}

// parentPath is the path of the member holding path ("" at a section).
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// pruneCollapsed forgets the folds of paths that the twin no longer has:
// a path that comes back later starts as new ones do.
func (v *Twin) pruneCollapsed() {
	if len(v.collapsed) == 0 {
		return
	}
	sec := sectionsOf(v.doc)
	have := containerPaths([]treeRoot{{"desired", "", sec["desired"]}, {"reported", "", sec["reported"]}, {"tags", "", sec["tags"]}})
	for p := range v.collapsed {
		if !have[p] {
			delete(v.collapsed, p)
		}
	}
}

// litUnder says whether path, or (when collapsed) a member under it, was
// changed by the last live update.
func (v *Twin) litUnder(n tnode) bool {
	if v.changed[n.path] {
		return true
	}
	if !n.container || n.open {
		return false
	}
	for p := range v.changed {
		if strings.HasPrefix(p, n.path+".") || strings.HasPrefix(p, n.path+"[") {
			return true
		}
	}
	return false
}

// treeView renders the tree, one line per visible node, scrolled to keep
// the cursor in view. The cursor is marked ›, changed members •. Side by
// side, each side scrolls on its own, and only the focused one shows its
// cursor.
func (v *Twin) treeView() string {
	ns := v.nodes()
	h := max(v.Height-2, 1)
	if !v.sideBySide() {
		return strings.Join(v.treeLines(ns, v.cursor, &v.offset, v.Width, h, true), "\n")
	}
	w := (v.Width - 1) / 2
	sides := [2][]string{}
	sides[v.side] = v.treeLines(ns, v.cursor, &v.offset, w, h, true)
	o := 1 - v.side
	other := treeLines(v.allRoots()[o:o+1], v.collapsed.closed)
	p := &v.sidePos[o]
	if i := indexOf(other, p.path); i >= 0 {
		p.cursor = i
	}
	p.cursor = max(min(p.cursor, len(other)-1), 0)
	sides[o] = v.treeLines(other, p.cursor, &p.offset, v.Width-w-1, h, false)
	left, right := sides[0], sides[1]
	lines := make([]string, 0, max(len(left), len(right)))
	for i := 0; i < len(left) || i < len(right); i++ {
		l, r := strings.Repeat(" ", w), ""
		if i < len(left) {
			l = left[i]
		}
		if i < len(right) {
			r = right[i]
		}
		lines = append(lines, l+"│"+r)
	}
	return strings.Join(lines, "\n")
}

// treeLines renders ns in at most h lines of width w, from *offset moved
// to keep cursor in view; focused marks and lights the cursor's line.
func (v *Twin) treeLines(ns []tnode, cursor int, offset *int, w, h int, focused bool) []string {
	st := v.Styles
	if cursor < *offset {
		*offset = cursor
	}
	if cursor >= *offset+h {
		*offset = cursor - h + 1
	}
	*offset = max(min(*offset, len(ns)-h), 0)
	end := min(*offset+h, len(ns))
	lines := make([]string, 0, end-*offset)
	for i := *offset; i < end; i++ {
		n := ns[i]
		mark := "  "
		lit := v.litUnder(n)
		switch {
		case i == cursor && focused && lit:
			mark = "›•"
		case i == cursor && focused:
			mark = "› "
		case lit:
			mark = " •"
		}
		line := components.Fit(mark+n.text(), w)
		switch {
		case i == cursor && focused:
			line = st.Selected.Render(line)
		case lit:
			line = st.Changed.Render(line)
		case n.depth == 0:
			line = st.Title.Render(line)
		}
		lines = append(lines, line)
	}
	return lines
}

// TreeMode says whether the twin is shown as a tree (else as JSON).
func (v *Twin) TreeMode() bool { return v.tree }

// CursorPath is the path of the tree node under the cursor (desired.a).
func (v *Twin) CursorPath() string {
	if v.tw != nil {
		v.nodes()
	}
	return v.cursorPath
}

// Collapsed says whether the tree node at path is collapsed.
func (v *Twin) Collapsed(path string) bool { return v.collapsed.closed(path) }

// VisibleNodes returns the paths of the tree nodes shown, in order (side
// by side, the desired side's, then the reported side's).
func (v *Twin) VisibleNodes() []string {
	if v.tw == nil {
		return nil
	}
	var out []string
	for _, n := range treeLines(v.allRoots(), v.collapsed.closed) {
		out = append(out, n.path)
	}
	return out
}

// SideBySide says whether the tree shows desired and reported side by
// side.
func (v *Twin) SideBySide() bool { return v.sideBySide() }

// FocusedSide is the side of the side-by-side tree the cursor is on:
// "desired" or "reported".
func (v *Twin) FocusedSide() string { return [...]string{"desired", "reported"}[v.side] }
