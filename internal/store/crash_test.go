package store

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	crashIterations = flag.Int("crash.iterations", 50, "kill-and-reopen rounds in TestCrash")
	crashSeed       = flag.Uint64("crash.seed", 0, "seed for TestCrash's kill times (0: random)")
)

const crashEnv = "OUTPOST_STORE_TEST_CRASH" // DIR,SEED: run TestCrashChild

// crashKeys are the keys each writer of TestCrashChild owns, under w<N>/.
var crashKeys = []string{"k0", "k1", "Dev:1", "$edgeAgent", "a%2F", "(x)", "devices/D/modules/m/twin"}

// crashValue is the value a write with sequence number seq stores: up to ~40 KiB.
func crashValue(key string, seq int64) []byte {
	n := int(seq * 7919 % 300)
	if seq%5 == 0 {
		n = int(seq * 104729 % 40000)
	}
	return fmt.Appendf(nil, `{"key":%q,"seq":%d,"pad":%q}`, key, seq, strings.Repeat(strconv.FormatInt(seq%10, 10), n))
}

// TestCrashChild is the process TestCrash kills. It writes in a loop with 4 goroutines,
// each owning its keys, and prints a line before each write (BEGIN) and one once the write
// has returned (ACK).
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("runs as a child of TestCrash")
	}
	dir, seedStr, _ := strings.Cut(spec, ",")
	seed, _ := strconv.ParseInt(seedStr, 10, 64)
	fail := func(format string, args ...any) {
		fmt.Printf("ERROR "+format+"\n", args...)
		os.Exit(3)
	}
	s, err := Open(dir)
	if err != nil {
		fail("open: %v", err)
	}
	recs, err := s.List("")
	if err != nil {
		fail("list: %v", err)
	}
	versions := map[string]int64{}
	for _, r := range recs {
		versions[r.Key] = r.Version
	}
	fmt.Println("READY")
	var seq atomic.Int64
	seq.Store(seed * 1_000_000)
	deadline := time.Now().Add(10 * time.Second) // in case nobody kills us
	var wg sync.WaitGroup
	for w := range 4 {
		rnd := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
		wg.Go(func() {
			for time.Now().Before(deadline) {
				key := fmt.Sprintf("w%d/%s", w, crashKeys[rnd.IntN(len(crashKeys))])
				cur, exists := versions[key] // only this goroutine touches its keys
				expect := cur
				if !exists {
					expect = 0
				}
				if rnd.IntN(6) == 0 {
					expect = Any
				}
				if exists && rnd.IntN(4) == 0 {
					fmt.Printf("BEGIN D %s\n", key)
					if err := s.Delete(key, expect); err != nil {
						fail("delete %s: %v", key, err)
					}
					fmt.Printf("ACK D %s\n", key)
					delete(versions, key)
					continue
				}
				n := seq.Add(1)
				fmt.Printf("BEGIN P %s %d\n", key, n)
				v, err := s.Put(key, crashValue(key, n), expect)
				if err != nil {
					fail("put %s: %v", key, err)
				}
				fmt.Printf("ACK P %s %d %d\n", key, v, n)
				versions[key] = v
			}
		})
	}
	wg.Wait()
	s.Close()
}

// TestCrash kills a writing child process with SIGKILL at random moments, reopens the store
// each time and checks that every write the child was told is done survived, that nothing
// else is there but the one write per key that may have been in flight, and that versions
// only go up, across deletes too.
func TestCrash(t *testing.T) {
	if isWindows {
		t.Skip("needs SIGKILL")
	}
	type state struct {
		exists  bool
		version int64
		seq     int64
		maxSeen int64 // highest version ever seen for the key, deleted or not
	}
	type op struct {
		del bool
		seq int64
	}
	dir := t.TempDir()
	model := map[string]*state{}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("-crash.seed=%d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	totalAcks, inFlight, landed := 0, 0, 0
	var maxVersion int64 // highest version seen so far, for any key
	for i := range *crashIterations {
		cmd := childCommand(t, "TestCrashChild", fmt.Sprintf("%s=%s,%d", crashEnv, dir, i+1))
		// 1 in 10 is killed while it starts and opens the store.
		lines := runAndKill(t, cmd, rnd.IntN(10) > 0, time.Duration(rnd.IntN(50_001))*time.Microsecond)

		// Replay what the child said.
		roundStart := maxVersion
		pending := map[string]op{}
		for _, line := range lines {
			f := strings.Fields(line)
			switch {
			case f[0] == "ERROR":
				t.Fatalf("round %d: child: %s", i, line)
			case f[0] == "BEGIN" && f[1] == "P":
				seq, _ := strconv.ParseInt(f[3], 10, 64)
				pending[f[2]] = op{seq: seq}
			case f[0] == "BEGIN" && f[1] == "D":
				pending[f[2]] = op{del: true}
			case f[0] == "ACK":
				key := f[2]
				delete(pending, key)
				st := model[key]
				if st == nil {
					st = &state{}
					model[key] = st
				}
				totalAcks++
				if f[1] == "D" {
					st.exists = false
					continue
				}
				v, _ := strconv.ParseInt(f[3], 10, 64)
				seq, _ := strconv.ParseInt(f[4], 10, 64)
				if v <= st.maxSeen || v <= roundStart {
					t.Fatalf("round %d: %s got version %d, not above %d seen before for it, or %d for any key before the restart",
						i, key, v, st.maxSeen, roundStart)
				}
				*st = state{exists: true, version: v, seq: seq, maxSeen: v}
				maxVersion = max(maxVersion, v)
			}
		}

		// Check the store against it.
		inFlight += len(pending)
		s, err := Open(dir)
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", i, err)
		}
		for key, st := range model {
			r, err := s.Get(key)
			found := err == nil
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			asAcked := found == st.exists && (!found || r.Version == st.version && string(r.Value) == string(crashValue(key, st.seq)))
			if asAcked {
				continue
			}
			p, inFlight := pending[key]
			switch {
			case inFlight && p.del && !found:
				st.exists = false
				landed++
			case inFlight && !p.del && found && r.Version > st.maxSeen && r.Version > roundStart &&
				string(r.Value) == string(crashValue(key, p.seq)):
				*st = state{exists: true, version: r.Version, seq: p.seq, maxSeen: r.Version}
				maxVersion = max(maxVersion, r.Version)
				landed++
			default:
				t.Fatalf("round %d: %s is %+v (found %v), want %+v or the result of in-flight %+v (in flight: %v)",
					i, key, r, found, *st, p, inFlight)
			}
		}
		for key, p := range pending { // a first write to a key, in flight
			if _, known := model[key]; known || p.del {
				continue
			}
			if r, err := s.Get(key); err == nil {
				if string(r.Value) != string(crashValue(key, p.seq)) || r.Version <= roundStart {
					t.Fatalf("round %d: %s is %.60s v%d, not the write in flight", i, key, r.Value, r.Version)
				}
				model[key] = &state{exists: true, version: r.Version, seq: p.seq, maxSeen: r.Version}
				maxVersion = max(maxVersion, r.Version)
				landed++
			}
		}
		recs, err := s.List("")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if st := model[r.Key]; st == nil || !st.exists {
				t.Fatalf("round %d: unexpected record %s", i, r.Key)
			}
		}
		ents, err := os.ReadDir(filepath.Join(dir, "records"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".json") {
				t.Fatalf("round %d: %s left in records/ after Open", i, e.Name())
			}
		}
		if len(ents) != len(recs) {
			t.Fatalf("round %d: %d files for %d records", i, len(ents), len(recs))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds, %d acknowledged writes checked; %d writes in flight at a kill, %d of which landed",
		*crashIterations, totalAcks, inFlight, landed)
}

// runAndKill starts cmd, waits for it to print READY (if waitReady), then for wait, kills
// it and returns what it printed. It fails the test if the child died otherwise.
func runAndKill(t *testing.T, cmd *exec.Cmd, waitReady bool, wait time.Duration) []string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	ready, eof := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if sc.Text() == "READY" {
				close(ready)
			}
		}
	}()
	if waitReady {
		select {
		case <-ready:
		case <-eof:
		case <-time.After(20 * time.Second):
			t.Fatal("child not ready after 20s")
		}
	}
	time.Sleep(wait)
	cmd.Process.Kill()
	<-eof
	werr := cmd.Wait()
	if ee := (*exec.ExitError)(nil); errors.As(werr, &ee) && ee.ExitCode() == 3 || werr == nil {
		t.Fatalf("child did not die by our kill (%v):\n%s", werr, strings.Join(lines, "\n"))
	}
	return lines
}
