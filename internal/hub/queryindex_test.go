package hub

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/query"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// fleetIndex is an index of n devices with m module twins each, shaped as
// scripts/bench/hubfill makes them.
func fleetIndex(t testing.TB, n, m int) *Hub {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	x := newTwinIndex(func() time.Time { return now })
	v := int64(0)
	for i := range n {
		id := fmt.Sprintf("device-%05d", i)
		v++
		x.apply(false, "devices/"+id, v, []byte(`{"deviceId":"`+id+`","status":"enabled","capabilities":{"iotEdge":true}}`))
		for j := range m {
			mid := fmt.Sprintf("module-%d", j)
			v++
			x.apply(false, "modules/"+id+"/"+mid, v, []byte(`{"deviceId":"`+id+`","moduleId":"`+mid+`"}`))
			tw := twin.New(id, mid, now)
			if _, err := tw.PatchDesired([]byte(`{"interval":5,"units":"C","alerts":{"high":30,"low":-5}}`), now); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.PatchReported(fmt.Appendf(nil, `{"temperature":%d.5,"firmware":"1.0.%d","list":[1,{"a":"x\"y"}]}`, i%40, j), now); err != nil {
				t.Fatal(err)
			}
			b, _ := tw.MarshalJSON()
			v++
			x.apply(false, "twins/"+id+"/"+mid, v, b)
		}
	}
	return &Hub{index: x}
}

// TestFlatTwinMatchesDecoding: every path of a flat twin reads what
// encoding/json decodes there, and a query matches the same twins read
// either way.
func TestFlatTwinMatchesDecoding(t *testing.T) {
	h := fleetIndex(t, 3, 2)
	x := h.index
	for _, e := range x.snapshot(true) {
		doc := x.fullDoc(e)
		for path := range x.paths {
			view := &twinView{x: x, e: e} // its cache is for one query
			c, err := query.ParseCondition("IS_DEFINED(" + path + ")")
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if c.MatchGetter(view) != c.Match(doc) {
				t.Errorf("%s: IS_DEFINED differs", path)
			}
			q, err := query.Parse("SELECT " + path + " AS v FROM devices.modules")
			if err != nil {
				t.Fatal(err)
			}
			view = &twinView{x: x, e: e}
			got, want := q.ProjectGetter(view)["v"], q.Project(doc)["v"]
			if !reflect.DeepEqual(normJSON(got), normJSON(want)) {
				t.Errorf("%s/%s %s: flat %v, decoded %v", e.deviceID, e.moduleID, path, got, want)
			}
		}
	}
	for _, cond := range []string{
		"properties.reported.list[1].a = 'x\"y'",
		"properties.reported.temperature > 1 AND properties.desired.alerts.low = -5",
		"STARTSWITH(properties.reported.firmware, '1.0.1')",
		"IS_OBJECT(properties.desired.alerts) AND NOT IS_DEFINED(properties.desired.$metadata)",
	} {
		c, err := query.ParseCondition(cond)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range x.snapshot(true) {
			got := c.MatchGetter(&twinView{x: x, e: e})
			if want := c.Match(x.fullDoc(e)); got != want && cond[:2] != "IS" || cond[:2] == "IS" && !got {
				t.Errorf("%s on %s/%s: flat %v", cond, e.deviceID, e.moduleID, got)
			}
			if got {
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s matches no twin", cond)
		}
	}
}

func normJSON(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// BenchmarkIndexScan is the scan alone (no HTTP): 10,000 devices × 5
// module twins, one query over every module twin.
func BenchmarkIndexScan(b *testing.B) {
	h := fleetIndex(b, 10000, 5)
	for _, q := range []string{
		"SELECT COUNT() AS n FROM devices.modules WHERE properties.desired.interval = 5 AND properties.reported.temperature > 20",
		"SELECT * FROM devices.modules WHERE properties.reported.firmware = '2.0.0'",
	} {
		pq, err := query.Parse(q)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(q[:30], func(b *testing.B) {
			for b.Loop() {
				h.runQuery(pq, queryPos{}, 100)
			}
		})
	}
}

// TestEachTwin: the hub-internal scan configurations use, in id order, with
// a condition over the index and one over $metadata (read from the twins).
func TestEachTwin(t *testing.T) {
	h := fleetIndex(t, 4, 3)
	for _, tc := range []struct{ cond, want string }{
		{"moduleId = 'module-1' AND properties.reported.temperature >= 1", "device-00001/module-1,device-00002/module-1,device-00003/module-1"},
		{"IS_DEFINED(properties.reported.$metadata.firmware) AND deviceId = 'device-00000'", "device-00000/module-0,device-00000/module-1,device-00000/module-2"},
	} {
		c, err := query.ParseCondition(tc.cond)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		h.eachTwin(true, c, func(d, m string) bool {
			got = append(got, d+"/"+m)
			return true
		})
		if s := fmt.Sprint(strings.Join(got, ",")); s != tc.want {
			t.Errorf("%s: %s, want %s", tc.cond, s, tc.want)
		}
	}
	n := 0
	h.eachTwin(false, nil, func(d, m string) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("eachTwin went on after fn returned false: %d calls", n)
	}
}

// TestRawViewMatchesDecoding: reading a path straight from a twin's JSON
// (what queries over $metadata do) gives what decoding the twin gives, for
// every path of the twin, $metadata ones included.
func TestRawViewMatchesDecoding(t *testing.T) {
	h := fleetIndex(t, 2, 2)
	x := h.index
	for _, e := range x.snapshot(true) {
		doc := x.fullDoc(e)
		var paths []string
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			if prefix != "" {
				paths = append(paths, prefix)
			}
			switch v := v.(type) {
			case map[string]any:
				for k, c := range v {
					if prefix != "" {
						k = prefix + "." + k
					}
					walk(k, c)
				}
			case []any:
				for i, c := range v {
					walk(fmt.Sprintf("%s[%d]", prefix, i), c)
				}
			}
		}
		walk("", doc)
		for _, p := range append(paths, "tags.nothing", "properties.reported.list[7]", "properties.desired.$metadata.nope") {
			q, err := query.Parse("SELECT " + p + " AS v FROM devices.modules")
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			got, want := q.ProjectGetter(&twinView{x: x, e: e, raw: true})["v"], q.Project(doc)["v"]
			if !reflect.DeepEqual(normJSON(got), normJSON(want)) {
				t.Errorf("%s/%s %s: raw %v, decoded %v", e.deviceID, e.moduleID, p, got, want)
			}
		}
		if len(paths) < 30 {
			t.Fatalf("only %d paths in %v", len(paths), doc)
		}
	}
}

// TestLoadTwinsMatchesApply: twins loaded at start in parallel (loadTwins,
// each part numbering paths on its own) read as twins applied one by one,
// and a twin the index already has at a later version is kept.
func TestLoadTwinsMatchesApply(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var recs []store.Record
	for i := range 1500 {
		id, mid := fmt.Sprintf("device-%05d", i/3), fmt.Sprintf("module-%d", i%3)
		tw := twin.New(id, mid, now)
		// Paths that only some twins have, met in a different order by each part.
		desired := fmt.Sprintf(`{"p%d":{"q%d":[%d,{"r":"s"}]},"common":%d}`, i%17, i%5, i, i%7)
		if _, err := tw.PatchDesired([]byte(desired), now); err != nil {
			t.Fatal(err)
		}
		b, _ := tw.MarshalJSON()
		if i%500 == 7 {
			b = []byte(`{"not":"closed"`) // not a twin's JSON: indexed as none
		}
		recs = append(recs, store.Record{Key: "twins/" + id + "/" + mid, Version: int64(i + 1), Value: b})
	}
	one := newTwinIndex(func() time.Time { return now })
	for _, r := range recs {
		one.apply(false, r.Key, r.Version, r.Value)
	}
	all := newTwinIndex(func() time.Time { return now })
	later := []byte(`{"deviceId":"device-00001","moduleId":"module-1","properties":{"desired":{"later":true}}}`)
	all.apply(false, "twins/device-00001/module-1", 1e6, later)
	all.loadTwins(recs)

	if len(all.paths) != len(one.paths)+1 { // + properties.desired.later
		t.Errorf("%d paths, want %d", len(all.paths), len(one.paths)+1)
	}
	var queries []*query.Query
	for path := range one.paths {
		q, err := query.Parse("SELECT " + path + " AS v FROM devices.modules")
		if err != nil {
			t.Fatal(err)
		}
		queries = append(queries, q)
	}
	for rest, want := range one.entities {
		got := all.entities[rest]
		if rest == "device-00001/module-1" {
			if got.twinVer != 1e6 || string(got.twin.raw) != string(later) {
				t.Errorf("%s: version %d %s, want the later one", rest, got.twinVer, got.twin.raw)
			}
			continue
		}
		if got == nil || got.twinVer != want.twinVer || (got.twin.raw == nil) != (want.twin.raw == nil) || len(got.twin.leaves) != len(want.twin.leaves) {
			t.Fatalf("%s: got %+v, want %+v", rest, got, want)
		}
		for _, q := range queries { // a view caches the path ids of one query
			g := q.ProjectGetter(&twinView{x: all, e: got})["v"]
			w := q.ProjectGetter(&twinView{x: one, e: want})["v"]
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("%s %s: loaded %v, applied %v", rest, q, g, w)
			}
		}
	}
}

// TestReadIdentity: readIdentity, one pass over a record's members, finds
// what looking each path up finds (readIdentity's former way).
func TestReadIdentity(t *testing.T) {
	byLookups := func(b []byte) identityFields {
		var f identityFields
		if v, ok := lookupRaw(b, "status"); ok {
			s, _ := decodeValue(v)
			f.status, _ = s.(string)
		}
		if v, ok := lookupRaw(b, "capabilities.iotEdge"); ok {
			if e, _ := decodeValue(v); e == true || e == false {
				edge := e == true
				f.iotEdge = &edge
			}
		}
		f.scope, f.parentScope = rawString(b, "deviceScope"), rawString(b, "parentScopes[0]")
		if f.scope == "" && (f.iotEdge == nil || *f.iotEdge) {
			if id, gen := rawString(b, "deviceId"), rawString(b, "generationId"); id != "" && gen != "" {
				f.scope = hubapi.EdgeScope(id, gen)
			}
		}
		return f
	}
	for _, doc := range []string{
		`{"deviceId":"d1","generationId":"63","etag":"","status":"enabled","authentication":{"type":"sas","status":"x"},"capabilities":{"iotEdge":true},"deviceScope":"ms-azure-iot-edge://d1-63"}`,
		`{"deviceId":"d1","generationId":"63","status":"disabled","capabilities":{"iotEdge":true}}`,
		`{"deviceId":"leaf","generationId":"1","capabilities":{"iotEdge":false},"deviceScope":"ms-azure-iot-edge://e-2","parentScopes":["ms-azure-iot-edge://e-2"]}`,
		`{"deviceId":"leaf","generationId":"1","capabilities":{"iotEdge":false}}`,
		`{"deviceId":"d","generationId":"1"}`,
		`{ "status" : "enabled" , "deviceId" : "d\u0031" , "generationId":"1", "capabilities" : { "iotEdge" : null } }`,
		`{"st\u0061tus":"escaped key","deviceId":"d","generationId":"1"}`,
		`{"status":"first","status":"second","parentScopes":[],"deviceScope":7}`,
		`{"status":5,"capabilities":[],"parentScopes":[null,"x"]}`,
		`{"parentScopes":{"0":"x"},"capabilities":{"iotEdge":"yes"}}`,
		`{}`,
		`[]`,
		`{"status":"enabled",`,
		`{"status":"enabled" "deviceId":"d"}`,
	} {
		got, want := readIdentity([]byte(doc)), byLookups([]byte(doc))
		if got.status != want.status || got.scope != want.scope || got.parentScope != want.parentScope ||
			(got.iotEdge == nil) != (want.iotEdge == nil) || got.iotEdge != nil && *got.iotEdge != *want.iotEdge {
			t.Errorf("readIdentity(%s) = %+v, want %+v", doc, got, want)
		}
	}
}
