package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/query"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
	"github.com/outpost-edge/outpost/internal/twin"
)

// TestPagedQueriesMatchIndex: a replica's queries, read page by page from
// etcd (more twins than one page of the scan), answer what the file store's
// in-memory index answers over the same records, page for page through
// continuation positions, with projections, aggregates, $metadata, TOP and
// the configurations of $edgeAgent twins.
func TestPagedQueriesMatchIndex(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fs, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	reg := registry.New(fs)
	const devices = pagedScanPage + 40
	for i := range devices {
		id := fmt.Sprintf("dev-%04d", i)
		if _, err := reg.CreateDevice(registry.Device{DeviceID: id, Status: map[bool]string{true: "disabled"}[i%7 == 0]}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			continue // twins never written
		}
		if _, err := reg.UpdateTwin(id, "", "", func(tw *twin.Twin) (bool, error) {
			return tw.PatchReported(fmt.Appendf(nil, `{"temperature":%d,"fw":"1.%d"}`, i%40, i%4), now)
		}); err != nil {
			t.Fatal(err)
		}
		mid := fmt.Sprintf("m%d", i%2)
		if _, err := reg.CreateModule(registry.Module{DeviceID: id, ModuleID: mid}); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.UpdateTwin(id, mid, "", func(tw *twin.Twin) (bool, error) {
			return tw.PatchDesired(fmt.Appendf(nil, `{"interval":%d}`, i%5), now)
		}); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 { // configurations on the $edgeAgent twin
			st := fmt.Appendf(nil, `{"configurations":{"prod":{"status":%q}}}`, map[bool]string{true: "Applied", false: "Targeted"}[i%10 == 0])
			if _, err := fs.Put(deployStateKind+"/"+id, st, store.Any); err != nil {
				t.Fatal(err)
			}
		}
	}
	recs, err := fs.List("")
	if err != nil {
		t.Fatal(err)
	}
	es := etcdtest.Start(t, 1).Open(t)
	for i := 0; i < len(recs); i += 100 {
		var ops []store.Op
		for _, r := range recs[i:min(i+100, len(recs))] {
			ops = append(ops, store.PutOp(r.Key, r.Value, store.Any))
		}
		if _, err := es.Txn(ops...); err != nil {
			t.Fatal(err)
		}
	}

	clock := func() time.Time { return now }
	indexed := &Hub{index: newTwinIndex(clock)}
	if err := indexed.index.load(context.Background(), fs); err != nil {
		t.Fatal(err)
	}
	paged := &Hub{index: newTwinIndex(clock)}
	paged.index.paged = es
	hurried := &Hub{index: newTwinIndex(clock)} // answers after every page of the scan
	hurried.index.paged, hurried.index.pageTime = es, time.Nanosecond

	for _, q := range []string{
		"SELECT * FROM devices",
		"SELECT * FROM devices.modules",
		"SELECT deviceId, properties.reported.temperature AS t FROM devices WHERE properties.reported.temperature > 20",
		"SELECT * FROM devices WHERE status = 'disabled' OR properties.reported.fw = '1.2'",
		"SELECT deviceId, moduleId FROM devices.modules WHERE properties.desired.interval = 3",
		"SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[prod]].status = 'Applied'",
		"SELECT deviceId FROM devices WHERE IS_DEFINED(properties.reported.$metadata.temperature)",
		"SELECT properties.reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw",
		"SELECT COUNT() AS n FROM devices.modules WHERE NOT IS_DEFINED(properties.desired.interval)",
		"SELECT TOP 130 deviceId FROM devices WHERE capabilities.iotEdge = true",
		"SELECT * FROM devices WHERE deviceId = 'nobody'",
		// Counts without paths (one count of identity keys), and queries
		// that read only identity fields (no twins read).
		"SELECT COUNT() AS n FROM devices",
		"SELECT COUNT() AS n, COUNT() AS m FROM devices.modules",
		"SELECT deviceId, status FROM devices WHERE status = 'disabled' OR capabilities.iotEdge = false",
		"SELECT deviceId, moduleId FROM devices.modules WHERE moduleId = 'm1'",
		"SELECT deviceId, deviceScope, parentScopes FROM devices",
		"SELECT status, COUNT() AS n FROM devices GROUP BY status",
	} {
		pq, err := query.Parse(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{0, 37} {
			want, wantPages := collectPages(t, indexed, pq, limit)
			got, gotPages := collectPages(t, paged, pq, limit)
			if len(want) == 0 && q != "SELECT * FROM devices WHERE deviceId = 'nobody'" {
				t.Errorf("%s: no rows on the index: the test's fleet does not exercise it", q)
			}
			if gotPages != wantPages || !reflect.DeepEqual(normJSON(got), normJSON(want)) {
				t.Errorf("%s, pages of %d: paged gave %d rows in %d pages, the index %d rows in %d pages\npaged: %.300s\nindex: %.300s",
					q, limit, len(got), gotPages, len(want), wantPages, jsonOf(got), jsonOf(want))
			}
			// Pages cut short by time: more of them, the same rows.
			if got, gotPages = collectPages(t, hurried, pq, limit); !reflect.DeepEqual(normJSON(got), normJSON(want)) {
				t.Errorf("%s, pages of %d cut short by time: %d rows in %d pages, the index %d rows", q, limit, len(got), gotPages, len(want))
			}
		}
	}

	// A twin in the last page of the scan: the pages before it are answered
	// empty, each with a continuation token, and the last has the twin.
	pq, err := query.Parse(fmt.Sprintf("SELECT deviceId, moduleId FROM devices.modules WHERE deviceId = 'dev-%04d' AND moduleId = '$edgeHub'", devices-1))
	if err != nil {
		t.Fatal(err)
	}
	if rows, pages := collectPages(t, hurried, pq, 10); len(rows) != 1 || pages < 3 {
		t.Errorf("the last module twin, in pages cut short by time: %d rows in %d pages, want 1 row after at least 2 empty pages", len(rows), pages)
	}

	var n int
	if err := paged.eachTwin(true, nil, func(d, m string) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	var want int
	indexed.eachTwin(true, nil, func(d, m string) bool { want++; return true })
	if n != want || n <= pagedScanPage {
		t.Errorf("eachTwin over module twins: %d paged, %d indexed (want more than one page of %d)", n, want, pagedScanPage)
	}

	es.Close() // a store that fails: the query's error, not an empty answer
	pq, _ = query.Parse("SELECT * FROM devices")
	if rows, _, err := paged.runQuery(pq, queryPos{}, 10); err == nil {
		t.Errorf("query on a closed store: %d rows and no error", len(rows))
	}
}

// collectPages runs q to its end in pages of limit (0: one page) and
// returns every row and the number of pages.
func collectPages(t *testing.T, h *Hub, q *query.Query, limit int) ([]any, int) {
	t.Helper()
	var all []any
	pos := queryPos{}
	for pages := 1; ; pages++ {
		rows, next, err := h.runQuery(q, pos, limit)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		all = append(all, rows...)
		if next == nil {
			return all, pages
		}
		if pages > 1000 {
			t.Fatalf("%s: no end after 1000 pages", q)
		}
		pos = *next
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
