package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
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
		"padding byte":   func(b []byte) []byte { b[len(b)-100] = 'x'; return b },
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

func TestIsPadding(t *testing.T) {
	for _, tc := range []struct {
		b    string
		want bool
	}{
		{"", true},
		{"\n", true},
		{"\n\n", true},
		{"\n" + strings.Repeat(" ", 4000) + "\n", true},
		{"\n" + strings.Repeat(" ", blockSize) + "\n", true},
		{"\n" + strings.Repeat(" ", blockSize+5) + "\n", true},
		{" \t\r\n ", true},
		{"\n" + strings.Repeat(" ", 2000) + "\t" + strings.Repeat(" ", 2000) + "\n", true},
		{"\n" + strings.Repeat(" ", 2000) + "x" + strings.Repeat(" ", 2000) + "\n", false},
		{"\n" + strings.Repeat(" ", 4000) + "x", false},
		{"x" + strings.Repeat(" ", 4000) + "\n", false},
		{"\n\x00\n", false},
	} {
		if got := isPadding([]byte(tc.b)); got != tc.want {
			t.Errorf("isPadding(%q) = %v, want %v", tc.b, got, tc.want)
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
		if got := string(appendFileName([]byte("con"), k)); got != "con"+name {
			t.Errorf("appendFileName(con, %q) = %q, want con%s", k, got, name)
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
	// Where the kernel can, a record is installed by exchanging it with its temp file
	// (which then holds the old record, the spare); else by a link and a rename.
	for _, exchange := range []bool{true, false} {
		t.Run(fmt.Sprintf("exchange=%v", exchange), func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir)
			s.noExchange.Store(!exchange)
			names := func() (names []string, linked bool) {
				ents, _ := os.ReadDir(filepath.Join(dir, "records"))
				for _, e := range ents {
					names = append(names, e.Name())
					// A spare made by a link (or a delete) has a name from spares.reserve.
					linked = linked || strings.HasPrefix(e.Name(), "spare-")
				}
				return names, linked
			}
			for i := range 3 {
				put(t, s, "k", fmt.Sprintf(`{"i":%d}`, i), Any)
			}
			if n, linked := names(); runtime.GOOS == "linux" && linked == exchange {
				t.Errorf("records/ holds %q after 3 puts: with exchange=%v, a spare made by a link: %v", n, exchange, linked)
			}
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
			if n, _ := names(); len(n) > 1+3 { // the record, and a spare for each of its 3 sizes
				t.Errorf("records/ holds %q: spares are not reused", n)
			}
			s.Close()
			s = openT(t, dir)
			if r := get(t, s, "k"); r.Version != v || !strings.HasPrefix(string(r.Value), `{"i":59,`) {
				t.Errorf("after reopen: %+v", r)
			}
		})
	}
}

// TestPutAfterRecordFileRemoved: a record whose file was removed behind the
// store's back (by hand) is written again by the next Put, as a new file, and
// reads back after a reopen.
func TestPutAfterRecordFileRemoved(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	put(t, s, "k", `{"n":1}`, Any)
	put(t, s, "k", `{"n":2}`, Any) // so that a spare of the size exists
	if err := os.Remove(filepath.Join(dir, "records", fileName("k"))); err != nil {
		t.Fatal(err)
	}
	v := put(t, s, "k", `{"n":3}`, Any)
	s.Close()
	s = openT(t, dir)
	if r := get(t, s, "k"); r.Version != v || string(r.Value) != `{"n":3}` {
		t.Errorf("after reopen: %+v", r)
	}
}
