package hubview

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/outpost-edge/outpost/tui/components"
)

// roots are the sections of the tab shown, as trees.
func (v *Twin) roots() []treeRoot {
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
func (v *Twin) treeKey(msg tea.KeyMsg) bool {
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
	case key.Matches(msg, k.ExpandAll):
		v.collapsed = folds{}
		for p := range containerPaths(v.roots()) {
			v.collapsed[p] = false
		}
	case key.Matches(msg, k.CollapseAll):
		// Every object and array but the sections themselves.
		v.collapsed = containerPaths(v.roots())
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
// the cursor in view. The cursor is marked ›, changed members •.
func (v *Twin) treeView() string {
	st := v.Styles
	ns := v.nodes()
	h := max(v.Height-2, 1)
	if v.cursor < v.offset {
		v.offset = v.cursor
	}
	if v.cursor >= v.offset+h {
		v.offset = v.cursor - h + 1
	}
	v.offset = max(min(v.offset, len(ns)-h), 0)
	end := min(v.offset+h, len(ns))
	lines := make([]string, 0, end-v.offset)
	for i := v.offset; i < end; i++ {
		n := ns[i]
		mark := "  "
		lit := v.litUnder(n)
		switch {
		case i == v.cursor && lit:
			mark = "›•"
		case i == v.cursor:
			mark = "› "
		case lit:
			mark = " •"
		}
		line := components.Fit(mark+n.text(), v.Width)
		switch {
		case i == v.cursor:
			line = st.Selected.Render(line)
		case lit:
			line = st.Changed.Render(line)
		case n.depth == 0:
			line = st.Title.Render(line)
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
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

// VisibleNodes returns the paths of the tree nodes shown, in order.
func (v *Twin) VisibleNodes() []string {
	if v.tw == nil {
		return nil
	}
	var out []string
	for _, n := range v.nodes() {
		out = append(out, n.path)
	}
	return out
}
