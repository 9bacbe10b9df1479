package hubview

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// tnode is one visible line of a JSON tree: a member (or an array item, or
// a section's root) with its full path (desired.a.b, reported.list[2]).
type tnode struct {
	path      string
	depth     int
	label     string // the key, the index or the section's title
	container bool   // an object or an array (expandable)
	open      bool   // expanded (containers only)
	value     string // the scalar, or the summary of a container
}

// treeRoot is one section shown as a tree: its path (desired), its title
// and its value.
type treeRoot struct {
	path, title string
	val         any
}

// folds are the nodes the user collapsed (true) or expanded (false);
// the others are open, but for $metadata, which starts collapsed.
type folds map[string]bool

func (f folds) closed(path string) bool {
	if c, ok := f[path]; ok {
		return c
	}
	return strings.HasSuffix(path, ".$metadata")
}

// treeLines flattens roots into the visible nodes: members of collapsed
// containers are not visible. Keys are sorted as the JSON view sorts them.
func treeLines(roots []treeRoot, collapsed func(path string) bool) []tnode {
	var out []tnode
	for _, r := range roots {
		walkTree(&out, r.val, r.path, r.title, 0, collapsed)
	}
	return out
}

func walkTree(out *[]tnode, v any, path, label string, depth int, collapsed func(path string) bool) {
	n := tnode{path: path, depth: depth, label: label}
	if isEmpty(v) { // nothing to open: shown as the scalar {} or []
		b, _ := json.Marshal(v)
		n.value = string(b)
		*out = append(*out, n)
		return
	}
	switch x := v.(type) {
	case map[string]any:
		n.container, n.open = true, !collapsed(path)
		n.value = plural(len(x), "key", "keys", "{", "}")
		*out = append(*out, n)
		if !n.open {
			return
		}
		for _, k := range sortedKeys(x) {
			walkTree(out, x[k], joinKey(path, k), k, depth+1, collapsed)
		}
	case []any:
		n.container, n.open = true, !collapsed(path)
		n.value = plural(len(x), "item", "items", "[", "]")
		*out = append(*out, n)
		if !n.open {
			return
		}
		for i, e := range x {
			walkTree(out, e, path+"["+strconv.Itoa(i)+"]", "["+strconv.Itoa(i)+"]", depth+1, collapsed)
		}
	default:
		b, _ := json.Marshal(x)
		n.value = string(b)
		*out = append(*out, n)
	}
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

func plural(n int, one, many, open, close string) string {
	if n == 1 {
		return open + "1 " + one + close
	}
	return fmt.Sprintf("%s%d %s%s", open, n, many, close)
}

// sortedKeys returns m's keys sorted, $-keys last (as the JSON view).
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		di, dj := strings.HasPrefix(keys[i], "$"), strings.HasPrefix(keys[j], "$")
		if di != dj {
			return dj
		}
		return keys[i] < keys[j]
	})
	return keys
}

// containerPaths returns the paths of every object and array in roots.
func containerPaths(roots []treeRoot) map[string]bool {
	all := treeLines(roots, func(string) bool { return false })
	out := map[string]bool{}
	for _, n := range all {
		if n.container {
			out[n.path] = true
		}
	}
	return out
}

// text is the node's line without the cursor or highlight marks.
func (n tnode) text() string {
	ind := strings.Repeat("  ", n.depth)
	switch {
	case !n.container:
		return ind + "  " + n.label + ": " + n.value
	case n.open:
		return ind + "▾ " + n.label
	default:
		return ind + "▸ " + n.label + " " + n.value
	}
}
