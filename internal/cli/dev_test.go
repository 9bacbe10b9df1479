package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/runtime"
)

// waitDev waits until what() holds want, failing the test when the command
// ended first (done closed) or after a long while (a hang, not a speed).
func waitDev(t *testing.T, what func() string, want string, done <-chan struct{}, all func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(what(), want) {
		select {
		case <-done:
			t.Fatalf("outpost dev ended before printing %q:\n%s", want, all())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q after 5 minutes:\n%s", want, all())
		}
	}
}

// TestDev is the inner loop end to end, on each runtime this machine has:
// a solution made by `outpost init`; `outpost dev` builds, pushes, deploys
// and streams the module's first line; a broken main.go is reported once
// and the loop waits; a fixed main.go with a new string is rebuilt,
// redeployed and its new line streamed; stopping leaves no process, runc
// container or mount behind.
func TestDev(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain: outpost builds Go modules with it")
	}
	kinds := []string{runtime.KindProcess}
	if _, err := exec.LookPath("runc"); err == nil && os.Geteuid() == 0 {
		kinds = append(kinds, runtime.KindRunc)
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { testDev(t, kind) })
	}
}

func testDev(t *testing.T, kind string) {
	dir := t.TempDir()
	if code, _, errOut := run(t, "init", dir); code != 0 {
		t.Fatalf("init: %d %s", code, errOut)
	}
	mainGo := filepath.Join(dir, "modules", "tempsensor", "main.go")
	src, err := os.ReadFile(mainGo)
	if err != nil {
		t.Fatal(err)
	}
	const first, second = "tempsensor: a reading every", "tempsensor: one new reading each"
	if !bytes.Contains(src, []byte(first)) {
		t.Fatalf("main.go lacks %q: the scaffold changed, change this test with it", first)
	}

	out, errOut := &syncBuffer{}, &syncBuffer{}
	ios := &IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut, noColor: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var code int
	go func() {
		defer close(done)
		code = Run(ctx, ios, []string{"dev", dir, "--runtime", kind})
	}()
	defer func() { cancel(); <-done }() // on failure too: the temp dir is removed after
	all := func() string { return "stdout:\n" + out.String() + "\nstderr:\n" + errOut.String() }

	waitDev(t, out.String, "tempsensor | "+first, done, all)
	if !strings.Contains(errOut.String(), "watching "+dir) {
		t.Errorf("no watching line:\n%s", all())
	}

	// A build error: said once, clearly, and the loop waits.
	broken := bytes.Replace(src, []byte("func main() {"), []byte("func main() { undefinedThing()"), 1)
	if err := os.WriteFile(mainGo, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	waitDev(t, errOut.String, "✗ tempsensor: build", done, all)
	waitDev(t, errOut.String, "undefined: undefinedThing", done, all)

	// The fix, with a new string: rebuilt, redeployed, streamed.
	fixed := bytes.ReplaceAll(src, []byte(first), []byte(second))
	if err := os.WriteFile(mainGo, fixed, 0o644); err != nil {
		t.Fatal(err)
	}
	waitDev(t, out.String, "tempsensor | "+second, done, all)
	waitDev(t, errOut.String, "tempsensor: save → first line", done, all)
	if n := strings.Count(errOut.String(), "✗ tempsensor: build"); n != 1 {
		t.Errorf("the build error was shown %d times, want once:\n%s", n, all())
	}

	cancel()
	<-done
	if code != 0 {
		t.Fatalf("outpost dev: exit %d\n%s", code, all())
	}
	state := filepath.Join(dir, ".outpost")
	if left := processesUnder(t, state); len(left) > 0 {
		t.Errorf("processes left running: %s", strings.Join(left, "\n"))
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), state) {
		t.Errorf("mounts left under %s:\n%s", state, mi)
	}
	if kind == runtime.KindRunc {
		root := filepath.Join(state, "device", "runtime", "runc")
		if b, err := exec.Command("runc", "--root", root, "list", "-q").CombinedOutput(); len(bytes.TrimSpace(b)) > 0 {
			t.Errorf("runc containers left: %s (%v)", b, err)
		}
	}
	rt, err := runtime.New(kind, filepath.Join(state, "device", "runtime"))
	if err != nil {
		t.Fatal(err)
	}
	if insts, err := rt.List(context.Background()); err != nil || len(insts) > 0 {
		t.Errorf("instances left: %+v (%v)", insts, err)
	}
}

// processesUnder lists the processes whose command line, executable or
// working directory is under dir.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, p := range procs {
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		exe, _ := os.Readlink(filepath.Join(p, "exe"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		if strings.Contains(string(cmdline), dir) || strings.HasPrefix(exe, dir) || strings.HasPrefix(cwd, dir) {
			left = append(left, p+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return left
}
