//go:build linux

package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

// shimOf returns the shim recorded in the state.json of the instance name.
func shimOf(t *testing.T, dir, name string) shim.ProcRef {
	t.Helper()
	var rs shim.RunState
	if err := shim.ReadJSON(filepath.Join(dir, "instances", ContainerID(name)), "state.json", &rs); err != nil {
		t.Fatal(err)
	}
	return rs.Shim
}

// shimsUnder returns the pids of the shim processes serving the state dir dir (their
// socket, in their command line, is in dir).
func shimsUnder(dir string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := bytes.Split(b, []byte{0})
		if len(args) >= 3 && string(args[1]) == shim.Arg && strings.HasPrefix(string(args[2]), dir+"/") {
			var pid int
			fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// waitGone waits until ref has exited, failing the test when ctx ends first.
func waitGone(t *testing.T, ctx context.Context, ref shim.ProcRef, what string) {
	t.Helper()
	if err := ref.Wait(ctx); err != nil {
		t.Fatalf("%s (pid %d) still runs: %v", what, ref.Pid, err)
	}
}

// forEachShimRuntime runs fn for each runtime whose instances run under our
// shim (not docker: the engine has shims of its own), with a state dir and a
// context of a minute.
func forEachShimRuntime(t *testing.T, fn func(t *testing.T, rt rtUnderTest, dir string, ctx context.Context)) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		if rt.kind == KindDocker {
			t.Skip("the engine has shims of its own")
		}
		fn(t, rt, t.TempDir(), ctxT(t, 60*time.Second))
	})
}

// TestOneShim: one shim process serves every instance of a state dir, whichever Runtime
// (a restarted daemon) started them, and exits once its last instance has exited. With a
// shim per instance, as before, the device paid about 0.9 MB for each instance.
func TestOneShim(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, rt rtUnderTest, dir string, ctx context.Context) {
		r1 := rt.new(t, dir)
		names := []string{"one", "two", "three"}
		for i, name := range names {
			r := r1
			if i == 2 {
				r = rt.new(t, dir) // the daemon restarted meanwhile
			}
			spec := rt.spec(name, "ready", "sleep", "exit", "0")
			if err := r.Start(ctx, spec); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r1.Remove(context.Background(), name) })
			waitLog(t, r1, name, "ready\n")
		}
		first := shimOf(t, dir, names[0])
		for _, name := range names[1:] {
			if s := shimOf(t, dir, name); s != first {
				t.Errorf("%s runs under shim %d, %s under shim %d: want one shim for all", names[0], first.Pid, name, s.Pid)
			}
		}
		if pids := shimsUnder(dir); !slices.Equal(pids, []int{first.Pid}) {
			t.Errorf("shim processes %v, want only %d", pids, first.Pid)
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", first.Pid)); err != nil || exe != testShim {
			t.Errorf("the shim runs %q (%v), want %s", exe, err, testShim)
		}
		for i, name := range names {
			if err := r1.Stop(ctx, name, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if i < len(names)-1 && !first.Alive() {
				t.Fatalf("the shim exited with %d instances left", len(names)-1-i)
			}
		}
		for _, name := range names {
			st, err := r1.State(ctx, name)
			if err != nil || st.Status != StatusExited || st.ExitCode != 0 {
				t.Errorf("%s after Stop: %+v, %v; want exited 0", name, st, err)
			}
			wantLines(t, logsOf(t, r1, name, LogOptions{}), "ready", "got SIGTERM")
		}
		waitGone(t, ctx, first, "the shim, its instances all exited,")
		// The next instance gets a new shim.
		spec := rt.spec("four", "exit", "4")
		if st, _ := run(t, r1, spec); st.ExitCode != 4 {
			t.Errorf("an instance after the shim exited: %+v", st)
		}
		if s := shimOf(t, dir, spec.Name); s.Pid == first.Pid {
			t.Errorf("the next instance's shim is the one that exited (%d)", s.Pid)
		}
	})
}

// TestShimUpgrade: a daemon of another build (here: another shim binary) starts a shim of
// its own for its new instances; the old shim keeps serving the instances it started, and
// exits with the last of them.
func TestShimUpgrade(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, rt rtUnderTest, dir string, ctx context.Context) {
		r := rt.new(t, dir)
		old := rt.spec("old", "ready", "sleep", "exit", "0")
		if err := r.Start(ctx, old); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Remove(context.Background(), old.Name) })
		waitLog(t, r, old.Name, "ready\n")

		upgraded := filepath.Join(t.TempDir(), shim.Binary)
		copyFile(t, testShim, upgraded)
		t.Setenv(ShimEnv, upgraded)
		r2 := rt.new(t, dir)
		next := rt.spec("new", "ready", "sleep", "exit", "0")
		if err := r2.Start(ctx, next); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r2.Remove(context.Background(), next.Name) })
		waitLog(t, r2, next.Name, "ready\n")
		oldShim, newShim := shimOf(t, dir, old.Name), shimOf(t, dir, next.Name)
		if oldShim == newShim {
			t.Fatalf("the upgraded daemon's instance runs under the old shim (%d)", oldShim.Pid)
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", newShim.Pid)); err != nil || exe != upgraded {
			t.Errorf("the new shim runs %q (%v), want %s", exe, err, upgraded)
		}
		// The old instance, adopted by the new daemon, stops and records its exit as ever.
		adopt2 := func() {
			if err := r2.Stop(ctx, old.Name, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			st, err := r2.State(ctx, old.Name)
			if err != nil || st.Status != StatusExited || st.ExitCode != 0 {
				t.Errorf("old instance after Stop: %+v, %v; want exited 0", st, err)
			}
		}
		adopt2()
		waitGone(t, ctx, oldShim, "the old shim, its instance exited,")
		if !newShim.Alive() {
			t.Fatal("the new shim exited with its instance running")
		}
		if st, err := r2.State(ctx, next.Name); err != nil || !st.Running {
			t.Errorf("new instance: %+v, %v; want running", st, err)
		}
	})
}

// TestShimKilled: what a shim killed (SIGKILL, OOM) means for its instances. They are not
// its children: they run on, but nothing captures their output any more, so an instance
// that writes to stdout or stderr ends (SIGPIPE) and is seen exited with its exit code
// unknown, the description naming the shim — the agent then restarts it by its policy —
// and one that does not write runs on, says so in its state, and stops as usual. The next
// Start starts a new shim.
func TestShimKilled(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, rt rtUnderTest, dir string, ctx context.Context) {
		r := rt.new(t, dir)
		for _, spec := range []Spec{rt.spec("talker", "ready", "tick"), rt.spec("quiet", "ready", "sleep", "exit", "0")} {
			if err := r.Start(ctx, spec); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
			waitLog(t, r, spec.Name, "ready\n")
		}
		killed := shimOf(t, dir, "talker")
		if err := killed.Signal(unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGone(t, ctx, killed, "the shim, killed,")

		st, err := r.Wait(ctx, "talker")
		if err != nil || st.Status != StatusExited || st.ExitCode != ExitUnknown || !strings.Contains(st.Description, "shim is gone") {
			t.Errorf("the instance that writes, its shim killed: %+v, %v; want exited, exit code unknown, its shim named", st, err)
		}
		st, err = r.State(ctx, "quiet")
		if err != nil || !st.Running || !strings.Contains(st.Description, "shim is gone") {
			t.Errorf("the quiet instance, its shim killed: %+v, %v; want running, its shim named", st, err)
		}
		if err := r.Stop(ctx, "quiet", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if st, err := r.State(ctx, "quiet"); err != nil || st.Running || st.ExitCode != ExitUnknown {
			t.Errorf("the quiet instance stopped: %+v, %v; want exited, exit code unknown", st, err)
		}

		// What the agent does next: the instance again, under a new shim.
		if err := r.Remove(ctx, "talker"); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx, rt.spec("talker", "ready", "tick")); err != nil {
			t.Fatal(err)
		}
		waitLog(t, r, "talker", "tick 2\n")
		if s := shimOf(t, dir, "talker"); s == killed || !s.Alive() {
			t.Errorf("restarted instance's shim %+v, want a new one, alive", s)
		}
		if err := r.Stop(ctx, "talker", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestShimLongStateDir: the shim's socket is in the state dir, whose path may be longer
// than a socket address holds (108 bytes): the shim and the daemon reach it through a
// descriptor of the directory.
func TestShimLongStateDir(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		if rt.kind != KindProcess {
			t.Skip("the socket is the same for runc")
		}
		dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
		r := rt.new(t, dir)
		ctx := ctxT(t, 30*time.Second)
		spec := rt.spec("long", "ready", "sleep", "exit", "0")
		if err := r.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
		waitLog(t, r, spec.Name, "ready\n")
		socks, _ := filepath.Glob(filepath.Join(dir, "shim-*.sock"))
		if len(socks) != 1 || len(socks[0]) < 108 {
			t.Errorf("sockets %v, want one with a path longer than 107 bytes", socks)
		}
		if err := r.Stop(ctx, spec.Name, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if st, err := r.State(ctx, spec.Name); err != nil || st.Status != StatusExited || st.ExitCode != 0 {
			t.Errorf("after Stop: %+v, %v; want exited 0", st, err)
		}
	})
}
