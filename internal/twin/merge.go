package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
)

// writer builds the new nodes of one write to one section.
type writer struct {
	updated string // $lastUpdated of every node the write creates or changes
	version int64  // $lastUpdatedVersion of those nodes (desired only)
}

// edit is a change to one member of an object: a new node, or nil to delete.
type edit struct {
	key  string
	node *node
}

// merge applies patch to the object old (nil: a new, empty object) at path p
// and depth d, and returns the resulting object and whether it differs from
// old. With replace set, members of old that patch does not name are deleted,
// at every level (PUT semantics); otherwise it is an RFC 7386 merge. old is
// never modified; unchanged members are shared with it.
func (w *writer) merge(old *node, patch map[string]any, replace bool, p *path, d int) (*node, bool, error) {
	var few [8]string // most patches are small: no allocation
	keys := few[:0]
	for k := range patch {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	var edits []edit
	for _, k := range keys {
		cp := &path{parent: p, key: k}
		if reason := checkKey(k); reason != "" {
			return nil, false, cp.errorf(reason)
		}
		var prev *node
		if old != nil {
			prev = old.lookup(k)
		}
		v := patch[k]
		if v == nil {
			if prev != nil {
				edits = append(edits, edit{key: k})
			}
			continue
		}
		if obj, ok := v.(map[string]any); ok {
			if d+1 > MaxDepth {
				return nil, false, depthError(cp, d+1)
			}
			var base *node
			if prev != nil && prev.isObject() {
				base = prev
			}
			n, changed, err := w.merge(base, obj, replace, cp, d+1)
			if err != nil {
				return nil, false, err
			}
			if changed {
				edits = append(edits, edit{key: k, node: n})
			}
			continue
		}
		raw, err := appendLeaf(nil, v, cp, d+1, writeCheck)
		if err != nil {
			return nil, false, err
		}
		if prev != nil && !prev.isObject() && bytes.Equal(prev.raw, raw) {
			continue
		}
		edits = append(edits, edit{key: k, node: &node{raw: raw, updated: w.updated, version: w.version, size: len(raw)}})
	}

	var oldMembers []member
	if old != nil {
		oldMembers = old.members
		if replace {
			n := len(edits)
			for _, m := range oldMembers {
				if _, ok := patch[m.key]; !ok {
					edits = append(edits, edit{key: m.key})
				}
			}
			if len(edits) > n {
				slices.SortFunc(edits, func(a, b edit) int { return strings.Compare(a.key, b.key) })
			}
		}
		if len(edits) == 0 {
			return old, false, nil
		}
	}

	members := make([]member, 0, len(oldMembers)+len(edits))
	i, j := 0, 0
	for i < len(oldMembers) || j < len(edits) {
		switch {
		case j == len(edits) || (i < len(oldMembers) && oldMembers[i].key < edits[j].key):
			members = append(members, oldMembers[i])
			i++
			continue
		case i < len(oldMembers) && oldMembers[i].key == edits[j].key:
			i++
		}
		if e := edits[j]; e.node != nil {
			members = append(members, member{key: e.key, klen: quotedLen(e.key), node: e.node})
		}
		j++
	}
	return newObject(members, w.updated, w.version), true, nil
}

// decode parses one JSON value, keeping numbers as json.Number.
func decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

func invalidJSON(p *path, err error) *Error {
	return p.errorf("invalid JSON: " + err.Error())
}

// MergePatch applies the RFC 7386 JSON merge patch patch to the JSON document
// doc and returns the result as compact JSON with object keys sorted. It is
// the plain algorithm: no twin limits apply, and doc and patch may be any
// JSON values.
func MergePatch(doc, patch []byte) ([]byte, error) {
	target, err := decodeAt(doc, &path{key: "document"})
	if err != nil {
		return nil, err
	}
	p, err := decodeAt(patch, &path{key: "patch"})
	if err != nil {
		return nil, err
	}
	return appendLeaf(nil, mergeValue(target, p), nil, 0, noCheck)
}

func mergeValue(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, _ := target.(map[string]any)
	out := make(map[string]any, len(tm)+len(pm))
	for k, v := range tm {
		out[k] = v
	}
	for k, v := range pm {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergeValue(out[k], v)
	}
	return out
}

// Diff returns a JSON merge patch that turns the JSON document from into to
// (MergePatch(from, Diff(from, to)) equals to), as compact JSON with keys
// sorted. When both are objects the patch holds only what changed: null for
// removed members, new values for added or changed ones, nested objects
// diffed member by member, arrays whole. Otherwise the patch is to itself.
// A merge patch cannot set a member to null, so nulls inside to's objects
// are not reproduced (twin documents hold none).
func Diff(from, to []byte) ([]byte, error) {
	f, err := decodeAt(from, &path{key: "from"})
	if err != nil {
		return nil, err
	}
	t, err := decodeAt(to, &path{key: "to"})
	if err != nil {
		return nil, err
	}
	patch, _ := diffValue(f, t)
	return appendLeaf(nil, patch, nil, 0, noCheck)
}

// diffValue returns the merge patch from from to to, and whether they are
// equal.
func diffValue(from, to any) (any, bool) {
	fm, fok := from.(map[string]any)
	tm, tok := to.(map[string]any)
	if !fok || !tok {
		return to, equalValues(from, to)
	}
	out := map[string]any{}
	for k := range fm {
		if _, ok := tm[k]; !ok {
			out[k] = nil
		}
	}
	for k, tv := range tm {
		fv, ok := fm[k]
		if !ok {
			out[k] = tv
			continue
		}
		_, fobj := fv.(map[string]any)
		_, tobj := tv.(map[string]any)
		if fobj && tobj {
			if p, same := diffValue(fv, tv); !same {
				out[k] = p
			}
			continue
		}
		if !equalValues(fv, tv) {
			out[k] = tv
		}
	}
	return out, len(out) == 0
}

func equalValues(a, b any) bool {
	ab, err1 := appendLeaf(nil, a, nil, 0, noCheck)
	bb, err2 := appendLeaf(nil, b, nil, 0, noCheck)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}
