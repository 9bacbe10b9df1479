package hub

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/query"
)

// FuzzFlatTwin: the flat index of any JSON object reads, at every path it
// has, what reading the JSON directly (lookupRaw) reads; other input makes
// neither panic.
func FuzzFlatTwin(f *testing.F) {
	for _, s := range []string{
		`{"deviceId":"d","tags":{"a":[1,{"b":"x\"y"}],"c":null},"properties":{"desired":{"$metadata":{"$lastUpdated":"t"},"$version":2,"n":-1.5e3}}}`,
		`{ "a" : [ ] , "b" : { } , "c" : "\u00e9\\\/" , "d" : true , "e" : false }`,
		`{"a":{"b":{"c":[[1,2],[3]]}}}`,
		`[1,2]`, `"x"`, `{"a":}`, `{"a":1,}`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		x := newTwinIndex(time.Now)
		ft, ok := x.flatten(b)
		var doc map[string]any
		isObject := json.Unmarshal(b, &doc) == nil && doc != nil
		if !isObject || hasDuplicateOrOddKeys(b) {
			return // the store holds valid twins only: no panic is all that is asked
		}
		if !ok {
			t.Fatalf("flatten refused a JSON object: %s", b)
		}
		e := &indexEntry{deviceID: "d", moduleID: "m", live: true, twin: ft}
		has := map[uint32]bool{}
		for _, l := range ft.leaves {
			has[l.path] = true
		}
		for path, id := range x.paths {
			if !has[id] {
				continue // a path of the index's fresh twins
			}
			p := query.Path{Key: path}
			got, gok := (&twinView{x: x, e: e}).Get(&p)
			raw, rok := (&twinView{x: x, e: e, raw: true}).Get(&p)
			if path == "deviceId" || path == "moduleId" {
				continue // the entry's ids, not the JSON's
			}
			if !gok || !rok || !reflect.DeepEqual(normJSON(got), normJSON(raw)) {
				t.Fatalf("%s in %s: flat %v (%v), raw %v (%v)", path, b, got, gok, raw, rok)
			}
		}
	})
}

// hasDuplicateOrOddKeys reports JSON that encoding/json decodes but the
// index may read differently: a key twice in an object, an empty key, or
// one with ".", "[" or "]", which name paths (the twin code refuses
// duplicates, empty keys and "." on every write).
func hasDuplicateOrOddKeys(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, _ := dec.Token()
				s, _ := k.(string)
				if seen[s] || s == "" || strings.ContainsAny(s, ".[]") {
					return true
				}
				seen[s] = true
				if walk() {
					return true
				}
			}
			dec.Token()
		case json.Delim('['):
			for dec.More() {
				if walk() {
					return true
				}
			}
			dec.Token()
		}
		return false
	}
	return walk()
}
