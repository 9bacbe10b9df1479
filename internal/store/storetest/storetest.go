// Package storetest is the test suite every store.Store backend passes: the file
// store (internal/store) and etcd (internal/store/etcdstore) run it unchanged.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
)

// Opener returns a new, empty store for one test; the test closes it (or leaves
// that to t.Cleanup, which the Opener registers).
type Opener func(t testing.TB) store.Store

// Run runs every test of the suite on stores from open.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"CRUD", testCRUD},
		{"ValuesAreCopies", testValuesAreCopies},
		{"CAS", testCAS},
		{"DeleteCAS", testDeleteCAS},
		{"KeyValidation", testKeyValidation},
		{"ValueValidation", testValueValidation},
		{"ListPrefix", testListPrefix},
		{"Range", testRange},
		{"VersionsAfterDelete", testVersionsAfterDelete},
		{"Watch", testWatch},
		{"WatchSlowReader", testWatchSlowReader},
		{"WatchOrder", testWatchOrder},
		{"Closed", testClosed},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Txn", testTxn},
		{"TxnRace", testTxnRace},
		{"TxnCheck", testTxnCheck},
		{"TxnCheckRace", testTxnCheckRace},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

func put(t testing.TB, s store.Store, key, value string, expect int64) int64 {
	t.Helper()
	v, err := s.Put(key, []byte(value), expect)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func get(t testing.TB, s store.Store, key string) store.Record {
	t.Helper()
	r, err := s.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testCRUD(t *testing.T, open Opener) {
	s := open(t)
	v1 := put(t, s, "devices/d1", `{"a":1}`, 0)
	if v1 <= 0 {
		t.Fatalf("version %d, want > 0", v1)
	}
	if r := get(t, s, "devices/d1"); r.Key != "devices/d1" || r.Version != v1 || string(r.Value) != `{"a":1}` {
		t.Fatalf("Get = %+v", r)
	}
	v2 := put(t, s, "devices/d1", `{"a":2}`, v1)
	if v2 <= v1 {
		t.Fatalf("version after update %d, want > %d", v2, v1)
	}
	if r := get(t, s, "devices/d1"); r.Version != v2 || string(r.Value) != `{"a":2}` {
		t.Fatalf("Get after update = %+v", r)
	}
	recs, err := s.List("")
	if err != nil || len(recs) != 1 || recs[0].Version != v2 {
		t.Fatalf("List = %+v, %v", recs, err)
	}
	if err := s.Delete("devices/d1", v2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("devices/d1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete("devices/d1", store.Any); !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "devices/d1") {
		t.Fatalf("second Delete: %v, want ErrNotFound naming the key", err)
	}
	if recs, _ := s.List(""); len(recs) != 0 {
		t.Fatalf("List after Delete = %+v", recs)
	}
}

func testValuesAreCopies(t *testing.T, open Opener) {
	s := open(t)
	val := []byte(`{"a":1}`)
	put(t, s, "k", string(val), 0)
	if _, err := s.Put("k2", val, 0); err != nil {
		t.Fatal(err)
	}
	val[2] = 'b' // the caller's slice is not kept
	r := get(t, s, "k2")
	r.Value[2] = 'c' // nor is the returned one shared
	if got := get(t, s, "k2"); string(got.Value) != `{"a":1}` {
		t.Fatalf("value changed behind the store's back: %s", got.Value)
	}
}

func testCAS(t *testing.T, open Opener) {
	s := open(t)
	v1 := put(t, s, "k", `1`, 0)

	_, err := s.Put("k", []byte(`2`), 0)
	var ce *store.ConflictError
	if !errors.Is(err, store.ErrConflict) || !errors.As(err, &ce) || ce.Current != v1 || ce.Expect != 0 || ce.Key != "k" {
		t.Fatalf("create-only over an existing record: %v (%+v)", err, ce)
	}
	v2 := put(t, s, "k", `2`, v1)
	_, err = s.Put("k", []byte(`3`), v1)
	if !errors.As(err, &ce) || ce.Current != v2 || ce.Expect != v1 {
		t.Fatalf("stale expect: %v", err)
	}
	if want := fmt.Sprintf("expected version %d, found version %d", v1, v2); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	_, err = s.Put("missing", []byte(`1`), v2)
	if !errors.As(err, &ce) || ce.Current != 0 || !strings.Contains(err.Error(), "found no record") {
		t.Fatalf("expect on a missing record: %v", err)
	}
	v3 := put(t, s, "k", `3`, store.Any)
	v4 := put(t, s, "new", `4`, store.Any)
	if v3 <= v2 || v4 <= v3 {
		t.Fatalf("versions %d, %d, %d not increasing", v2, v3, v4)
	}
	if _, err := s.Put("k", []byte(`5`), -2); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("expect -2: %v, want ErrInvalid", err)
	}
	if r := get(t, s, "k"); r.Version != v3 || string(r.Value) != "3" {
		t.Fatalf("failed Puts changed the record: %+v", r)
	}
}

func testDeleteCAS(t *testing.T, open Opener) {
	s := open(t)
	v1 := put(t, s, "k", `1`, 0)
	v2 := put(t, s, "k", `2`, v1)
	var ce *store.ConflictError
	if err := s.Delete("k", v1); !errors.As(err, &ce) || ce.Current != v2 {
		t.Fatalf("Delete with stale expect: %v", err)
	}
	if err := s.Delete("k", 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Delete expecting no record: %v", err)
	}
	if err := s.Delete("missing", 5); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete of a missing record: %v", err)
	}
	if err := s.Delete("k", store.Any); err != nil {
		t.Fatal(err)
	}
	put(t, s, "k", `3`, 0)
	if err := s.Delete("k", v2); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Delete with a version from before the delete: %v", err)
	}
}

func testKeyValidation(t *testing.T, open Opener) {
	s := open(t)
	bad := []string{
		"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/..", "a b", "é", "a\x00b", `a"b`, `a\b`,
		"a~b", "a<b", "a\nb", strings.Repeat("a", store.MaxKeyLen+1),
	}
	for _, k := range bad {
		_, err := s.Put(k, []byte(`1`), store.Any)
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Put(%q): %v, want ErrInvalid", k, err)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(k[:min(len(k), 64)])[:len(strconv.Quote(k[:min(len(k), 64)]))-1]) {
			t.Errorf("Put(%q): error %q does not name the key", k, err)
		}
		if _, err := s.Get(k); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Get(%q): %v, want ErrInvalid", k, err)
		}
		if err := s.Delete(k, store.Any); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Delete(%q): %v, want ErrInvalid", k, err)
		}
	}
	good := []string{
		"a", "A-Za-z0-9-:.+%_#*?!(),=@$'", "..a/a..", ".hidden", "con", "NUL", "com1/lpt9",
		strings.Repeat("x/", store.MaxKeyLen/2-1) + "xx", strings.Repeat("Ab", 300),
	}
	for _, k := range good {
		if _, err := s.Put(k, []byte(`"v"`), 0); err != nil {
			t.Errorf("Put(%q): %v", k, err)
		}
	}
	recs, _ := s.List("")
	if len(recs) != len(good) {
		t.Errorf("List has %d records, want %d", len(recs), len(good))
	}
}

func testValueValidation(t *testing.T, open Opener) {
	s := open(t)
	for _, v := range []string{"", "{", `{"a":}`, "nul", `"a" "b"`, "\xff"} {
		_, err := s.Put("devices/d1", []byte(v), store.Any)
		if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "devices/d1") {
			t.Errorf("Put value %q: %v, want ErrInvalid naming the key", v, err)
		}
	}
	for _, v := range []string{"null", "1", `"s"`, "[]", " {\"a\" : [1, 2]}\n", `{"k":"\u00e9 é"}`} {
		put(t, s, "devices/d1", v, store.Any)
		if r := get(t, s, "devices/d1"); string(r.Value) != v {
			t.Errorf("value %q came back as %q", v, r.Value)
		}
	}
}

func testWatch(t *testing.T, open Opener) {
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	put(t, s, "devices/d1/before", `0`, 0) // before Watch: not seen
	all := s.Watch(ctx, "")
	d1 := s.Watch(ctx, "devices/d1/")

	v1 := put(t, s, "devices/d1/a", `1`, 0)
	put(t, s, "devices/d2/a", `2`, 0)
	v3 := put(t, s, "devices/d1/a", `3`, v1)
	if err := s.Delete("devices/d1/a", v3); err != nil {
		t.Fatal(err)
	}
	v5 := put(t, s, "devices/d1/b", `5`, 0)

	want := []string{"put devices/d1/a 1", "put devices/d1/a 3", "delete devices/d1/a <nil>", "put devices/d1/b 5"}
	got := receive(t, d1, len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("d1 watcher got %q, want %q", got, want)
	}
	if got := receive(t, all, 5); got[1] != "put devices/d2/a 2" || len(got) != 5 {
		t.Fatalf("all watcher got %q", got)
	}

	// Versions in events match the records.
	ch := s.Watch(ctx, "devices/d1/b")
	put(t, s, "devices/d1/b", `6`, v5)
	if ev := <-ch; ev.Type != store.Put || ev.Record.Version <= v5 || string(ev.Record.Value) != "6" {
		t.Fatalf("event %+v", ev)
	}
	if err := s.Delete("devices/d1/b", store.Any); err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.Type != store.Delete || ev.Record.Version <= v5 || ev.Record.Value != nil {
		t.Fatalf("delete event %+v", ev)
	}

	// A cancelled context closes its channel, and only its own.
	cctx, ccancel := context.WithCancel(ctx)
	c := s.Watch(cctx, "")
	ccancel()
	waitClosed(t, c)
	put(t, s, "devices/d1/c", `7`, 0)
	want = []string{"put devices/d1/b 6", "delete devices/d1/b <nil>", "put devices/d1/c 7"}
	if got := receive(t, d1, 3); !slices.Equal(got, want) {
		t.Fatalf("d1 after another watcher's cancel: %q, want %q", got, want)
	}

	// Close closes every channel, even with events not received.
	put(t, s, "devices/d1/d", `8`, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, all)
	waitClosed(t, d1)
	waitClosed(t, s.Watch(context.Background(), "")) // on a closed store
}

// TestWatchSlowReader checks that a watcher that does not read never blocks writers.
func testWatchSlowReader(t *testing.T, open Opener) {
	s := open(t)
	ch := s.Watch(context.Background(), "")
	const n = 300
	for i := range n {
		put(t, s, "k"+strconv.Itoa(i%7), strconv.Itoa(i), store.Any)
	}
	for i := range n {
		ev := <-ch
		if string(ev.Record.Value) != strconv.Itoa(i) {
			t.Fatalf("event %d has value %s", i, ev.Record.Value)
		}
	}
}

func testClosed(t *testing.T, open Opener) {
	s := open(t)
	put(t, s, "k", `1`, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get("k"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get: %v", err)
	}
	if _, err := s.List(""); !errors.Is(err, store.ErrClosed) {
		t.Errorf("List: %v", err)
	}
	if _, err := s.Put("k", []byte(`1`), store.Any); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Put: %v", err)
	}
	if err := s.Delete("k", store.Any); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Delete: %v", err)
	}
}

func testConcurrentWriters(t *testing.T, open Opener) {
	s := open(t)
	const writers, incs = 8, 15
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range incs {
				// A shared counter, incremented with CAS.
				for {
					r, err := s.Get("shared")
					var n, expect int64
					if err == nil {
						n, _ = strconv.ParseInt(string(r.Value), 10, 64)
						expect = r.Version
					}
					if _, err := s.Put("shared", []byte(strconv.FormatInt(n+1, 10)), expect); err == nil {
						break
					} else if !errors.Is(err, store.ErrConflict) {
						t.Error(err)
						return
					}
				}
				put(t, s, fmt.Sprintf("own/%d", w), `{}`, store.Any)
				_, _ = s.List("own/")
			}
		})
	}
	wg.Wait()
	if r := get(t, s, "shared"); string(r.Value) != strconv.Itoa(writers*incs) {
		t.Fatalf("shared counter = %s, want %d", r.Value, writers*incs)
	}
}

func testRange(t *testing.T, open Opener) {
	s := open(t)
	for _, k := range []string{"a/1", "a/2", "a/3", "a/4", "b/1", "a0"} {
		if _, err := s.Put(k, []byte(`1`), store.Any); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(recs []store.Record) string {
		var ks []string
		for _, r := range recs {
			ks = append(ks, r.Key)
		}
		return strings.Join(ks, ",")
	}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          string
	}{
		{"a/", "", 0, "a/1,a/2,a/3,a/4"},
		{"a/", "", 2, "a/1,a/2"},
		{"a/", "a/2", 2, "a/3,a/4"},
		{"a/", "a/4", 2, ""},
		{"a/", "a/25", 0, "a/3,a/4"},
		{"a/", "0", 1, "a/1"}, // after sorts before the prefix: from the start
		{"", "a/4", 0, "a0,b/1"},
	} {
		recs, err := s.Range(tc.prefix, tc.after, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(recs); got != tc.want {
			t.Errorf("Range(%q, %q, %d) = %s, want %s", tc.prefix, tc.after, tc.limit, got, tc.want)
		}
	}
}

func receive(t *testing.T, ch <-chan store.Event, n int) []string {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %q", got)
			}
			v := string(ev.Record.Value)
			if ev.Record.Value == nil {
				v = "<nil>"
			}
			got = append(got, fmt.Sprintf("%s %s %s", ev.Type, ev.Record.Key, v))
		case <-timeout:
			t.Fatalf("timed out after %q", got)
		}
	}
	return got
}

func waitClosed(t *testing.T, ch <-chan store.Event) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("channel not closed")
		}
	}
}

func testListPrefix(t *testing.T, open Opener) {
	s := open(t)
	FillListPrefix(t, s)
	CheckListPrefix(t, s)
}

// listPrefixKeys are keys whose prefixes a byte-wise or path-wise listing
// could confuse: each holds its index in the list as its value.
var listPrefixKeys = []string{
	"devices/a", "devices/a:b", "devices/a%2F", "devices/$edgeAgent", "devices/A",
	"devices/a/modules/$edgeAgent/twin", "devices/a/modules/m1/twin", "devices/ab",
	"devices/a(1)", "devices/a.b", "devices/a-b", "devices/a_b", "devices/a+b",
	"devices/#*?!,=@'", "other/a", "devices0/x",
}

// FillListPrefix writes the records CheckListPrefix lists, into an empty store.
func FillListPrefix(t testing.TB, s store.Store) {
	t.Helper()
	for i, k := range listPrefixKeys {
		put(t, s, k, strconv.Itoa(i), 0)
	}
}

// CheckListPrefix checks that List returns, for prefixes that a byte-wise or
// path-wise listing could confuse, exactly the records FillListPrefix wrote
// under them, sorted, with their values.
func CheckListPrefix(t testing.TB, s store.Store) {
	t.Helper()
	keys := listPrefixKeys
	check := func(prefix string) {
		t.Helper()
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		recs, err := s.List(prefix)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.Key)
			if want := strconv.Itoa(slices.Index(keys, r.Key)); string(r.Value) != want {
				t.Errorf("List(%q): %s = %s, want %s", prefix, r.Key, r.Value, want)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	for _, p := range []string{"", "devices/", "devices/a", "devices/a/", "devices/a%", "devices/$", "devices/A",
		"devices/a/modules/m1/twin", "devices/a/modules/m1/twinx", "nothing", "devices", "z"} {
		check(p)
	}
}

// testVersionsAfterDelete checks that a version from before a delete never matches the
// record created again, even when the deleted record had the highest version.
func testVersionsAfterDelete(t *testing.T, open Opener) {
	s := open(t)
	put(t, s, "other", `0`, 0)
	old := put(t, s, "k", `1`, 0)
	old = put(t, s, "k", `2`, old)
	if err := s.Delete("k", old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put("k", []byte(`3`), old); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Put expecting the deleted version: %v, want ErrConflict", err)
	}
	if v := put(t, s, "k", `3`, 0); v <= old {
		t.Fatalf("recreated record has version %d, not above the deleted %d", v, old)
	}
	if _, err := s.Put("k", []byte(`4`), old); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Put expecting the deleted version: %v, want ErrConflict", err)
	}
}

// testWatchOrder checks that concurrent writers' changes reach a watcher in commit
// order for each key: per key, versions rise and the last event is the record's state.
func testWatchOrder(t *testing.T, open Opener) {
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, "w/")
	const writers, writes = 4, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				key := fmt.Sprintf("w/k%d", (w+i)%3)
				if i%7 == 6 {
					if err := s.Delete(key, store.Any); err != nil && !errors.Is(err, store.ErrNotFound) {
						t.Error(err)
					}
					continue
				}
				if _, err := s.Put(key, []byte(strconv.Itoa(w*1000+i)), store.Any); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	final := map[string]store.Record{}
	recs, err := s.List("w/")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		final[r.Key] = r
	}
	last := map[string]store.Event{}
	lastV := map[string]int64{}
	seen := 0
	timeout := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-ch:
			seen++
			k := ev.Record.Key
			if ev.Type == store.Put {
				if ev.Record.Version <= lastV[k] {
					t.Fatalf("%s: put at version %d after an event at %d", k, ev.Record.Version, lastV[k])
				}
				lastV[k] = ev.Record.Version
			} else if ev.Record.Version != lastV[k] && lastV[k] != 0 {
				t.Fatalf("%s: delete of version %d, but the last put seen was %d", k, ev.Record.Version, lastV[k])
			}
			last[k] = ev
		case <-timeout:
			t.Fatalf("timed out after %d events; last %v, want the records %v", seen, last, final)
		}
		done = true
		for _, k := range []string{"w/k0", "w/k1", "w/k2"} {
			r, live := final[k]
			ev, ok := last[k]
			if live && (!ok || ev.Type != store.Put || ev.Record.Version != r.Version) || !live && ok && ev.Type != store.Delete {
				done = false
			}
		}
	}
}

func testTxn(t *testing.T, open Opener) {
	s := open(t)
	va := put(t, s, "a", `"a1"`, 0)
	vb := put(t, s, "b", `"b1"`, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := s.Watch(ctx, "")

	v, err := s.Txn(store.PutOp("a", []byte(`"a2"`), va), store.PutOp("c", []byte(`"c1"`), 0), store.DeleteOp("b", vb), store.DeleteOp("gone", store.Any))
	if err != nil {
		t.Fatal(err)
	}
	if v <= vb {
		t.Fatalf("Txn version %d, want above %d", v, vb)
	}
	for key, want := range map[string]string{"a": `"a2"`, "c": `"c1"`} {
		if r := get(t, s, key); string(r.Value) != want || r.Version != v {
			t.Errorf("%s = %+v, want %s at version %d", key, r, want, v)
		}
	}
	if _, err := s.Get("b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b after its delete: %v", err)
	}
	got := map[string]store.EventType{}
	for range 3 {
		select {
		case ev := <-events:
			got[ev.Record.Key] = ev.Type
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far %v, want 3", got)
		}
	}
	if got["a"] != store.Put || got["c"] != store.Put || got["b"] != store.Delete {
		t.Errorf("events %v", got)
	}

	// One stale version: nothing is written, the error names the key.
	_, err = s.Txn(store.PutOp("a", []byte(`"a3"`), v), store.PutOp("c", []byte(`"c2"`), va))
	var ce *store.ConflictError
	if !errors.As(err, &ce) || ce.Key != "c" || ce.Current != v {
		t.Fatalf("Txn with a stale version: %v, want a conflict on c", err)
	}
	if r := get(t, s, "a"); string(r.Value) != `"a2"` || r.Version != v {
		t.Errorf("a after a failed Txn: %+v", r)
	}
	if _, err := s.Txn(store.PutOp("d", []byte(`1`), 0), store.DeleteOp("e", 7)); !errors.As(err, &ce) || ce.Key != "e" || ce.Current != 0 {
		t.Errorf("Txn deleting a missing record at a version: %v, want a conflict on e", err)
	}
	if _, err := s.Txn(store.PutOp("x", []byte(`1`), 0), store.DeleteOp("x", store.Any)); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("Txn with a key twice: %v", err)
	}
	if _, err := s.Txn(store.PutOp("x", []byte(`{`), 0)); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Txn with bad JSON: %v", err)
	}
	if _, err := s.Txn(store.PutOp("x/../y", []byte(`1`), 0)); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Txn with a bad key: %v", err)
	}
	for _, k := range []string{"x", "d"} {
		if _, err := s.Get(k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after failed Txns: %v", k, err)
		}
	}
	if v, err := s.Txn(store.DeleteOp("nothing", store.Any)); err != nil || v != 0 {
		t.Errorf("Txn that changes nothing: %d, %v", v, err)
	}
	recs, _ := s.List("")
	if len(recs) != 2 || recs[0].Key != "a" || recs[1].Key != "c" || recs[0].Version != v {
		t.Fatalf("records after the Txns: %+v", recs)
	}
}

// testTxnCheck: a check makes a Txn depend on a record it does not write.
func testTxnCheck(t *testing.T, open Opener) {
	s := open(t)
	vm := put(t, s, "module", `"m"`, 0)
	v, err := s.Txn(store.CheckOp("module", vm), store.PutOp("twin", []byte(`"t1"`), 0), store.CheckOp("absent", 0))
	if err != nil {
		t.Fatalf("Txn with checks that hold: %v", err)
	}
	if r := get(t, s, "twin"); r.Version != v || string(r.Value) != `"t1"` {
		t.Errorf("twin = %+v, want \"t1\" at version %d", r, v)
	}
	if r := get(t, s, "module"); r.Version != vm || string(r.Value) != `"m"` {
		t.Errorf("module after a check = %+v, want it unchanged at version %d", r, vm)
	}
	if _, err := s.Get("absent"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("absent after a check that it is absent: %v", err)
	}

	vm2 := put(t, s, "module", `"m2"`, vm)
	var ce *store.ConflictError
	if _, err := s.Txn(store.CheckOp("module", vm), store.PutOp("twin", []byte(`"t2"`), v)); !errors.As(err, &ce) || ce.Key != "module" || ce.Current != vm2 {
		t.Fatalf("Txn checking a stale version: %v, want a conflict on module at %d", err, vm2)
	}
	if err := s.Delete("module", vm2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Txn(store.CheckOp("module", vm2), store.DeleteOp("twin", v)); !errors.As(err, &ce) || ce.Key != "module" || ce.Current != 0 {
		t.Fatalf("Txn checking a deleted record: %v, want a conflict on module", err)
	}
	if r := get(t, s, "twin"); r.Version != v || string(r.Value) != `"t1"` {
		t.Errorf("twin after failed Txns = %+v, want \"t1\" at version %d", r, v)
	}
	if v, err := s.Txn(store.CheckOp("twin", v), store.CheckOp("module", 0)); err != nil || v != 0 {
		t.Errorf("Txn of checks alone: %d, %v; want 0, nil", v, err)
	}
	for _, op := range []store.Op{store.CheckOp("twin", store.Any), {Key: "twin", Check: true, Delete: true, Expect: v}, {Key: "twin", Check: true, Value: []byte(`1`), Expect: v}} {
		if _, err := s.Txn(op); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Txn(%+v): %v, want ErrInvalid", op, err)
		}
	}
	if _, err := s.Txn(store.CheckOp("twin", v), store.PutOp("twin", []byte(`1`), v)); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("Txn checking and writing one key: %v", err)
	}
}

// testTxnCheckRace has writers add children while their owner exists (a check of
// the owner's version in each Txn) and deletes the owner meanwhile: no child is
// written after the owner is gone, and every acknowledged child is there.
func testTxnCheckRace(t *testing.T, open Opener) {
	s := open(t)
	vo := put(t, s, "owner", `{}`, 0)
	const writers = 4
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	started := make(chan struct{}, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range 1000 { // a few before the delete, then none (or 1,000: the check is ignored)
				key := fmt.Sprintf("child/%d-%d", w, i)
				_, err := s.Txn(store.CheckOp("owner", vo), store.PutOp(key, []byte(`1`), 0))
				if errors.Is(err, store.ErrConflict) {
					return // the owner is gone
				}
				if err != nil {
					t.Errorf("%s: %v", key, err)
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
				if i == 2 {
					started <- struct{}{}
				}
			}
		})
	}
	for range writers {
		<-started
	}
	if err := s.Delete("owner", vo); err != nil {
		t.Fatal(err)
	}
	atDelete, err := s.List("child/")
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	after, err := s.List("child/")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(atDelete) {
		t.Fatalf("%d children when the owner was deleted, %d after: a Txn checking the owner wrote after its delete", len(atDelete), len(after))
	}
	if len(after) != len(acked) {
		t.Fatalf("%d children acknowledged, %d in the store", len(acked), len(after))
	}
}

// testTxnRace has writers move units between two counters with Txns holding both
// versions: the total never changes, and every successful Txn is counted once.
func testTxnRace(t *testing.T, open Opener) {
	s := open(t)
	put(t, s, "acct/a", `100`, 0)
	put(t, s, "acct/b", `100`, 0)
	const writers, moves = 6, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := 0
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < moves; {
				a, b := get(t, s, "acct/a"), get(t, s, "acct/b")
				na, _ := strconv.Atoi(string(a.Value))
				nb, _ := strconv.Atoi(string(b.Value))
				d := 1 + (w+i)%3
				_, err := s.Txn(store.PutOp("acct/a", []byte(strconv.Itoa(na-d)), a.Version),
					store.PutOp("acct/b", []byte(strconv.Itoa(nb+d)), b.Version),
					store.PutOp(fmt.Sprintf("log/%d/%d", w, i), []byte(strconv.Itoa(d)), 0))
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				committed++
				mu.Unlock()
				i++
			}
		})
	}
	wg.Wait()
	a, b := get(t, s, "acct/a"), get(t, s, "acct/b")
	na, _ := strconv.Atoi(string(a.Value))
	nb, _ := strconv.Atoi(string(b.Value))
	logs, err := s.List("log/")
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, r := range logs {
		d, _ := strconv.Atoi(string(r.Value))
		moved += d
	}
	if na+nb != 200 || nb-100 != moved || len(logs) != committed || committed != writers*moves {
		t.Fatalf("a=%d b=%d, %d logged moves of %d units, %d committed; want a+b=200, b-100 = units moved, %d moves",
			na, nb, len(logs), moved, committed, writers*moves)
	}
	if a.Version != b.Version {
		t.Fatalf("a and b last written by one Txn have versions %d and %d", a.Version, b.Version)
	}
}
