package syncer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/store"
)

// writerModule is the module writer g of these tests reports for.
func writerModule(g int) string { return []string{"a", "b"}[g%2] }

// checkOutbox checks that the outbox's seqs rise one by one from after+1
// and that each key's values come in order 0, 1, …; it returns each key's
// last value.
func checkOutbox(t *testing.T, s *Syncer, after int64) map[string]int {
	t.Helper()
	pending, err := s.pending(0)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int{}
	for i, p := range pending {
		if p.Seq != after+int64(i)+1 {
			t.Fatalf("outbox entry %d has seq %d, want %d: seqs must rise one by one", i, p.Seq, after+int64(i)+1)
		}
		var m map[string]int
		if err := json.Unmarshal(p.Patch, &m); err != nil || len(m) != 1 {
			t.Fatalf("seq %d: patch %s", p.Seq, p.Patch)
		}
		for k, v := range m {
			want := 0
			if n, ok := last[k]; ok {
				want = n + 1
			}
			if v != want {
				t.Fatalf("seq %d: %s=%d follows %d: a writer's patches out of order", p.Seq, k, v, want-1)
			}
			last[k] = v
			if mod := writerModule(int(k[len(k)-1] - '0')); mod != p.ModuleID {
				t.Fatalf("seq %d: %s queued for module %s, want %s", p.Seq, k, p.ModuleID, mod)
			}
		}
	}
	return last
}

// checkTwins checks that the local twins hold each key's last value.
func checkTwins(t *testing.T, s *Syncer, last map[string]int) {
	t.Helper()
	for k, v := range last {
		m := writerModule(int(k[len(k)-1] - '0'))
		tw, err := s.Twin(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := tw.Reported()[k]; got != json.Number(strconv.Itoa(v)) {
			t.Fatalf("local twin %s: %s=%v, want %d (the last queued)", m, k, got, v)
		}
	}
}

// TestConcurrentPatches: patches from 8 writers at once (4 per module)
// commit together, each writer's in the order it made them, a bad one
// refused without stopping the others; the outbox holds them in order, the
// local twins hold the last, and the hub ends with the same twins.
func TestConcurrentPatches(t *testing.T) {
	f, s, _, addr := offline(t)

	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Go(func() {
			prev := int64(0)
			for j := range each {
				if j%10 == 5 {
					if _, err := s.PatchReported(writerModule(g), []byte(`{"bad key":1}`)); err == nil {
						errs <- fmt.Errorf("writer %d: a patch with a bad key was queued", g)
						return
					}
				}
				tw, err := s.PatchReported(writerModule(g), fmt.Appendf(nil, `{"w%d":%d}`, g, j))
				if err != nil {
					errs <- fmt.Errorf("writer %d patch %d: %v", g, j, err)
					return
				}
				if v := tw.ReportedVersion(); v <= prev {
					errs <- fmt.Errorf("writer %d patch %d: reported $version %d after %d", g, j, v, prev)
					return
				}
				prev = tw.ReportedVersion()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	last := checkOutbox(t, s, 0)
	if len(last) != writers {
		t.Fatalf("outbox has the patches of %d writers, want %d", len(last), writers)
	}
	for k, v := range last {
		if v != each-1 {
			t.Fatalf("outbox: %s ends at %d, want %d", k, v, each-1)
		}
	}
	checkTwins(t, s, last)
	for _, m := range []string{"a", "b"} {
		if tw, _ := s.Twin(m); tw.ReportedVersion() != 1+writers/2*each {
			t.Fatalf("local twin %s: reported $version %d, want %d (one per patch)", m, tw.ReportedVersion(), 1+writers/2*each)
		}
	}

	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	eventually(t, "the outbox to drain", func() bool {
		st, _ := s.Status()
		return st.Connected && st.Outbox.Patches == 0
	})
	// A sync the hub answered before the last upload may show the device
	// an older twin for a moment: the next one brings the hub's.
	owner := h2.Client(t)
	for _, m := range []string{"a", "b"} {
		var diff string
		same := func() bool {
			local, _ := s.Twin(m)
			hub, err := owner.GetTwin(t.Context(), "d", m)
			if err != nil {
				t.Fatal(err)
			}
			diff = fmt.Sprintf("hub %s $version %d, device %s $version %d", hub.ReportedJSON(), hub.ReportedVersion(), local.ReportedJSON(), local.ReportedVersion())
			return string(hub.ReportedJSON()) == string(local.ReportedJSON()) && hub.ReportedVersion() == local.ReportedVersion()
		}
		for deadline := time.Now().Add(15 * time.Second); !same(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("twin %s: %s", m, diff)
			}
		}
	}
}

const crashEnv = "OUTPOST_SYNCER_TEST_CRASH" // see crashChild: run TestCrashChild

// TestCrashChild is the process TestCrashMidCommit kills: 8 writers report
// patches as fast as they are acknowledged, printing "ACK KEY VALUE" once
// PatchReported has returned, while the local twins are written again and
// again (as the flush loop writes them every few seconds offline), so
// that some kills land in a twin write.
func TestCrashChild(t *testing.T) {
	s, round, fail := crashChild(t, crashEnv, "TestCrashMidCommit")
	fmt.Println("READY")
	go func() {
		for {
			if err := s.writeTwins(); err != nil {
				fail("write twins: %v", err)
			}
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
		}
	}()
	reportUntilKilled(s, 8, round, fail)
}

// reportUntilKilled is the work of a crash test's child: writers
// goroutines report patches as fast as they are answered, each printing
// "ACK KEY VALUE" once PatchReported has returned. It fails after 60 s: the
// parent should have killed it by then.
func reportUntilKilled(s *Syncer, writers int, round string, fail func(format string, args ...any)) {
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			key := fmt.Sprintf("r%sw%d", round, g)
			for j := 0; time.Now().Before(deadline); j++ {
				if _, err := s.PatchReported(writerModule(g), fmt.Appendf(nil, `{%q:%d}`, key, j)); err != nil {
					fail("patch %s=%d: %v", key, j, err)
				}
				mu.Lock()
				fmt.Fprintf(out, "ACK %s %d\n", key, j)
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fail("not killed within 60 s")
}

// restart opens the store of a crash test's child after its death, and a
// syncer (not run) over it. The caller closes the store.
func (f *fixture) restart(t *testing.T) (*store.FileStore, *Syncer) {
	t.Helper()
	st, err := store.Open(f.storeDir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(f.device, st, "d")
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return st, s
}

// killChild runs the test named child in a process of its own, with the
// environment variable spec, and kills it (SIGKILL: no Flush, no Close)
// after killAfter ACK lines or after timeout (if not 0), whichever comes
// first; it calls ack with the key and value of each ACK line and returns
// how many there were.
func killChild(t *testing.T, child, spec string, killAfter int, timeout time.Duration, ack func(key string, value int)) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+child+"$")
	cmd.Env = append(os.Environ(), spec)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	// The timeout counts from the first acknowledgement, so that a child slow
	// to start on a loaded machine still acknowledges some before it dies; a
	// child that acknowledges nothing for a minute is killed all the same.
	var timer *time.Timer
	if timeout > 0 {
		timer = time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
		defer func() { timer.Stop() }()
	}
	n := 0
	for sc := bufio.NewScanner(stdout); sc.Scan(); {
		line := sc.Text()
		if strings.HasPrefix(line, "ERROR") {
			cmd.Process.Kill()
			t.Fatalf("child: %s", line)
		}
		var k string
		var v int
		if _, err := fmt.Sscanf(line, "ACK %s %d", &k, &v); err != nil {
			continue
		}
		ack(k, v)
		if n == 0 && timer != nil && timer.Stop() {
			timer = time.AfterFunc(timeout, func() { cmd.Process.Kill() })
		}
		if n++; n == killAfter {
			cmd.Process.Kill()
		}
	}
	return n
}

// crashSpec is the environment variable env that tells a crash test's
// child process its data dir, round and hub; see crashChild.
func crashSpec(env string, f *fixture, round int) string {
	return fmt.Sprintf("%s=%s,%d,%s,%s", env, f.storeDir, round, f.hub.CAFile, f.device.ConnectionString())
}

// crashChild opens, in a crash test's child process, the syncer that the
// environment variable env (DIR,ROUND,CA-FILE,CONNECTION-STRING, from
// crashSpec) describes; without env, the test is skipped: it runs only as
// a child of parent. It returns the syncer with the round and fail, which
// prints an ERROR line for the parent and exits.
func crashChild(t *testing.T, env, parent string) (s *Syncer, round string, fail func(format string, args ...any)) {
	spec := os.Getenv(env)
	if spec == "" {
		t.Skip("runs as a child of " + parent)
	}
	parts := strings.SplitN(spec, ",", 4)
	fail = func(format string, args ...any) {
		fmt.Printf("ERROR "+format+"\n", args...)
		os.Exit(3)
	}
	if len(parts) != 4 {
		fail("spec %q: want DIR,ROUND,CA-FILE,CONNECTION-STRING", spec)
	}
	st, err := store.Open(parts[0])
	if err != nil {
		fail("open: %v", err)
	}
	hc, err := hubclient.New(parts[3], parts[2])
	if err != nil {
		fail("client: %v", err)
	}
	if s, err = New(hc, st, "d"); err != nil {
		fail("new: %v", err)
	}
	return s, parts[1], fail
}

// TestCrashMidCommit kills a daemon's syncer (a child process) while 8
// writers report at once and its twins are written, at a random moment,
// several times over the same store: after each crash every acknowledged
// patch is in the outbox, each writer's in order, seqs rising one by one,
// and the local twins hold the last queued, each patch once (their
// reported $version rose by one per patch queued); once the hub is back it
// holds them all, at the same $versions.
func TestCrashMidCommit(t *testing.T) {
	f, s0, stop, addr := offline(t)
	stop()
	base := map[string]int64{} // each twin's reported $version before any patch
	for _, m := range []string{"a", "b"} {
		tw, err := s0.Twin(m)
		if err != nil {
			t.Fatal(err)
		}
		base[m] = tw.ReportedVersion()
	}
	f.st.Close()
	var queued map[string]int64 // by module, the patches in the outbox
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var last map[string]int
	total := 0
	for round := range 5 {
		acked := map[string]int{}
		// Killed after a random number of acks, or a random time on a slow
		// machine, whichever comes first.
		n := killChild(t, "TestCrashChild", crashSpec(crashEnv, f, round), 20+rnd.IntN(400), time.Duration(200+rnd.IntN(800))*time.Millisecond, func(k string, v int) {
			acked[k] = max(acked[k], v)
		})
		total += n

		st, s := f.restart(t)
		last = checkOutbox(t, s, 0)
		for k, v := range acked {
			if last[k] < v {
				t.Fatalf("round %d: %s=%d was acknowledged, the outbox ends at %d", round, k, v, last[k])
			}
		}
		checkTwins(t, s, last)
		queued = checkReportedVersions(t, s, base)
		st.Close()
		t.Logf("round %d: killed after %d acks; %d writers' patches in the outbox", round, n, len(last))
	}
	if total == 0 {
		t.Fatal("the children acknowledged nothing before they were killed")
	}

	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	s2, _ := run(t, f, f.openStore(t))
	eventually(t, "the outbox to drain", func() bool {
		st, _ := s2.Status()
		return st.Connected && st.Outbox.Patches == 0
	})
	for k, v := range last {
		tw, err := h2.Client(t).GetTwin(t.Context(), "d", writerModule(int(k[len(k)-1]-'0')))
		if err != nil {
			t.Fatal(err)
		}
		if got := tw.Reported()[k]; got != json.Number(strconv.Itoa(v)) {
			t.Fatalf("hub: %s=%v, want %d", k, got, v)
		}
	}
	for _, m := range []string{"a", "b"} {
		agreeWithHub(t, h2, s2, m, base[m]+queued[m])
	}
}

// checkReportedVersions checks that each local twin's reported $version
// is its version in base plus one for each of its patches in the outbox
// (all of them: the hub is down), and returns how many each has there.
func checkReportedVersions(t *testing.T, s *Syncer, base map[string]int64) map[string]int64 {
	t.Helper()
	pending, err := s.pending(0)
	if err != nil {
		t.Fatal(err)
	}
	queued := map[string]int64{}
	for _, p := range pending {
		queued[p.ModuleID]++
	}
	for m, v := range base {
		tw, err := s.Twin(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := tw.ReportedVersion(); got != v+queued[m] {
			t.Fatalf("local twin %s: reported $version %d, want %d (%d before, %d patches queued, each laid on once)", m, got, v+queued[m], v, queued[m])
		}
	}
	return queued
}
