package msgqueue

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func open(t *testing.T, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAppendReadAckReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	for i := range 100 {
		dests := []Dest{{Name: "upstream"}}
		if i%2 == 0 {
			dests = append(dests, Dest{Name: "input/b/in1"})
		}
		if _, err := l.AppendSync(Record{Dests: dests, Data: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	up := l.Pending("upstream", 0, 0)
	if len(up) != 100 || string(up[0].Data) != "m0" || string(up[99].Data) != "m99" {
		t.Fatalf("upstream has %d entries", len(up))
	}
	in := l.Pending("input/b/in1", 0, 10)
	if len(in) != 10 || string(in[1].Data) != "m2" {
		t.Fatalf("input: %d entries, second %q", len(in), in[1].Data)
	}
	l.Ack("upstream", up[39].Seq)
	if st := l.Stats("upstream"); st.Count != 60 || st.Bytes == 0 {
		t.Fatalf("stats after ack: %+v", st)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, Options{})
	defer l.Close()
	up = l.Pending("upstream", 0, 0)
	if len(up) != 60 || string(up[0].Data) != "m40" {
		t.Fatalf("after reopen: %d entries, first %q", len(up), up[0].Data)
	}
	if in := l.Pending("input/b/in1", 0, 0); len(in) != 50 {
		t.Fatalf("after reopen input has %d", len(in))
	}
	seq, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}}, Data: []byte("new")})
	if err != nil || seq != 101 {
		t.Fatalf("append after reopen: seq %d, %v", seq, err)
	}
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	for i := range 3 {
		if _, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}}, Data: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{40, 0, 0, 0, 1, 2}) // half a header
	f.Close()
	l = open(t, dir, Options{})
	if got := l.Pending("upstream", 0, 0); len(got) != 3 {
		t.Fatalf("%d entries after a torn tail, want 3", len(got))
	}
	if _, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}}, Data: []byte("m3")}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open(t, dir, Options{})
	defer l.Close()
	if got := l.Pending("upstream", 0, 0); len(got) != 4 || string(got[3].Data) != "m3" {
		t.Fatalf("%d entries after append past a cut tail", len(got))
	}
}

func TestExpiredCounted(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	l := open(t, dir, Options{Now: clock})
	for i := range 5 {
		exp := now.Add(time.Duration(i+1) * time.Minute)
		if _, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream", Expires: exp}, {Name: "input/b/x"}}, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(150 * time.Second)
	mu.Unlock()
	if got := l.Pending("upstream", 0, 0); len(got) != 3 {
		t.Fatalf("%d pending, want 3 (two expired)", len(got))
	}
	if st := l.Stats("upstream"); st.Expired != 2 || st.Count != 3 {
		t.Fatalf("stats %+v, want 2 expired and 3 left", st)
	}
	if st := l.Stats("input/"); st.Expired != 0 || st.Count != 5 {
		t.Fatalf("input stats %+v: expiry of one destination touched another", st)
	}
	l.Close()
	l = open(t, dir, Options{Now: clock})
	defer l.Close()
	if st := l.Stats("upstream"); st.Expired != 2 || st.Count != 3 {
		t.Fatalf("after reopen %+v", st)
	}
	// Later, the next one's time comes (each look-up skips the scan until
	// the earliest expiry left).
	mu.Lock()
	now = now.Add(60 * time.Second)
	mu.Unlock()
	if got := l.Pending("upstream", 0, 0); len(got) != 2 || string(got[0].Data) != "x" {
		t.Fatalf("%d pending at +210 s, want 2 (three expired)", len(got))
	}
	if st := l.Stats("upstream"); st.Expired != 3 || st.Count != 2 {
		t.Fatalf("stats at +210 s %+v, want 3 expired and 2 left", st)
	}
}

func TestFullRefusesAndWritesNothing(t *testing.T) {
	l := open(t, t.TempDir(), Options{MaxBytes: 10})
	defer l.Close()
	if _, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}}, Data: []byte("12345678")}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}}, Data: []byte("123")}); err != ErrFull {
		t.Fatalf("append past the bound: %v, want ErrFull", err)
	}
	if st := l.Stats(""); st.Count != 1 || st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
	l.Ack("upstream", 1)
	if _, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}}, Data: []byte("123")}); err != nil {
		t.Fatalf("append after the ack freed room: %v", err)
	}
}

func TestSegmentsRemovedOnceAcked(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	data := make([]byte, 1<<20)
	var last uint64
	for range 20 { // 20 MiB: three segments
		seq, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}}, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(segs) < 3 {
		t.Fatalf("%d segments, want at least 3", len(segs))
	}
	l.Ack("upstream", last)
	l.Close()
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(segs) != 1 {
		t.Fatalf("%d segments left after everything was acked, want the current one", len(segs))
	}
}

func TestConcurrentAppendsKeepOrderPerCaller(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	defer l.Close()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			var done sync.WaitGroup
			for i := range 500 {
				done.Add(1)
				l.Append(Record{Dests: []Dest{{Name: fmt.Sprintf("d%d", w)}}, Data: fmt.Appendf(nil, "%d", i)}, func(uint64, error) { done.Done() })
			}
			done.Wait()
		})
	}
	wg.Wait()
	for w := range 4 {
		got := l.Pending(fmt.Sprintf("d%d", w), 0, 0)
		if len(got) != 500 {
			t.Fatalf("d%d has %d", w, len(got))
		}
		for i, e := range got {
			if string(e.Data) != fmt.Sprint(i) {
				t.Fatalf("d%d entry %d is %q", w, i, e.Data)
			}
		}
	}
}

// TestValueKeptForItsReaders: a record's Value comes with it to the
// destinations that read it, until each has acknowledged it, and is
// dropped then (the other destinations keep the data); it is never
// written, so a reopened log has none.
func TestValueKeptForItsReaders(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	v := &struct{ n int }{1}
	seq, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}, {Name: "input/b/x", ReadsValue: true}, {Name: "input/c/y", ReadsValue: true}}, Data: []byte("d"), Value: v})
	if err != nil {
		t.Fatal(err)
	}
	value := func(dest string) any {
		got := l.Pending(dest, 0, 0)
		if len(got) != 1 || got[0].Seq != seq || string(got[0].Data) != "d" {
			t.Fatalf("%s: pending %+v, want the record", dest, got)
		}
		return got[0].Value
	}
	if value("input/b/x") != v || value("upstream") != v {
		t.Fatal("the value did not come with the record")
	}
	l.Ack("input/b/x", seq)
	if value("input/c/y") != v {
		t.Fatal("the value went before its last reader acknowledged the record")
	}
	l.Ack("input/c/y", seq)
	if value("upstream") != nil {
		t.Fatal("the value stayed after its readers acknowledged the record")
	}
	if _, err := l.AppendSync(Record{Dests: []Dest{{Name: "upstream"}}, Data: []byte("e"), Value: v}); err != nil {
		t.Fatal(err)
	}
	if got := l.Pending("upstream", seq, 0); len(got) != 1 || got[0].Value != nil {
		t.Fatalf("pending %+v: a value no destination reads was kept", got)
	}
	l.Close()
	l = open(t, dir, Options{})
	defer l.Close()
	if got := l.Pending("upstream", 0, 0); len(got) != 2 || got[0].Value != nil {
		t.Fatalf("after reopen: pending %+v, want both records without values", got)
	}
}

// TestBySource: records count under their source until every destination
// took them (acknowledged or expired), and again after a reopen through
// SourceOf.
func TestBySource(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	var skew atomic.Int64 // the maintainer reads the clock too
	clock := func() time.Time { return now.Add(time.Duration(skew.Load())) }
	sourceOf := func(data []byte) string { s, _, _ := strings.Cut(string(data), ":"); return s }
	l := open(t, dir, Options{Now: clock, SourceOf: sourceOf})
	for i := range 10 {
		src := "leaf-1"
		if i%2 == 1 {
			src = "edge/filter"
		}
		dests := []Dest{{Name: "upstream"}}
		if i == 9 {
			dests = append(dests, Dest{Name: "input/b/in1", Expires: now.Add(time.Minute)})
		}
		if _, err := l.AppendSync(Record{Dests: dests, Data: fmt.Appendf(nil, "%s:%d", src, i), Source: src}); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.BySource(); got["leaf-1"] != 5 || got["edge/filter"] != 5 || len(got) != 2 {
		t.Fatalf("by source: %v", got)
	}
	up := l.Pending("upstream", 0, 0)
	l.Ack("upstream", up[9].Seq) // all upstream; record 9 still waits for its input
	if got := l.BySource(); got["leaf-1"] != 0 || got["edge/filter"] != 1 || len(got) != 1 {
		t.Fatalf("by source after the upstream ack: %v", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, Options{Now: clock, SourceOf: sourceOf})
	defer l.Close()
	if got := l.BySource(); got["edge/filter"] != 1 || len(got) != 1 {
		t.Fatalf("by source after reopen: %v", got)
	}
	skew.Store(int64(2 * time.Minute)) // record 9 expires at the input
	if got := l.BySource(); len(got) != 0 {
		t.Fatalf("by source after expiry: %v", got)
	}
}
