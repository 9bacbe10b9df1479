package hub

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/outpost-edge/outpost/internal/query"
)

// flatTwin is a twin as the query index holds it: its JSON (the store's own
// record bytes, shared, never changed) and where each value is in it. That
// costs 12 bytes a value, where decoding the twin into maps would cost
// kilobytes.
type flatTwin struct {
	raw    []byte
	leaves []leaf // sorted by path
}

// leaf is a value of a twin: an object, array or scalar at a path, in
// raw[off:end]. $metadata is left out (queries that read it decode the twin).
type leaf struct {
	path     uint32
	off, end uint32
}

// flatten indexes a twin's JSON (held under x.mu: it numbers new paths).
func (x *twinIndex) flatten(raw []byte) (flatTwin, bool) {
	return flatten(x.paths, &x.scratch, raw)
}

// flatten indexes a twin's JSON, numbering the paths it meets in paths, with
// *scratch as its working space.
func flatten(paths map[string]uint32, scratch *[]leaf, raw []byte) (flatTwin, bool) {
	f := flattener{paths: paths, raw: raw, leaves: (*scratch)[:0]}
	ok := f.value(true) && f.skipSpace() == len(raw)
	*scratch = f.leaves
	if !ok {
		return flatTwin{}, false
	}
	sortLeaves(f.leaves)
	return flatTwin{raw: raw, leaves: slices.Clone(f.leaves)}, true
}

func sortLeaves(l []leaf) {
	slices.SortFunc(l, func(a, b leaf) int { return cmp.Compare(a.path, b.path) })
}

type flattener struct {
	paths  map[string]uint32 // numbers of paths; nil: none recorded
	raw    []byte
	i      int
	leaves []leaf
	path   []byte // of the value being read
}

func (f *flattener) skipSpace() int {
	for f.i < len(f.raw) && (f.raw[f.i] == ' ' || f.raw[f.i] == '\n' || f.raw[f.i] == '\t' || f.raw[f.i] == '\r') {
		f.i++
	}
	return f.i
}

// value reads the value at f.i and, with record, records it (and what is
// inside it) under f.path, empty for the twin itself.
func (f *flattener) value(record bool) bool {
	n := len(f.path)
	defer func() { f.path = f.path[:n] }()
	start := f.skipSpace()
	if start >= len(f.raw) {
		return false
	}
	switch f.raw[start] {
	case '{':
		f.i++
		if f.skipSpace() < len(f.raw) && f.raw[f.i] == '}' {
			f.i++
			break
		}
		for {
			f.skipSpace()
			ks := f.i
			if !f.str() {
				return false
			}
			key, ok := keyBytes(f.raw[ks:f.i])
			if !ok || f.skipSpace() >= len(f.raw) || f.raw[f.i] != ':' {
				return false
			}
			f.i++
			rec := record && string(key) != "$metadata"
			if rec {
				if n > 0 {
					f.path = append(f.path, '.')
				}
				f.path = append(f.path, key...)
			}
			if !f.value(rec) {
				return false
			}
			f.path = f.path[:n]
			if f.skipSpace() >= len(f.raw) {
				return false
			}
			f.i++
			if f.raw[f.i-1] == '}' {
				break
			}
			if f.raw[f.i-1] != ',' {
				return false
			}
		}
	case '[':
		f.i++
		if f.skipSpace() < len(f.raw) && f.raw[f.i] == ']' {
			f.i++
			break
		}
		for k := 0; ; k++ {
			if record {
				f.path = append(strconv.AppendInt(append(f.path, '['), int64(k), 10), ']')
			}
			if !f.value(record) {
				return false
			}
			f.path = f.path[:n]
			if f.skipSpace() >= len(f.raw) {
				return false
			}
			f.i++
			if f.raw[f.i-1] == ']' {
				break
			}
			if f.raw[f.i-1] != ',' {
				return false
			}
		}
	case '"':
		if !f.str() {
			return false
		}
	default:
		for f.i < len(f.raw) && !endsScalar(f.raw[f.i]) {
			f.i++
		}
		if f.i == start {
			return false
		}
	}
	if record && n > 0 {
		id, ok := f.paths[string(f.path)] // no allocation for a path seen before
		if !ok {
			id = uint32(len(f.paths))
			f.paths[string(f.path)] = id
		}
		f.leaves = append(f.leaves, leaf{path: id, off: uint32(start), end: uint32(f.i)})
	}
	return true
}

// str moves past the string at f.i.
func (f *flattener) str() bool {
	if f.i >= len(f.raw) || f.raw[f.i] != '"' {
		return false
	}
	for f.i++; f.i < len(f.raw); f.i++ {
		switch f.raw[f.i] {
		case '\\':
			f.i++
		case '"':
			f.i++
			return true
		}
	}
	return false
}

func endsScalar(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// keyBytes is unquote for a member name, without allocating when it has no
// escapes (the common case: it then shares b, which the caller only reads
// while b lives). A hub indexing 50,000 module twins at start reads
// millions of names: as strings they were most of its garbage.
func keyBytes(b []byte) ([]byte, bool) {
	if len(b) >= 2 && bytes.IndexByte(b, '\\') < 0 {
		return b[1 : len(b)-1], true
	}
	s, ok := unquote(b)
	return []byte(s), ok
}

func unquote(b []byte) (string, bool) {
	if len(b) < 2 {
		return "", false
	}
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b[1 : len(b)-1]), true
	}
	var s string
	return s, json.Unmarshal(b, &s) == nil
}

// decodeValue decodes one value of a flat twin, as encoding/json would.
// A string without escapes shares b's memory, which is never changed (the
// store's record bytes): a scan then allocates nothing for it.
func decodeValue(b []byte) (any, bool) {
	switch b[0] {
	case '"':
		if len(b) >= 2 && bytes.IndexByte(b, '\\') < 0 {
			return unsafe.String(unsafe.SliceData(b[1:]), len(b)-2), true
		}
		return unquote(b)
	case 't':
		return true, true
	case 'f':
		return false, true
	case 'n':
		return nil, true
	case '{', '[':
		var v any
		return v, json.Unmarshal(b, &v) == nil
	}
	n, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	return n, err == nil
}

// twinView is a live index entry as a query.Getter; read it under x.mu,
// with the paths of one query (it caches path ids by query.Path.Slot).
// With raw, it reads the twin's JSON for each path instead of the flat
// index: slower, but it has $metadata.
type twinView struct {
	x   *twinIndex
	e   *indexEntry
	ids []int64 // by slot: path id + 1, -1 for a path no twin has, 0 not looked up
	raw bool
}

func (v *twinView) Get(p *query.Path) (any, bool) {
	e := v.e
	switch p.Key {
	case "deviceId":
		return e.deviceID, true
	case "moduleId":
		return e.moduleID, e.moduleID != ""
	case "connectionState":
		s := v.x.connectionState(e)
		return s, s != ""
	}
	if e.moduleID == "" {
		id := e.identity()
		switch p.Key {
		case "status":
			return id.status, id.status != ""
		case "capabilities":
			if id.iotEdge == nil {
				return nil, false
			}
			return map[string]any{"iotEdge": *id.iotEdge}, true
		case "capabilities.iotEdge":
			if id.iotEdge == nil {
				return nil, false
			}
			return *id.iotEdge, true
		case "deviceScope":
			return id.scope, id.scope != ""
		case "parentScopes":
			if id.parentScope == "" {
				return nil, false
			}
			return []any{id.parentScope}, true
		case "parentScopes[0]":
			return id.parentScope, id.parentScope != ""
		}
	}
	if isConfigurationsPath(p.Key) {
		return configurationsValue(e.configs, p.Key)
	}
	t := e.twin
	if t.raw == nil {
		t = v.x.fresh[collectionOf(e.moduleID != "")]
	}
	if v.raw {
		b, ok := lookupRaw(t.raw, p.Key)
		if !ok {
			return nil, false
		}
		return decodeValue(b)
	}
	if p.Slot >= len(v.ids) {
		v.ids = append(v.ids, make([]int64, p.Slot+1-len(v.ids))...)
	}
	id := v.ids[p.Slot]
	if id == 0 {
		id = -1
		if n, ok := v.x.paths[p.Key]; ok {
			id = int64(n) + 1
		}
		v.ids[p.Slot] = id
	}
	if id < 0 {
		return nil, false
	}
	i, found := slices.BinarySearchFunc(t.leaves, uint32(id-1), func(l leaf, id uint32) int { return cmp.Compare(l.path, id) })
	if !found {
		return nil, false
	}
	l := t.leaves[i]
	return decodeValue(t.raw[l.off:l.end])
}

// lookupRaw finds the value at path key (as query.Path.Key: names joined by
// ".", array indexes as "[n]") in a twin's JSON without decoding it, for the
// paths the flat index leaves out ($metadata).
func lookupRaw(raw []byte, key string) ([]byte, bool) {
	f := flattener{raw: raw}
	for key != "" {
		var name string
		index := -1
		if key[0] == '[' {
			end := strings.IndexByte(key, ']')
			n, err := strconv.Atoi(key[1:max(end, 1)])
			if end < 0 || err != nil {
				return nil, false
			}
			index, key = n, key[end+1:]
		} else {
			end := strings.IndexAny(key, ".[")
			if end < 0 {
				end = len(key)
			}
			name, key = key[:end], key[end:]
		}
		key = strings.TrimPrefix(key, ".")
		if !f.enter(name, index) {
			return nil, false
		}
	}
	start := f.skipSpace()
	if !f.value(false) {
		return nil, false
	}
	return raw[start:f.i], true
}

// enter moves f.i to the value of member name of the object at f.i (or to
// element index of the array there).
func (f *flattener) enter(name string, index int) bool {
	if f.skipSpace() >= len(f.raw) {
		return false
	}
	open, close := byte('{'), byte('}')
	if index >= 0 {
		open, close = '[', ']'
	}
	if f.raw[f.i] != open {
		return false
	}
	f.i++
	if f.skipSpace() < len(f.raw) && f.raw[f.i] == close {
		return false
	}
	for n := 0; ; n++ {
		if index >= 0 {
			if n == index {
				return true
			}
		} else {
			f.skipSpace()
			ks := f.i
			if !f.str() {
				return false
			}
			k, ok := keyBytes(f.raw[ks:f.i])
			if !ok || f.skipSpace() >= len(f.raw) || f.raw[f.i] != ':' {
				return false
			}
			f.i++
			if string(k) == name {
				return true
			}
		}
		if !f.value(false) || f.skipSpace() >= len(f.raw) || f.raw[f.i] != ',' {
			return false
		}
		f.i++
	}
}
