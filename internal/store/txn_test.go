package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/fulldisk"
)

func TestTxn(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	va := put(t, s, "a", `"a1"`, 0)
	vb := put(t, s, "b", `"b1"`, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := s.Watch(ctx, "")

	v, err := s.Txn(PutOp("a", []byte(`"a2"`), va), PutOp("c", []byte(`"c1"`), 0), DeleteOp("b", vb), DeleteOp("gone", Any))
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
	if _, err := s.Get("b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b after its delete: %v", err)
	}
	got := map[string]EventType{}
	for range 3 {
		select {
		case ev := <-events:
			got[ev.Record.Key] = ev.Type
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far %v, want 3", got)
		}
	}
	if got["a"] != Put || got["c"] != Put || got["b"] != Delete {
		t.Errorf("events %v", got)
	}

	// One stale version: nothing is written, the error names the key.
	_, err = s.Txn(PutOp("a", []byte(`"a3"`), v), PutOp("c", []byte(`"c2"`), va))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Key != "c" || ce.Current != v {
		t.Fatalf("Txn with a stale version: %v, want a conflict on c", err)
	}
	if r := get(t, s, "a"); string(r.Value) != `"a2"` || r.Version != v {
		t.Errorf("a after a failed Txn: %+v", r)
	}
	if _, err := s.Txn(PutOp("x", []byte(`1`), 0), DeleteOp("x", Any)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("Txn with a key twice: %v", err)
	}
	if _, err := s.Txn(PutOp("x", []byte(`{`), 0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Txn with bad JSON: %v", err)
	}
	if _, err := s.Get("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("x after invalid Txns: %v", err)
	}
	if v, err := s.Txn(DeleteOp("nothing", Any)); err != nil || v != 0 {
		t.Errorf("Txn that changes nothing: %d, %v", v, err)
	}

	s.Close()
	s = openT(t, dir)
	recs, _ := s.List("")
	if len(recs) != 2 || recs[0].Key != "a" || recs[1].Key != "c" || recs[0].Version != v {
		t.Fatalf("after reopen: %+v", recs)
	}
	checkOnlyRecords(t, dir)
}

// checkOnlyRecords fails if records/ holds anything but record files.
func checkOnlyRecords(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), "spare-") {
			t.Errorf("%s left in records/", e.Name())
		}
	}
}

// TestTxnJournalReplay leaves a committed journal behind, as a crash right after the
// commit point does, and checks that Open finishes the Txn.
func TestTxnJournalReplay(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	put(t, s, "a", `"a1"`, 0)
	put(t, s, "b", `"b1"`, 0)
	v, err := s.nextVersion()
	if err != nil {
		t.Fatal(err)
	}
	j := journal{Format: 1, Version: v, Puts: []journalPut{{Key: "a", Value: []byte(`"a2"`)}, {Key: "n", Value: []byte(`{"x": 1}`)}}, Deletes: []string{"b", "never"}}
	path, err := s.writeJournal(j)
	if err != nil {
		t.Fatal(err)
	}
	abandon(s)
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r := get(t, s, "a"); string(r.Value) != `"a2"` || r.Version != v {
		t.Errorf("a = %+v", r)
	}
	if r := get(t, s, "n"); string(r.Value) != `{"x": 1}` || r.Version != v {
		t.Errorf("n = %+v", r)
	}
	if _, err := s.Get("b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal still there after Open: %v", err)
	}
	if nv := put(t, s, "z", `1`, 0); nv <= v {
		t.Errorf("version after replay %d, want above %d", nv, v)
	}
	checkOnlyRecords(t, dir)

	// A damaged journal stops Open, naming it.
	path, err = s.writeJournal(journal{Format: 1, Version: v + 100, Deletes: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	abandon(s)
	b, _ := os.ReadFile(path)
	b[5] ^= 1
	os.WriteFile(path, b, 0o600)
	if s, err := Open(dir); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open with a damaged journal: %v", err)
	}
}

// TestTxnFullDisk runs Txns on a full tmpfs, with room for none or one of their record
// files: each fails with a SpaceError naming the dir and changes nothing, and the same
// Txn succeeds once there is space.
func TestTxnFullDisk(t *testing.T) {
	mnt := fulldisk.Mount(t, "1m")
	dir := filepath.Join(mnt, "store")
	s := openT(t, dir)
	va := put(t, s, "a", `"a1"`, 0)
	vb := put(t, s, "b", `"b1"`, 0)
	big := []byte(`"` + strings.Repeat("x", 5000) + `"`) // two blocks
	ops := []Op{PutOp("a", big, va), PutOp("n", big, 0), DeleteOp("b", vb)}
	filler := filepath.Join(mnt, "filler")
	for _, room := range []int64{0, 8192, 16384} {
		fulldisk.Fill(t, filler, room)
		_, err := s.Txn(ops...)
		var se *SpaceError
		if !errors.As(err, &se) || se.Dir != dir || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "free space") {
			t.Fatalf("Txn on a full disk (room %d): %v, want a SpaceError naming %s", room, err, dir)
		}
		t.Logf("room %d: %v", room, err)
		if r := get(t, s, "a"); string(r.Value) != `"a1"` || r.Version != va {
			t.Errorf("room %d: a changed: %+v", room, r)
		}
		if r := get(t, s, "b"); r.Version != vb {
			t.Errorf("room %d: b changed: %+v", room, r)
		}
		if _, err := s.Get("n"); !errors.Is(err, ErrNotFound) {
			t.Errorf("room %d: n written: %v", room, err)
		}
		checkOnlyRecords(t, dir)
	}
	os.Remove(filler)
	v, err := s.Txn(ops...)
	if err != nil {
		t.Fatalf("the same Txn with space: %v", err)
	}
	s.Close()
	s = openT(t, dir)
	if r := get(t, s, "n"); r.Version != v || string(r.Value) != string(big) {
		t.Errorf("n after reopen: v%d", r.Version)
	}
	if _, err := s.Get("b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b after reopen: %v", err)
	}
}

const txnCrashEnv = "OUTPOST_STORE_TEST_TXN_CRASH" // DIR,SEED: run TestTxnCrashChild

var txnGroup = []string{"device", "modules/$edgeAgent", "twins/$edgeAgent"}

// TestTxnCrashChild is the process TestTxnCrash kills: 3 goroutines, each writing the
// keys of its group g<N>/ in Txns (all put with one seq, or all deleted), printing a
// line before each Txn (BEGIN) and one once it returned (ACK).
func TestTxnCrashChild(t *testing.T) {
	spec := os.Getenv(txnCrashEnv)
	if spec == "" {
		t.Skip("runs as a child of TestTxnCrash")
	}
	dir, seedStr, _ := strings.Cut(spec, ",")
	seed, _ := strconv.ParseInt(seedStr, 10, 64)
	s, err := Open(dir)
	if err != nil {
		fmt.Printf("ERROR open: %v\n", err)
		os.Exit(3)
	}
	fmt.Println("READY")
	var wg sync.WaitGroup
	deadline := time.Now().Add(10 * time.Second)
	for w := range 3 {
		rnd := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
		wg.Go(func() {
			seq := seed*1_000_000 + int64(w)*100_000
			for time.Now().Before(deadline) {
				var ops []Op
				del := rnd.IntN(4) == 0
				seq++
				for _, k := range txnGroup {
					key := fmt.Sprintf("g%d/%s", w, k)
					expect := int64(0)
					if r, err := s.Get(key); err == nil {
						expect = r.Version
					}
					if del {
						ops = append(ops, DeleteOp(key, expect))
					} else {
						ops = append(ops, PutOp(key, crashValue(key, seq), expect))
					}
				}
				fmt.Printf("BEGIN %d %v %d\n", w, del, seq)
				v, err := s.Txn(ops...)
				if err != nil {
					fmt.Printf("ERROR txn: %v\n", err)
					os.Exit(3)
				}
				fmt.Printf("ACK %d %v %d %d\n", w, del, seq, v)
			}
		})
	}
	wg.Wait()
	s.Close()
}

// TestTxnCrash kills a child doing Txns at random moments and checks after each kill that
// every group of keys is all there, from one Txn, or all gone: the last acknowledged
// Txn's result, or the one in flight.
func TestTxnCrash(t *testing.T) {
	if isWindows {
		t.Skip("needs SIGKILL")
	}
	type state struct {
		exists  bool
		seq     int64
		version int64
	}
	dir := t.TempDir()
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("-crash.seed=%d", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))
	model := make([]state, 3)
	acks, landed := 0, 0
	for i := range *crashIterations {
		cmd := childCommand(t, "TestTxnCrashChild", fmt.Sprintf("%s=%s,%d", txnCrashEnv, dir, i+1))
		lines := runAndKill(t, cmd, true, time.Duration(rnd.IntN(30_001))*time.Microsecond)

		pending := map[int]state{}
		for _, line := range lines {
			f := strings.Fields(line)
			if f[0] == "ERROR" {
				t.Fatalf("round %d: child: %s", i, line)
			}
			if f[0] != "BEGIN" && f[0] != "ACK" {
				continue
			}
			w, _ := strconv.Atoi(f[1])
			seq, _ := strconv.ParseInt(f[3], 10, 64)
			if f[0] == "BEGIN" {
				pending[w] = state{exists: f[2] == "false", seq: seq}
				continue
			}
			delete(pending, w)
			acks++
			v, _ := strconv.ParseInt(f[4], 10, 64)
			model[w] = state{exists: f[2] == "false", seq: seq, version: v}
		}

		s, err := Open(dir)
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", i, err)
		}
		for w := range model {
			var got state
			for n, k := range txnGroup {
				key := fmt.Sprintf("g%d/%s", w, k)
				r, err := s.Get(key)
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
				var st state
				if err == nil {
					var v struct{ Seq int64 }
					json.Unmarshal(r.Value, &v)
					st = state{exists: true, seq: v.Seq, version: r.Version}
					if string(r.Value) != string(crashValue(key, v.Seq)) {
						t.Fatalf("round %d: %s holds %.80s", i, key, r.Value)
					}
				}
				if n > 0 && st != got {
					t.Fatalf("round %d: group %d is half written: %s is %+v, %s is %+v", i, w, txnGroup[0], got, k, st)
				}
				got = st
			}
			want := model[w]
			if got.exists == want.exists && (!got.exists || got == want) {
				continue
			}
			p, ok := pending[w]
			if !ok || p.exists != got.exists || got.exists && p.seq != got.seq {
				t.Fatalf("round %d: group %d is %+v, want %+v or the Txn in flight %+v (%v)", i, w, got, want, p, ok)
			}
			model[w] = got
			landed++
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		checkOnlyRecords(t, dir)
	}
	t.Logf("%d rounds, %d acknowledged Txns; %d in flight at a kill landed", *crashIterations, acks, landed)
}
