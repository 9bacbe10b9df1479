package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func openT(t testing.TB, dir string) *FileStore {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s Store, key, value string, expect int64) int64 {
	t.Helper()
	v, err := s.Put(key, []byte(value), expect)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func get(t testing.TB, s Store, key string) Record {
	t.Helper()
	r, err := s.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// abandon releases s as a crash would: no Close, so no REVISION written.
func abandon(s *FileStore) {
	s.recFile.Close()
	s.lockFile.Close()
}

func TestCRUD(t *testing.T) {
	s := openT(t, t.TempDir())
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
	if _, err := s.Get("devices/d1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete("devices/d1", Any); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "devices/d1") {
		t.Fatalf("second Delete: %v, want ErrNotFound naming the key", err)
	}
	if recs, _ := s.List(""); len(recs) != 0 {
		t.Fatalf("List after Delete = %+v", recs)
	}
}

func TestValuesAreCopies(t *testing.T) {
	s := openT(t, t.TempDir())
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

func TestCAS(t *testing.T) {
	s := openT(t, t.TempDir())
	v1 := put(t, s, "k", `1`, 0)

	_, err := s.Put("k", []byte(`2`), 0)
	var ce *ConflictError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || ce.Current != v1 || ce.Expect != 0 || ce.Key != "k" {
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
	v3 := put(t, s, "k", `3`, Any)
	v4 := put(t, s, "new", `4`, Any)
	if v3 <= v2 || v4 <= v3 {
		t.Fatalf("versions %d, %d, %d not increasing", v2, v3, v4)
	}
	if _, err := s.Put("k", []byte(`5`), -2); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expect -2: %v, want ErrInvalid", err)
	}
	if r := get(t, s, "k"); r.Version != v3 || string(r.Value) != "3" {
		t.Fatalf("failed Puts changed the record: %+v", r)
	}
}

func TestDeleteCAS(t *testing.T) {
	s := openT(t, t.TempDir())
	v1 := put(t, s, "k", `1`, 0)
	v2 := put(t, s, "k", `2`, v1)
	var ce *ConflictError
	if err := s.Delete("k", v1); !errors.As(err, &ce) || ce.Current != v2 {
		t.Fatalf("Delete with stale expect: %v", err)
	}
	if err := s.Delete("k", 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("Delete expecting no record: %v", err)
	}
	if err := s.Delete("missing", 5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of a missing record: %v", err)
	}
	if err := s.Delete("k", Any); err != nil {
		t.Fatal(err)
	}
	put(t, s, "k", `3`, 0)
	if err := s.Delete("k", v2); !errors.Is(err, ErrConflict) {
		t.Fatalf("Delete with a version from before the delete: %v", err)
	}
}

func TestListPrefix(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	keys := []string{
		"devices/a", "devices/a:b", "devices/a%2F", "devices/$edgeAgent", "devices/A",
		"devices/a/modules/$edgeAgent/twin", "devices/a/modules/m1/twin", "devices/ab",
		"devices/a(1)", "devices/a.b", "devices/a-b", "devices/a_b", "devices/a+b",
		"devices/#*?!,=@'", "other/a", "devices0/x",
	}
	for i, k := range keys {
		put(t, s, k, strconv.Itoa(i), 0)
	}
	check := func(s Store, prefix string) {
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
	prefixes := []string{"", "devices/", "devices/a", "devices/a/", "devices/a%", "devices/$", "devices/A",
		"devices/a/modules/m1/twin", "devices/a/modules/m1/twinx", "nothing", "devices", "z"}
	for _, p := range prefixes {
		check(s, p)
	}
	s.Close()
	s = openT(t, dir)
	for _, p := range prefixes {
		check(s, p)
	}
}

func TestKeyValidation(t *testing.T) {
	s := openT(t, t.TempDir())
	bad := []string{
		"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/..", "a b", "é", "a\x00b", `a"b`, `a\b`,
		"a~b", "a<b", "a\nb", strings.Repeat("a", MaxKeyLen+1),
	}
	for _, k := range bad {
		_, err := s.Put(k, []byte(`1`), Any)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(%q): %v, want ErrInvalid", k, err)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(k[:min(len(k), 64)])[:len(strconv.Quote(k[:min(len(k), 64)]))-1]) {
			t.Errorf("Put(%q): error %q does not name the key", k, err)
		}
		if _, err := s.Get(k); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get(%q): %v, want ErrInvalid", k, err)
		}
		if err := s.Delete(k, Any); !errors.Is(err, ErrInvalid) {
			t.Errorf("Delete(%q): %v, want ErrInvalid", k, err)
		}
	}
	good := []string{
		"a", "A-Za-z0-9-:.+%_#*?!(),=@$'", "..a/a..", ".hidden", "con", "NUL", "com1/lpt9",
		strings.Repeat("x/", MaxKeyLen/2-1) + "xx", strings.Repeat("Ab", 300),
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

func TestValueValidation(t *testing.T) {
	s := openT(t, t.TempDir())
	for _, v := range []string{"", "{", `{"a":}`, "nul", `"a" "b"`, "\xff"} {
		_, err := s.Put("devices/d1", []byte(v), Any)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "devices/d1") {
			t.Errorf("Put value %q: %v, want ErrInvalid naming the key", v, err)
		}
	}
	for _, v := range []string{"null", "1", `"s"`, "[]", " {\"a\" : [1, 2]}\n", `{"k":"\u00e9 é"}`} {
		put(t, s, "devices/d1", v, Any)
		if r := get(t, s, "devices/d1"); string(r.Value) != v {
			t.Errorf("value %q came back as %q", v, r.Value)
		}
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	want := map[string]Record{}
	var maxV int64
	for i := range 200 {
		key := fmt.Sprintf("devices/D%d/modules/m%d/twin", i%37, i%5)
		val := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", i*97%9000))
		v := put(t, s, key, val, Any)
		want[key] = Record{key, v, []byte(val)}
		maxV = max(maxV, v)
	}
	for key, r := range want {
		if r.Version%3 == 0 {
			if err := s.Delete(key, r.Version); err != nil {
				t.Fatal(err)
			}
			delete(want, key)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	recs, err := s.List("")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(want) {
		t.Fatalf("reopened store has %d records, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		w := want[r.Key]
		if r.Version != w.Version || string(r.Value) != string(w.Value) {
			t.Errorf("%s: got v%d %.40s, want v%d %.40s", r.Key, r.Version, r.Value, w.Version, w.Value)
		}
	}
	if v := put(t, s, "new", `1`, 0); v != maxV+1 {
		t.Errorf("first version after a clean reopen = %d, want %d", v, maxV+1)
	}
}

// TestVersionsAfterDelete checks that a version from before a delete never matches the
// record created again, even when the deleted record had the highest version in the store
// and the store was closed cleanly or crashed in between.
func TestVersionsAfterDelete(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			put(t, s, "other", `0`, 0)
			old := put(t, s, "k", `1`, 0)
			old = put(t, s, "k", `2`, old)
			if err := s.Delete("k", old); err != nil {
				t.Fatal(err)
			}
			if crash {
				abandon(s)
			} else if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openT(t, dir)
			if _, err := s.Put("k", []byte(`3`), old); !errors.Is(err, ErrConflict) {
				t.Fatalf("Put expecting the deleted version: %v, want ErrConflict", err)
			}
			if v := put(t, s, "k", `3`, 0); v <= old {
				t.Fatalf("recreated record has version %d, not above the deleted %d", v, old)
			}
			if _, err := s.Put("k", []byte(`4`), old); !errors.Is(err, ErrConflict) {
				t.Fatalf("Put expecting the deleted version: %v, want ErrConflict", err)
			}
		})
	}
}

func TestWatch(t *testing.T) {
	s := openT(t, t.TempDir())
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
	if ev := <-ch; ev.Type != Put || ev.Record.Version <= v5 || string(ev.Record.Value) != "6" {
		t.Fatalf("event %+v", ev)
	}
	if err := s.Delete("devices/d1/b", Any); err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.Type != Delete || ev.Record.Version <= v5 || ev.Record.Value != nil {
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
func TestWatchSlowReader(t *testing.T) {
	s := openT(t, t.TempDir())
	ch := s.Watch(context.Background(), "")
	const n = 300
	for i := range n {
		put(t, s, "k"+strconv.Itoa(i%7), strconv.Itoa(i), Any)
	}
	for i := range n {
		ev := <-ch
		if string(ev.Record.Value) != strconv.Itoa(i) {
			t.Fatalf("event %d has value %s", i, ev.Record.Value)
		}
	}
}

func receive(t *testing.T, ch <-chan Event, n int) []string {
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

func waitClosed(t *testing.T, ch <-chan Event) {
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

func TestClosed(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "k", `1`, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get("k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get: %v", err)
	}
	if _, err := s.List(""); !errors.Is(err, ErrClosed) {
		t.Errorf("List: %v", err)
	}
	if _, err := s.Put("k", []byte(`1`), Any); !errors.Is(err, ErrClosed) {
		t.Errorf("Put: %v", err)
	}
	if err := s.Delete("k", Any); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete: %v", err)
	}
}

func TestLockSameProcess(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	want := fmt.Sprintf("data dir %s is in use by pid %d (another outpost running?)", dir, os.Getpid())
	if !errors.Is(err, ErrLocked) || err.Error() != want {
		t.Fatalf("second Open: %v, want ErrLocked %q", err, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, dir) // free again after Close
	put(t, s2, "k", `1`, 0)
}

const lockChildEnv = "OUTPOST_STORE_TEST_LOCK_DIR"

// TestLockChild runs in a child process of TestLockOtherProcess.
func TestLockChild(t *testing.T) {
	dir := os.Getenv(lockChildEnv)
	if dir == "" {
		t.Skip("runs as a child of TestLockOtherProcess")
	}
	s, err := Open(dir)
	if err != nil {
		fmt.Printf("RESULT %v\n", err)
		if errors.Is(err, ErrLocked) {
			fmt.Println("LOCKED")
		}
		return
	}
	fmt.Println("RESULT opened")
	s.Close()
}

func TestLockOtherProcess(t *testing.T) {
	dir := t.TempDir()
	run := func() string {
		t.Helper()
		out, err := childCommand(t, "TestLockChild", lockChildEnv+"="+dir).Output()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return string(out)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := run()
	want := fmt.Sprintf("RESULT data dir %s is in use by pid %d (another outpost running?)\nLOCKED\n", dir, os.Getpid())
	if !strings.Contains(out, want) {
		t.Fatalf("child with the store open said %q, want %q", out, want)
	}
	s.Close()
	if out := run(); !strings.Contains(out, "RESULT opened\n") {
		t.Fatalf("child after Close said %q", out)
	}
}

func TestFileModes(t *testing.T) {
	if isWindows {
		t.Skip("no Unix modes on Windows")
	}
	dir := filepath.Join(t.TempDir(), "data", "store")
	s := openT(t, dir)
	for i := range 5 {
		put(t, s, "k"+strconv.Itoa(i), `1`, Any)
		put(t, s, "k"+strconv.Itoa(i), `2`, Any)
	}
	s.Close()
	check := func(path string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	check(dir, 0o700)
	check(filepath.Join(dir, "records"), 0o700)
	check(filepath.Join(dir, "LOCK"), 0o600)
	check(filepath.Join(dir, "REVISION"), 0o600)
	ents, _ := os.ReadDir(filepath.Join(dir, "records"))
	if len(ents) != 5 {
		t.Errorf("records dir has %d files after Close, want 5", len(ents))
	}
	for _, e := range ents {
		check(filepath.Join(dir, "records", e.Name()), 0o600)
	}
}

func TestTempFilesRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	put(t, s, "k", `1`, 0)
	s.Close()
	leftovers := []string{"records/new-123.tmp", "records/spare-7.tmp", "REVISION.99.tmp", ".REVISION.tmp-42"}
	for _, name := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(`{"key":"x`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openT(t, dir)
	for _, name := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Open (%v)", name, err)
		}
	}
	if recs, _ := s.List(""); len(recs) != 1 {
		t.Errorf("List = %+v", recs)
	}
}

func TestDamagedFile(t *testing.T) {
	damage := map[string]func(b []byte) []byte{
		"truncated":      func(b []byte) []byte { return b[:40] },
		"empty":          func(b []byte) []byte { return nil },
		"flipped header": func(b []byte) []byte { b[30] ^= 1; return b },
		"flipped value":  func(b []byte) []byte { b[strings.Index(string(b), "some")] = 'S'; return b },
		"not a record":   func(b []byte) []byte { return []byte(`{"a":1}`) },
		"trailing bytes": func(b []byte) []byte { return append(b, 'x') },
		"other key":      func(b []byte) []byte { return encodeRecord("other", 1, []byte(`1`)) },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir)
			put(t, s, "devices/D1", `{"a":"some value"}`, 0)
			s.Close()
			path := filepath.Join(dir, "records", "devices%2F%44"+"1.json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f(b), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = Open(dir)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("Open: %v, want an error naming %s", err, path)
			}
			t.Log(err)
			// Moving it aside, as the error says, lets Open succeed: the failed Open
			// released the lock.
			if err := os.Rename(path, filepath.Join(dir, "aside")); err != nil {
				t.Fatal(err)
			}
			openT(t, dir)
		})
	}
}

func TestConcurrentWriters(t *testing.T) {
	s := openT(t, t.TempDir())
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
					} else if !errors.Is(err, ErrConflict) {
						t.Error(err)
						return
					}
				}
				put(t, s, fmt.Sprintf("own/%d", w), `{}`, Any)
				_, _ = s.List("own/")
			}
		})
	}
	wg.Wait()
	if r := get(t, s, "shared"); string(r.Value) != strconv.Itoa(writers*incs) {
		t.Fatalf("shared counter = %s, want %d", r.Value, writers*incs)
	}
}

func TestRecordFormat(t *testing.T) {
	for _, val := range []string{`1`, `{"a":"b"}`, " [1,\n2] ", `"` + strings.Repeat("x", 5000) + `"`} {
		b := encodeRecord("devices/d1", 42, []byte(val))
		if len(b)%blockSize != 0 {
			t.Errorf("file of %d bytes, not a multiple of %d", len(b), blockSize)
		}
		var doc struct {
			Key    string
			V      int64
			Len    int
			Value  json.RawMessage
			CRC32C string
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("record file is not JSON: %v\n%s", err, b)
		}
		if doc.Key != "devices/d1" || doc.V != 42 || doc.Len != len(val) || len(doc.CRC32C) != 8 {
			t.Errorf("record file %+v", doc)
		}
		key, v, value, err := parseRecord(b)
		if err != nil || key != "devices/d1" || v != 42 || string(value) != val {
			t.Errorf("parseRecord = %q %d %q %v", key, v, value, err)
		}
	}
}

func TestFileName(t *testing.T) {
	keys := []string{
		"a", "A", "a/b", "a%2Fb", "a%2fb", "A/B", "$edgeAgent", "%24edgeAgent", "con", "CON", "con.x",
		"%63on", "nul/x", "com1", "lpt0.json", "x.tmp", "x.json", "..x", "a:b",
		strings.Repeat("a", 200), strings.Repeat("a", 199) + "b", strings.Repeat("A", 1000),
	}
	seen := map[string]string{}
	for _, k := range keys {
		name := fileName(k)
		if len(name) > 143 {
			t.Errorf("fileName(%.20q) has %d bytes", k, len(name))
		}
		if !strings.HasSuffix(name, ".json") || strings.ContainsAny(name, "/\\:*?\"<>|") {
			t.Errorf("fileName(%q) = %q", k, name)
		}
		if reservedOnWindows([]byte(strings.TrimSuffix(name, ".json"))) {
			t.Errorf("fileName(%q) = %q is reserved on Windows", k, name)
		}
		folded := strings.ToLower(name)
		if other, ok := seen[folded]; ok {
			t.Errorf("keys %q and %q share file %q (ignoring case)", k, other, name)
		}
		seen[folded] = k
	}
	if got := fileName("devices/Dev1/modules/$edgeAgent"); got != "devices%2F%44ev1%2Fmodules%2F%24edge%41gent.json" {
		t.Errorf("fileName = %q", got)
	}
}

func TestKeyList(t *testing.T) {
	var l keyList
	var want []string
	rnd := uint64(1)
	next := func() string {
		rnd = rnd*6364136223846793005 + 1442695040888963407
		return strconv.FormatUint(rnd>>40%5000, 36)
	}
	for i := range 20000 {
		k := next()
		j, found := slices.BinarySearch(want, k)
		if i%3 == 0 {
			l.remove(k)
			if found {
				want = slices.Delete(want, j, j+1)
			}
		} else {
			l.insert(k)
			if !found {
				want = slices.Insert(want, j, k)
			}
		}
	}
	var got []string
	l.ascend("", func(k string) bool { got = append(got, k); return true })
	if !slices.Equal(got, want) {
		t.Fatalf("keyList has %d keys, want %d", len(got), len(want))
	}
	for _, c := range l.chunks {
		if len(c) == 0 || len(c) > maxChunk {
			t.Fatalf("chunk of %d keys", len(c))
		}
	}
	got = got[:0]
	l.ascend("3", func(k string) bool { got = append(got, k); return len(got) < 10 })
	i, _ := slices.BinarySearch(want, "3")
	if !slices.Equal(got, want[i:i+10]) {
		t.Fatalf("ascend from 3 = %q, want %q", got, want[i:i+10])
	}
	l2 := newKeyList(want)
	got = got[:0]
	l2.ascend("", func(k string) bool { got = append(got, k); return true })
	if !slices.Equal(got, want) {
		t.Fatal("newKeyList lost keys")
	}
}

// TestSparesReused checks that replaced and deleted files are reused, whatever their size,
// and that reused files hold exactly the new record.
func TestSparesReused(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	sizes := []int{10, 5000, 10, 10, 9000, 20, 5000}
	var v int64
	for i := range 60 {
		val := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", sizes[i%len(sizes)]))
		v = put(t, s, "k", val, Any)
		if i%10 == 4 {
			if err := s.Delete("k", v); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := s.Get("k"); err == nil && string(r.Value) != val {
			t.Fatalf("put %d: read back %.30s", i, r.Value)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "records"))
	if len(ents) > 1+3 { // the record, and a spare for each of its 3 sizes
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("records/ holds %q: spares are not reused", names)
	}
	s.Close()
	s = openT(t, dir)
	if r := get(t, s, "k"); r.Version != v || !strings.HasPrefix(string(r.Value), `{"i":59,`) {
		t.Errorf("after reopen: %+v", r)
	}
}

func TestRange(t *testing.T) {
	s := openT(t, t.TempDir())
	for _, k := range []string{"a/1", "a/2", "a/3", "a/4", "b/1", "a0"} {
		if _, err := s.Put(k, []byte(`1`), Any); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(recs []Record) string {
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
