//go:build linux

package runtime

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	gcrtarball "github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

// The conformance suite: every test below runs against each runtime — process and runc
// always (runc is skipped, with a message, only when not root or runc is missing, and CI
// is unset), docker where its engine answers. The instance is testdata/prog, built static
// into a rootfs of its own with /etc/passwd and /etc/group; TestMain checks that no runtime
// wrote into that rootfs.

var testRootfs string // the rootfs every test shares, read-only by contract

const (
	daemonChildEnv = "OUTPOST_RUNTIME_TEST_DAEMON" // kind|stateDir|rootfs|image|name: run TestDaemonChild
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Getenv(daemonChildEnv) != "" {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "outpost-runtime-rootfs")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := buildRootfs(dir); err != nil {
			fmt.Fprintln(os.Stderr, "build test rootfs:", err)
			return 1
		}
		testRootfs = dir
		os.Chmod(dir, 0o755) // for the instances run as another user
		// The suite runs the shim binary outpost daemon starts (TestShimReexec the
		// fallback): built here, named by ShimEnv.
		if err := buildShim(filepath.Join(dir, "..", filepath.Base(dir)+"-shim")); err != nil {
			fmt.Fprintln(os.Stderr, "build the shim:", err)
			return 1
		}
		defer os.Remove(testShim)
		os.Setenv(ShimEnv, testShim)
		before := snapshot(dir)
		code := m.Run()
		if after := snapshot(dir); after != before {
			fmt.Fprintf(os.Stderr, "FAIL: a runtime wrote into the shared rootfs\nbefore:\n%s\nafter:\n%s\n", before, after)
			return 1
		}
		return code
	}()
	os.Exit(code)
}

// testShim is cmd/outpost-shim, built by TestMain.
var testShim string

func buildShim(path string) error {
	cmd := exec.Command("go", "build", "-o", path, "../../cmd/outpost-shim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	testShim = path
	return nil
}

// buildRootfs makes a rootfs: /prog (testdata/prog, static), /etc/passwd, /etc/group, /app.
func buildRootfs(dir string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(dir, "prog"), "./testdata/prog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nmodule:x:1000:1000:module:/home/module:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nmodule:x:1000:\nextra:x:2000:module\n",
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(dir, "app"), 0o755)
}

// snapshot lists every entry of dir with its mode, size and modification time.
func snapshot(dir string) string {
	var lines []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			lines = append(lines, p+" "+err.Error())
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		lines = append(lines, fmt.Sprintf("%s %v %d %d", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	return strings.Join(lines, "\n")
}

// rtUnderTest is one runtime of the suite.
type rtUnderTest struct {
	kind  string
	image string // docker: the test image
	new   func(t *testing.T, stateDir string) Runtime
}

// runtimesUnderTest returns the runtimes the suite runs against, skipping those that
// cannot run here (with a message), failing for runc on CI.
func forEachRuntime(t *testing.T, f func(t *testing.T, rt rtUnderTest)) {
	t.Helper()
	kinds := []string{KindProcess, KindRunc, KindDocker}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			rt := rtUnderTest{kind: kind}
			switch kind {
			case KindRunc:
				if _, err := lookRunc(); err != nil || !isRoot() {
					msg := "runc runtime: needs root and runc on PATH (apt-get install runc)"
					if os.Getenv("CI") != "" {
						t.Fatal(msg + "; on CI it must run")
					}
					t.Skip(msg)
				}
			case KindDocker:
				if !dockerAnswers() {
					t.Skip("docker runtime: no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)")
				}
				rt.image = dockerTestImage(t)
			}
			rt.new = func(t *testing.T, stateDir string) Runtime {
				r, err := New(kind, stateDir)
				if err != nil {
					t.Fatal(err)
				}
				// Before the state dir goes: the shims of instances that exited delete
				// their runc state after the instance is gone (and runc would make its
				// root again under a removed state dir).
				t.Cleanup(func() { waitNoProcessUnder(stateDir, 20*time.Second) })
				if r.Name() != kind {
					t.Fatalf("Name() = %q, want %q", r.Name(), kind)
				}
				return r
			}
			f(t, rt)
		})
	}
}

// spec returns a spec for the test program with args after /prog.
func (rt rtUnderTest) spec(name string, args ...string) Spec {
	return Spec{
		Name:   name,
		Image:  rt.image,
		Rootfs: testRootfs,
		Args:   append([]string{"/prog"}, args...),
		Env:    []string{"PATH=/usr/bin:/bin", "IOTEDGE_MODULEID=" + name},
		Labels: map[string]string{"test": "conformance"},
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// run starts spec, waits for it to exit and returns its state and logs.
func run(t *testing.T, r Runtime, spec Spec) (State, string) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
	st, err := r.Wait(ctx, spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	return st, logsOf(t, r, spec.Name, LogOptions{})
}

func logsOf(t *testing.T, r Runtime, name string, opts LogOptions) string {
	t.Helper()
	rc, err := r.Logs(ctxT(t, 30*time.Second), name, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitLog waits until the instance's logs hold want.
func waitLog(t *testing.T, r Runtime, name, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		logs := logsOf(t, r, name, LogOptions{})
		if strings.Contains(logs, want) {
			return
		}
		if time.Now().After(deadline) {
			st, _ := r.State(context.Background(), name)
			t.Fatalf("logs of %s never showed %q; logs:\n%s\nstate: %+v", name, want, logs, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantLines(t *testing.T, logs string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(logs, w+"\n") {
			t.Errorf("logs lack line %q; logs:\n%s", w, logs)
		}
	}
}

// Module names with IoT Hub id characters that container ids do not allow.
const oddName = "temp$sensor:(1).x"

func TestExitCode(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		st, logs := run(t, r, rt.spec(oddName, "out", "bye", "exit", "3"))
		if st.Running || st.Status != StatusExited || st.ExitCode != 3 {
			t.Errorf("state = %+v, want exited with 3", st)
		}
		if st.Name != oddName || st.Labels["test"] != "conformance" {
			t.Errorf("name, labels = %q, %v", st.Name, st.Labels)
		}
		// (docker may stamp a quick exit a little before its start)
		if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt.Add(-time.Second)) {
			t.Errorf("times: started %v, finished %v", st.StartedAt, st.FinishedAt)
		}
		wantLines(t, logs, "bye")
		if got := r.Isolated(); got != (rt.kind != KindProcess) {
			t.Errorf("Isolated() = %v", got)
		}
		if rt.kind == KindProcess && !strings.Contains(st.Description, "not isolated") {
			t.Errorf("process state description %q does not say it is not isolated", st.Description)
		}
	})
}

func TestArgsEnvCwd(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		spec := rt.spec("argsenv", "env", "FOO", "env", "IOTEDGE_MODULEID", "env", "HOME", "env", "UNSET", "cwd", "args", "a b", "", "c")
		spec.Env = append(spec.Env, "FOO=bar=baz")
		spec.WorkingDir = "/app"
		st, logs := run(t, r, spec)
		if st.ExitCode != 0 {
			t.Fatalf("exit %d: %s", st.ExitCode, logs)
		}
		wantLines(t, logs, "args=env|FOO|env|IOTEDGE_MODULEID|env|HOME|env|UNSET|cwd|args|a b||c",
			"FOO=bar=baz", "IOTEDGE_MODULEID=argsenv", "HOME=/root", "UNSET unset")
		want := "cwd=/app"
		if rt.kind == KindProcess {
			want = "cwd=" + filepath.Join(testRootfs, "app")
		}
		wantLines(t, logs, want)
	})
}

func TestUser(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		if !isRoot() && rt.kind != KindDocker {
			t.Skip("switching user needs root")
		}
		r := rt.new(t, t.TempDir())
		for _, c := range []struct{ user, want, group string }{
			{"module", "uid=1000 gid=1000", "2000"},
			{"1000", "uid=1000 gid=1000", "2000"},
			{"1000:2000", "uid=1000 gid=2000", ""},
			{"module:extra", "uid=1000 gid=2000", ""},
			{"4242", "uid=4242 gid=0", ""},
			{"", "uid=0 gid=0", ""},
		} {
			spec := rt.spec("user", "id")
			spec.User = c.user
			st, logs := run(t, r, spec)
			if st.ExitCode != 0 || !strings.Contains(logs, c.want+" ") {
				t.Errorf("user %q: exit %d (%s), logs %q, want %q", c.user, st.ExitCode, st.Description, logs, c.want)
			}
			if c.group != "" && !strings.Contains(strings.TrimSpace(logs)+",", c.group+",") {
				t.Errorf("user %q: logs %q lack supplementary group %s", c.user, logs, c.group)
			}
			if err := r.Remove(ctxT(t, 30*time.Second), spec.Name); err != nil {
				t.Fatal(err)
			}
		}
		spec := rt.spec("user", "id")
		spec.User = "nobody-here"
		err := r.Start(ctxT(t, 30*time.Second), spec)
		if rt.kind == KindDocker {
			if err == nil { // the engine fails at start, or the container at run
				st, _ := r.Wait(ctxT(t, 30*time.Second), spec.Name)
				if st.ExitCode == 0 {
					t.Errorf("unknown user: started and exited 0")
				}
				_ = r.Remove(context.Background(), spec.Name)
			}
		} else if err == nil || !strings.Contains(err.Error(), "nobody-here") {
			t.Errorf("unknown user: err = %v", err)
		}
	})
}

func TestLogs(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		st, logs := run(t, r, rt.spec("logs", "out", "to stdout", "err", "to stderr", "lines", "10"))
		if st.ExitCode != 0 {
			t.Fatalf("exit %d", st.ExitCode)
		}
		wantLines(t, logs, "to stdout", "to stderr", "line 1", "line 10")
		// stdout and stderr are two pipes: their order is not kept; take stdout alone.
		if err := r.Remove(ctxT(t, 30*time.Second), "logs"); err != nil {
			t.Fatal(err)
		}
		st, _ = run(t, r, rt.spec("logs", "lines", "10"))
		if got := logsOf(t, r, "logs", LogOptions{Tail: 3}); got != "line 8\nline 9\nline 10\n" {
			t.Errorf("tail 3 = %q", got)
		}
		if got := logsOf(t, r, "logs", LogOptions{Since: time.Now().Add(time.Hour)}); got != "" {
			t.Errorf("since an hour ahead = %q, want nothing", got)
		}
		if got := logsOf(t, r, "logs", LogOptions{Since: st.StartedAt.Add(-time.Second)}); !strings.Contains(got, "line 10\n") {
			t.Errorf("since the start = %q", got)
		}
		got := logsOf(t, r, "logs", LogOptions{Tail: 1, Timestamps: true})
		ts, rest, _ := strings.Cut(got, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || rest != "line 10\n" {
			t.Errorf("timestamps = %q (%v)", got, err)
		}
	})
}

func TestLogsFollow(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		ctx := ctxT(t, 60*time.Second)
		spec := rt.spec("follow", "tick")
		if err := r.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
		rc, err := r.Logs(ctx, spec.Name, LogOptions{Follow: true, Tail: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		br := bufio.NewReader(rc)
		for i := 0; i < 5; i++ { // new lines keep coming
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "tick ") {
				t.Fatalf("line %d: %q, %v", i, line, err)
			}
		}
		if err := r.Stop(ctx, spec.Name, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(br) // ends once the instance has exited
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(string(rest), "got SIGTERM\n") {
			t.Errorf("the followed logs end with %q, want got SIGTERM", lastLines(string(rest), 2))
		}
	})
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func TestStop(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		ctx := ctxT(t, 60*time.Second)

		t.Run("SIGTERM", func(t *testing.T) {
			spec := rt.spec("stop-term", "ready", "sleep", "exit", "7")
			if err := r.Start(ctx, spec); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
			waitLog(t, r, spec.Name, "ready\n")
			st, err := r.State(ctx, spec.Name)
			if err != nil || !st.Running || st.Status != StatusRunning || st.Pid <= 0 {
				t.Fatalf("state = %+v, %v", st, err)
			}
			start := time.Now()
			if err := r.Stop(ctx, spec.Name, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("stop took %v: SIGTERM not honoured?", d)
			}
			st, _ = r.State(ctx, spec.Name)
			if st.Running || st.ExitCode != 7 {
				t.Errorf("state after stop = %+v, want exited 7 (the program's own exit after SIGTERM)", st)
			}
			wantLines(t, logsOf(t, r, spec.Name, LogOptions{}), "got SIGTERM")
			if err := r.Stop(ctx, spec.Name, time.Second); err != nil {
				t.Errorf("stopping a stopped instance: %v", err)
			}
		})

		t.Run("SIGKILL", func(t *testing.T) {
			spec := rt.spec("stop-kill", "stubborn", "ready", "forever")
			if err := r.Start(ctx, spec); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
			waitLog(t, r, spec.Name, "ready\n")
			grace := 500 * time.Millisecond
			if rt.kind == KindDocker {
				grace = time.Second // docker counts in seconds
			}
			start := time.Now()
			if err := r.Stop(ctx, spec.Name, grace); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < grace || d > grace+10*time.Second {
				t.Errorf("stop took %v with a grace of %v", d, grace)
			}
			st, _ := r.State(ctx, spec.Name)
			if st.Running || st.ExitCode != 137 {
				t.Errorf("state = %+v, want exited 137 (SIGKILL)", st)
			}
		})
	})
}

func TestRestartAndRemove(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		ctx := ctxT(t, 60*time.Second)
		spec := rt.spec(oddName, "out", "run", "exit", "0")
		if st, _ := run(t, r, spec); st.ExitCode != 0 {
			t.Fatalf("first run: %+v", st)
		}
		if err := r.Start(ctx, spec); !errors.Is(err, ErrExists) {
			t.Fatalf("start over an exited instance: err = %v, want ErrExists", err)
		}
		if err := r.Remove(ctx, spec.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := r.State(ctx, spec.Name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("state after remove: err = %v, want ErrNotFound", err)
		}
		spec.Args = append([]string{"/prog"}, "out", "again", "exit", "4")
		st, logs := run(t, r, spec)
		if st.ExitCode != 4 || strings.Contains(logs, "run\n") {
			t.Errorf("second run: %+v, logs %q (want exit 4, no logs of the first run)", st, logs)
		}

		// Remove a running one.
		run2 := rt.spec("running", "ready", "forever")
		if err := r.Start(ctx, run2); err != nil {
			t.Fatal(err)
		}
		if err := r.Remove(ctx, run2.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := r.State(ctx, run2.Name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("state after remove: %v", err)
		}
		list, err := r.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			if s.Name == run2.Name {
				t.Errorf("removed instance still listed: %+v", s)
			}
		}
		if err := r.Remove(ctx, "no-such"); !errors.Is(err, ErrNotFound) {
			t.Errorf("remove of no instance: %v", err)
		}
		if _, err := r.Logs(ctx, "no-such", LogOptions{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("logs of no instance: %v", err)
		}
	})
}

// TestAdopt: a second Runtime over the same state dir (a restarted daemon in the same
// process) finds the instance, its logs, and stops it.
func TestAdopt(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		dir := t.TempDir()
		ctx := ctxT(t, 60*time.Second)
		r1 := rt.new(t, dir)
		spec := rt.spec(oddName, "ready", "sleep", "exit", "5")
		if err := r1.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r1.Remove(context.Background(), spec.Name) })
		waitLog(t, r1, spec.Name, "ready\n")
		adopt(t, rt.new(t, dir), spec.Name, 5)
		if other := rt.new(t, t.TempDir()); true {
			list, _ := other.List(ctx)
			if len(list) != 0 {
				t.Errorf("a runtime over another state dir lists %+v", list)
			}
		}
	})
}

// adopt checks that r lists name running, then stops it and sees the exit code.
func adopt(t *testing.T, r Runtime, name string, exit int) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != name || !list[0].Running || list[0].Labels["test"] != "conformance" {
		t.Fatalf("List = %+v, want %s running", list, name)
	}
	wantLines(t, logsOf(t, r, name, LogOptions{}), "ready")
	if err := r.Stop(ctx, name, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := r.Wait(ctx, name)
	if err != nil || st.Running || st.ExitCode != exit {
		t.Errorf("after stop: %+v, %v (want exit %d)", st, err, exit)
	}
	if err := r.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
}

// TestAdoptAfterDaemonExit: the instance is started by another process (the daemon), which
// exits; this one adopts it.
func TestAdoptAfterDaemonExit(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestDaemonChild$", "-test.v")
		cmd.Env = append(os.Environ(), daemonChildEnv+"="+strings.Join([]string{rt.kind, dir, testRootfs, rt.image, oddName}, "|"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "STARTED") {
			t.Fatalf("daemon child: %v\n%s", err, out)
		}
		r := rt.new(t, dir)
		t.Cleanup(func() { _ = r.Remove(context.Background(), oddName) })
		waitLog(t, r, oddName, "ready\n")
		adopt(t, r, oddName, 5)
	})
}

// TestDaemonChild starts an instance and exits: the "daemon" of TestAdoptAfterDaemonExit.
func TestDaemonChild(t *testing.T) {
	v := os.Getenv(daemonChildEnv)
	if v == "" {
		t.Skip("runs as a child of TestAdoptAfterDaemonExit")
	}
	f := strings.Split(v, "|")
	testRootfs = f[2]
	rt := rtUnderTest{kind: f[0], image: f[3]}
	r, err := New(rt.kind, f[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctxT(t, 30*time.Second), rt.spec(f[4], "ready", "sleep", "exit", "5")); err != nil {
		t.Fatal(err)
	}
	fmt.Println("STARTED")
}

func TestWorkloadSocket(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		base, err := os.MkdirTemp("", "ws") // short: a socket path has at most 107 bytes
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
		sock := filepath.Join(base, "mod", "workload.sock")
		os.MkdirAll(filepath.Dir(sock), 0o755)
		serveSocket(t, sock)

		r := rt.new(t, t.TempDir())
		args := []string{"dialenv", "env", "IOTEDGE_WORKLOADURI"}
		if rt.kind != KindProcess {
			args = append(args, "dial", workloadSocket)
		}
		spec := rt.spec("workload", args...)
		spec.Env = append(spec.Env, "IOTEDGE_WORKLOADURI=unix://"+workloadSocket)
		spec.WorkloadSocket = sock
		st, logs := run(t, r, spec)
		if st.ExitCode != 0 {
			t.Fatalf("exit %d: %s", st.ExitCode, logs)
		}
		if n := strings.Count(logs, "dial: pong\n"); n != len(args)/2 {
			t.Errorf("the workload socket answered %d times, want %d; logs:\n%s", n, len(args)/2, logs)
		}
		wantURI := "unix://" + workloadSocket
		if rt.kind == KindProcess {
			wantURI = "unix://" + sock
		}
		wantLines(t, logs, "IOTEDGE_WORKLOADURI="+wantURI)
	})
}

// serveSocket answers "pong" on a unix socket until the test ends.
func serveSocket(t *testing.T, path string) {
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("pong\n"))
			}()
		}
	}()
}

// TestBinds: a bind is visible (and read-only when asked); the rootfs is writable through
// the instance's own layer (runc, docker) without touching the shared rootfs.
func TestBinds(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		if rt.kind == KindProcess {
			t.Skip("the process runtime does not apply binds")
		}
		r := rt.new(t, t.TempDir())
		rw, ro := t.TempDir(), t.TempDir()
		spec := rt.spec("binds", "write", "/data/f", "write", "/conf/f", "write", "/newfile")
		spec.Binds = []string{rw + ":/data", ro + ":/conf:ro"}
		st, logs := run(t, r, spec)
		if st.ExitCode != 0 {
			t.Fatalf("exit %d: %s", st.ExitCode, logs)
		}
		wantLines(t, logs, "wrote /data/f", "wrote /newfile")
		if _, err := os.Stat(filepath.Join(rw, "f")); err != nil {
			t.Errorf("rw bind: %v", err)
		}
		if !strings.Contains(logs, "write: open /conf/f: read-only file system") {
			t.Errorf("ro bind was writable: %s", logs)
		}
	})
}

func TestStartErrors(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		ctx := ctxT(t, 30*time.Second)
		spec := rt.spec("noprog")
		spec.Args = []string{"/no/such/prog"}
		err := r.Start(ctx, spec)
		if err == nil {
			st, _ := r.Wait(ctx, spec.Name)
			if rt.kind != KindDocker || st.ExitCode == 0 {
				t.Errorf("start of a missing program: no error, state %+v", st)
			}
			_ = r.Remove(ctx, spec.Name)
		} else if !strings.Contains(err.Error(), "/no/such/prog") {
			t.Errorf("error %q does not name the program", err)
		}
		if _, err := r.State(ctx, spec.Name); !errors.Is(err, ErrNotFound) {
			t.Errorf("a failed start left an instance behind: %v", err)
		}
		if _, err := r.Wait(ctx, "no-such"); !errors.Is(err, ErrNotFound) {
			t.Errorf("wait for no instance: %v", err)
		}
		if err := r.Stop(ctx, "no-such", time.Second); !errors.Is(err, ErrNotFound) {
			t.Errorf("stop of no instance: %v", err)
		}
	})
}

// dockerTestImage imports the test rootfs into the engine as an image (no registry
// needed) and returns its reference.
func dockerTestImage(t testing.TB) string {
	t.Helper()
	buf := rootfsTar(t)
	sum := sha256.Sum256(buf.Bytes())
	tag := hex.EncodeToString(sum[:6])
	hc, base, err := dockerEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"fromSrc": {"-"}, "repo": {"outpost-runtimetest"}, "tag": {tag}}
	resp, err := hc.Post(base+"/images/create?"+q.Encode(), "application/x-tar", buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error"`)) {
		t.Fatalf("docker import: %s: %s", resp.Status, b)
	}
	return "outpost-runtimetest:" + tag
}

// rootfsTar returns the test rootfs as a tar stream.
func rootfsTar(t testing.TB) *bytes.Buffer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var names []string
	filepath.WalkDir(testRootfs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != testRootfs {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, p := range names {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		hdr, _ := tar.FileInfoHeader(fi, "")
		hdr.Name = strings.TrimPrefix(p, testRootfs+"/")
		hdr.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			tw.Write(b)
		}
	}
	tw.Close()
	return &buf
}

// testRegistryImage starts an in-process registry and returns it with an image of the
// test rootfs, not pushed yet.
func testRegistryImage(t *testing.T) (*httptest.Server, v1.Image) {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	tarball := rootfsTar(t).Bytes()
	layer, err := gcrtarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarball)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	return reg, img
}

// pushTestImage pushes img to reg's repository repo under a tag of its own, and returns
// the reference.
func pushTestImage(t *testing.T, reg *httptest.Server, repo string, img v1.Image) string {
	t.Helper()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/" + repo + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestDockerPull: the engine pulls an image it lacks, from a registry (in process here).
func TestDockerPull(t *testing.T) {
	if !dockerAnswers() {
		t.Skip("docker runtime: no Docker engine answers")
	}
	reg, img := testRegistryImage(t)
	ref := pushTestImage(t, reg, "runtimetest", img)
	r, err := New(KindDocker, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rt := rtUnderTest{kind: KindDocker, image: ref}
	st, logs := run(t, r, rt.spec("pulled", "out", "pulled and ran", "exit", "2"))
	if st.ExitCode != 2 {
		t.Errorf("exit %d", st.ExitCode)
	}
	wantLines(t, logs, "pulled and ran")
	hc, base, _ := dockerEndpoint()
	req, _ := http.NewRequest(http.MethodDelete, base+"/images/"+ref+"?force=1", nil)
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}

	spec := rt.spec("nopull")
	spec.Image = strings.TrimPrefix(reg.URL, "http://") + "/no/such:image"
	if err := r.Start(ctxT(t, 30*time.Second), spec); err == nil || !strings.Contains(err.Error(), "pull") {
		t.Errorf("start of a missing image: %v", err)
	}
}

// TestLogCaps: logs past the cap are rotated away; the newest lines stay.
func TestLogCaps(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		spec := rt.spec("caps", "lines", "5000")
		spec.LogMaxBytes, spec.LogFiles = 16<<10, 2
		if rt.kind != KindDocker {
			spec.LogDir = t.TempDir()
		}
		st, logs := run(t, r, spec)
		if st.ExitCode != 0 || !strings.HasSuffix(logs, "line 4999\nline 5000\n") || strings.HasPrefix(logs, "line 1\n") {
			t.Errorf("exit %d; logs from %q to %q: want the newest lines only", st.ExitCode, logs[:min(20, len(logs))], lastLines(logs, 2))
		}
		if rt.kind == KindDocker {
			return
		}
		files := logFiles(spec.LogDir)
		if len(files) != 2 {
			t.Errorf("log files %v, want 2", files)
		}
		for _, f := range files {
			if fi, err := os.Stat(f); err != nil || fi.Size() > spec.LogMaxBytes {
				t.Errorf("%s: %v, %d bytes", f, err, fi.Size())
			}
		}
		// A LogDir of the caller's is the caller's: Remove leaves it.
		if err := r.Remove(ctxT(t, 30*time.Second), spec.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(files[1]); err != nil {
			t.Errorf("remove took the caller's log dir: %v", err)
		}
	})
}

// BenchmarkStartWait: Start to Wait's return of an instance that exits at once (Remove is
// not timed). Compare with `runc run` of the same rootfs by hand (docs/benchmarks.md).
func BenchmarkStartWait(b *testing.B) {
	for _, kind := range []string{KindProcess, KindRunc, KindDocker} {
		b.Run(kind, func(b *testing.B) {
			rt := rtUnderTest{kind: kind}
			switch {
			case kind == KindRunc && (!isRoot() || func() bool { _, err := lookRunc(); return err != nil }()):
				b.Skip("runc: needs root and runc")
			case kind == KindDocker && !dockerAnswers():
				b.Skip("docker: no engine")
			case kind == KindDocker:
				rt.image = dockerTestImage(b)
			}
			r, err := New(kind, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			spec := rt.spec("bench", "exit", "0")
			for b.Loop() {
				if err := r.Start(ctx, spec); err != nil {
					b.Fatal(err)
				}
				st, err := r.Wait(ctx, spec.Name)
				if err != nil || st.ExitCode != 0 {
					b.Fatal(st, err)
				}
				b.StopTimer()
				if err := r.Remove(ctx, spec.Name); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// TestExec: a command run in a running instance sees its environment, working dir and
// user; its exit code and the end of its output come back; a deadline kills it.
func TestExec(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		r := rt.new(t, t.TempDir())
		ctx := ctxT(t, 60*time.Second)
		spec := rt.spec("exec", "ready", "sleep", "exit", "0")
		spec.Env = []string{"PATH=/usr/bin:/", "FOO=bar"} // prog is found on PATH
		spec.WorkingDir = "/app"
		if isRoot() || rt.kind == KindDocker {
			spec.User = "module"
		}
		if err := r.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
		waitLog(t, r, spec.Name, "ready\n")

		res, err := r.Exec(ctx, spec.Name, []string{"prog", "id", "env", "FOO", "env", "HOME", "cwd", "err", "to stderr", "exit", "3"})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 3 {
			t.Errorf("exit code %d, want 3; output:\n%s", res.ExitCode, res.Output)
		}
		cwd := "cwd=/app"
		if rt.kind == KindProcess {
			cwd = "cwd=" + filepath.Join(testRootfs, "app")
		}
		want := []string{"FOO=bar", cwd, "to stderr"}
		if spec.User != "" {
			want = append(want, "HOME=/home/module")
			// (docker lists the primary group among the supplementary ones: "1000,2000")
			if !strings.Contains(res.Output, "uid=1000 gid=1000 groups=") || !strings.Contains(res.Output, "2000\n") {
				t.Errorf("exec as user module: output %q lacks uid=1000 gid=1000 and group 2000", res.Output)
			}
		}
		wantLines(t, res.Output, want...)

		res, err = r.Exec(ctx, spec.Name, []string{"/prog", "lines", "2000"})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("lines: %+v, %v", res, err)
		}
		if len(res.Output) > MaxExecOutput || !strings.HasSuffix(res.Output, "\nline 1999\nline 2000\n") || strings.Contains(res.Output, "line 1\n") {
			t.Errorf("output of 2000 lines: %d bytes from %q to %q: want the last %d bytes", len(res.Output),
				res.Output[:min(20, len(res.Output))], lastLines(res.Output, 2), MaxExecOutput)
		}

		// A command that leaves a process behind holding its output: Exec returns once the
		// command has exited, not when that process does.
		mark := fmt.Sprintf("exec-spawn-%d", time.Now().UnixNano())
		t.Cleanup(func() {
			for _, pid := range pidsWith(mark) { // left running by the process runtime
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		})
		start := time.Now()
		res, err = r.Exec(ctx, spec.Name, []string{"/prog", "spawn", mark, "exit", "5"})
		if err != nil || res.ExitCode != 5 || !strings.Contains(res.Output, "spawned ") {
			t.Errorf("spawn and exit 5: %+v, %v", res, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("spawn and exit: Exec took %v", d)
		}

		res, err = r.Exec(ctx, spec.Name, []string{"/no/such/prog"})
		if err == nil && res.ExitCode != 126 && res.ExitCode != 127 { // docker: 126 or 127
			t.Errorf("exec of a missing program: %+v", res)
		}
		if errors.Is(err, ErrNotRunning) || errors.Is(err, ErrNotFound) {
			t.Errorf("exec of a missing program: %v", err)
		}

		t.Run("deadline", func(t *testing.T) {
			mark := fmt.Sprintf("exec-deadline-%d", time.Now().UnixNano())
			dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := r.Exec(dctx, spec.Name, []string{"/prog", "mark", mark, "spawn", mark, "forever"})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want the deadline's", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Exec returned %v after its deadline of 500ms", d)
			}
			if rt.kind == KindDocker {
				return // the engine cannot kill an exec
			}
			// Killed are the command and what it started (a SIGKILL takes a moment).
			deadline := time.Now().Add(2 * time.Second)
			for {
				pids := pidsWith(mark)
				if len(pids) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("processes left behind: %v", pids)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if st, err := r.State(ctx, spec.Name); err != nil || !st.Running {
				t.Errorf("the instance after a killed exec: %+v, %v", st, err)
			}
		})

		if _, err := r.Exec(ctx, "no-such", []string{"/prog"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("exec in no instance: %v", err)
		}
		if err := r.Stop(ctx, spec.Name, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Exec(ctx, spec.Name, []string{"/prog", "exit", "0"}); !errors.Is(err, ErrNotRunning) {
			t.Errorf("exec in a stopped instance: %v, want ErrNotRunning", err)
		}
	})
}

// pidsWith returns the processes whose command line holds s (zombies have none).
func pidsWith(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder returns the mount points at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// TestRootfsUnmounted: an instance that has exited holds no mount (runc's rootfs overlay)
// though its state, logs and exit code stay until Remove — whoever sees it exit first: the
// shim, or State after the shim was killed; Remove cleans up what is still mounted.
func TestRootfsUnmounted(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		if rt.kind == KindDocker {
			t.Skip("the engine keeps its containers' mounts")
		}
		dir := t.TempDir()
		r := rt.new(t, dir)
		ctx := ctxT(t, 60*time.Second)
		noMounts := func(when string) {
			t.Helper()
			if m := mountsUnder(t, dir); len(m) > 0 {
				t.Errorf("%s: still mounted: %v", when, m)
			}
		}
		mounted := func(when string) {
			t.Helper()
			if m := mountsUnder(t, dir); rt.kind == KindRunc && len(m) == 0 {
				t.Errorf("%s: no rootfs mount seen", when)
			}
		}

		st, logs := run(t, r, rt.spec("exits", "out", "bye", "exit", "3"))
		noMounts("after the instance exited")
		if st.ExitCode != 3 || !strings.Contains(logs, "bye\n") {
			t.Errorf("state %+v, logs %q", st, logs)
		}
		if st, err := r.State(ctx, "exits"); err != nil || st.ExitCode != 3 {
			t.Errorf("state kept: %+v, %v", st, err)
		}
		if err := r.Remove(ctx, "exits"); err != nil {
			t.Fatal(err)
		}
		if st, _ := run(t, r, rt.spec("exits", "exit", "4")); st.ExitCode != 4 {
			t.Errorf("start after remove: %+v", st)
		}
		noMounts("after the second run")

		spec := rt.spec("stopped", "ready", "sleep", "exit", "7")
		if err := r.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
		waitLog(t, r, spec.Name, "ready\n")
		mounted("while running")
		if err := r.Stop(ctx, spec.Name, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		noMounts("after stop")

		// Its shim killed, the instance killed: the first State sees it exited.
		killBoth := func(name string) {
			t.Helper()
			spec := rt.spec(name, "ready", "forever")
			if err := r.Start(ctx, spec); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
			waitLog(t, r, spec.Name, "ready\n")
			var rs runState
			if err := shim.ReadJSON(filepath.Join(dir, "instances", ContainerID(name)), "state.json", &rs); err != nil {
				t.Fatal(err)
			}
			for _, p := range []shim.ProcRef{rs.Shim, rs.Main} {
				if err := p.Signal(unix.SIGKILL); err != nil {
					t.Fatal(err)
				}
				if err := p.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		killBoth("shimless")
		mounted("shim and instance killed, before anyone looked")
		st, err := r.State(ctx, "shimless")
		if err != nil || st.Running || st.ExitCode != ExitUnknown {
			t.Errorf("state: %+v, %v", st, err)
		}
		noMounts("after State saw it exited")
		if err := r.Remove(ctx, "shimless"); err != nil {
			t.Fatal(err)
		}

		// The same, and Remove the first to look.
		killBoth("shimless")
		mounted("shim and instance killed again, before anyone looked")
		if err := r.Remove(ctx, "shimless"); err != nil {
			t.Fatal(err)
		}
		noMounts("after Remove")
		if _, err := os.Stat(filepath.Join(dir, "instances", ContainerID("shimless"))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("state dir left after Remove: %v", err)
		}
	})
}

// TestDockerImages: the docker runtime pulls through the engine and says what the engine
// has: the digest pushed, the image's config; and the engine does not run the image's
// HEALTHCHECK itself (the agent does, through Exec).
func TestDockerImages(t *testing.T) {
	if !dockerAnswers() {
		t.Skip("docker runtime: no Docker engine answers")
	}
	reg, img := testRegistryImage(t)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	c.Entrypoint, c.Cmd = []string{"/prog"}, []string{"ready", "forever"}
	c.Env = []string{"PATH=/usr/bin:/", "IMAGE_ENV=yes"}
	c.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", "/prog", "exit", "1"}, Interval: 100 * time.Millisecond, Retries: 1}
	if img, err = mutate.Config(img, c); err != nil {
		t.Fatal(err)
	}
	pushed, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := pushTestImage(t, reg, "runtimetest/images", img)
	repo := ref[:strings.LastIndex(ref, ":")]

	r, err := New(KindDocker, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, ok := r.(ImagePuller)
	if !ok {
		t.Fatal("the docker runtime is no ImagePuller")
	}
	ctx := ctxT(t, 60*time.Second)
	if _, err := p.InspectImage(ctx, ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("inspect before the pull: %v, want ErrNotFound", err)
	}
	got, err := p.PullImage(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dockerDelete(t, "/images/"+got.ID+"?force=1") })
	wantID, _ := img.ConfigName()
	if got.Digest != pushed.String() || got.ID != wantID.String() {
		t.Errorf("pulled: id %s, digest %s; want id %s, digest %s", got.ID, got.Digest, wantID, pushed)
	}
	if fmt.Sprint(got.Config.Entrypoint, got.Config.Cmd, got.Config.Env) != fmt.Sprint(c.Entrypoint, c.Cmd, c.Env) ||
		got.Config.Healthcheck == nil || fmt.Sprint(got.Config.Healthcheck.Test) != fmt.Sprint(c.Healthcheck.Test) {
		t.Errorf("config: %+v", got.Config)
	}
	again, err := p.InspectImage(ctx, ref)
	if err != nil || !reflect.DeepEqual(again, got) {
		t.Errorf("inspect after the pull: %+v, %v; want %+v", again, err, got)
	}
	byDigest, err := p.InspectImage(ctx, repo+"@"+pushed.String())
	if err != nil || byDigest.ID != got.ID || byDigest.Digest != pushed.String() {
		t.Errorf("inspect by digest: %+v, %v", byDigest, err)
	}
	// A ref with no tag means :latest (the engine would pull every tag of the repository).
	latest, err := name.NewTag(repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(latest, img); err != nil {
		t.Fatal(err)
	}
	if got, err := p.PullImage(ctx, repo, nil); err != nil || got.Digest != pushed.String() {
		t.Errorf("pull of the repository alone: %+v, %v", got, err)
	}
	if _, err := p.InspectImage(ctx, repo+":no-such-tag"); !errors.Is(err, ErrNotFound) {
		t.Errorf("inspect of an unknown ref: %v, want ErrNotFound", err)
	}
	if _, err := p.PullImage(ctx, repo+":no-such-tag", nil); err == nil {
		t.Error("pull of an unknown tag: no error")
	}

	// Started from the image, with its own entrypoint: no engine health check runs.
	spec := Spec{Name: "imagehealth", Image: ref, Labels: map[string]string{"test": "conformance"}}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
	waitLog(t, r, spec.Name, "ready\n")
	time.Sleep(500 * time.Millisecond) // five intervals of the image's check
	d := r.(*dockerRuntime)
	var in struct {
		Config struct{ Healthcheck *v1.HealthConfig }
		State  struct{ Health any }
	}
	if err := d.do(ctx, http.MethodGet, "/containers/"+ContainerID(spec.Name)+"/json", nil, nil, &in); err != nil {
		t.Fatal(err)
	}
	if in.Config.Healthcheck == nil || fmt.Sprint(in.Config.Healthcheck.Test) != "[NONE]" || in.State.Health != nil {
		t.Errorf("container health check %+v, health %v: want NONE and none", in.Config.Healthcheck, in.State.Health)
	}
	res, err := r.Exec(ctx, spec.Name, []string{"prog", "env", "IMAGE_ENV"})
	if err != nil || res.ExitCode != 0 || res.Output != "IMAGE_ENV=yes\n" {
		t.Errorf("exec: %+v, %v", res, err)
	}
}

func TestRepoDigest(t *testing.T) {
	const d1, d2 = "sha256:1111111111111111111111111111111111111111111111111111111111111111", "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	for _, c := range []struct {
		ref  string
		rds  []string
		want string
	}{
		{"alpine:3", []string{"alpine@" + d1}, d1},
		{"docker.io/library/alpine", []string{"other@" + d2, "alpine@" + d1}, d1},
		{"index.docker.io/library/alpine:3", []string{"docker.io/library/alpine@" + d1}, d1},
		{"localhost:5000/a/b:1", []string{"localhost:5000/a@" + d2, "localhost:5000/a/b@" + d1}, d1},
		{"127.0.0.1:5000/m:1", []string{"127.0.0.1:5001/m@" + d2}, ""},
		{"m@" + d2, []string{"m@" + d1, "m@" + d2}, d2},
		{"local:latest", nil, ""},
	} {
		if got := repoDigest(c.ref, c.rds); got != c.want {
			t.Errorf("repoDigest(%q, %q) = %q, want %q", c.ref, c.rds, got, c.want)
		}
	}
}

// TestDockerImageGC: the docker runtime removes the images it pulled that no one uses,
// once older than the age given, and leaves the others: one in use, one a container
// still has (stopped), one it did not pull.
func TestDockerImageGC(t *testing.T) {
	if !dockerAnswers() {
		t.Skip("docker runtime: no Docker engine answers")
	}
	reg, base := testRegistryImage(t)
	refs := map[string]string{}
	for _, which := range []string{"used", "unused", "container"} {
		img, err := mutate.Config(base, v1.Config{Entrypoint: []string{"/prog"}, Env: []string{"WHICH=" + which}})
		if err != nil {
			t.Fatal(err)
		}
		refs[which] = pushTestImage(t, reg, "runtimetest/gc-"+which, img)
	}
	r, err := New(KindDocker, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := r.(ImagePuller)
	ctx := ctxT(t, 60*time.Second)
	ids := map[string]string{}
	for which, ref := range refs {
		img, err := p.PullImage(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[which] = img.ID
		t.Cleanup(func() { dockerDelete(t, "/images/"+img.ID+"?force=1") })
	}
	spec := Spec{Name: "gc-holder", Image: refs["container"], Args: []string{"/prog", "exit", "0"}}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
	if _, err := r.Wait(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}

	if removed, err := p.GCImages(ctx, nil, time.Hour); err != nil || len(removed) != 0 {
		t.Errorf("GC of images used a moment ago: removed %v, %v", removed, err)
	}
	removed, err := p.GCImages(ctx, []string{refs["used"]}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{refs["unused"]}) {
		t.Errorf("removed %v, want only %s", removed, refs["unused"])
	}
	if _, err := p.InspectImage(ctx, refs["unused"]); !errors.Is(err, ErrNotFound) {
		t.Errorf("the unused image after GC: %v", err)
	}
	for _, which := range []string{"used", "container"} {
		if _, err := p.InspectImage(ctx, refs[which]); err != nil {
			t.Errorf("the %s image after GC: %v", which, err)
		}
	}
	// The test rootfs image was loaded, not pulled by the runtime: never its to remove.
	loaded := dockerTestImage(t)
	if removed, err := p.GCImages(ctx, nil, 0); err != nil || slices.Contains(removed, loaded) || !slices.Contains(removed, refs["used"]) {
		t.Errorf("GC with nothing in use: removed %v, %v", removed, err)
	}
	if _, err := p.InspectImage(ctx, loaded); err != nil {
		t.Errorf("an image the runtime did not pull was removed: %v", err)
	}
}

// dockerDelete sends DELETE path to the engine, for cleanups.
func dockerDelete(t testing.TB, path string) {
	hc, base, err := dockerEndpoint()
	if err != nil {
		return
	}
	req, _ := http.NewRequest(http.MethodDelete, base+path, nil)
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}
}

// TestShimBinary: an instance's shim is the outpost-shim binary (ShimEnv names it here;
// outpost daemon finds it beside its own binary), a small process of its own rather than
// the daemon re-executed; without it, the daemon's binary re-executed is the shim. Either
// way the instance runs, logs, stops and records its exit.
func TestShimBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		if rt.kind == KindDocker {
			t.Skip("the engine has shims of its own")
		}
		for _, c := range []struct{ name, env, want string }{{"outpost-shim", testShim, testShim}, {"reexec", "reexec", self}} {
			t.Run(c.name, func(t *testing.T) {
				t.Setenv(ShimEnv, c.env)
				dir := t.TempDir()
				r := rt.new(t, dir)
				ctx := ctxT(t, 30*time.Second)
				spec := rt.spec("shimmed", "ready", "sleep", "exit", "0")
				if err := r.Start(ctx, spec); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = r.Remove(context.Background(), spec.Name) })
				waitLog(t, r, spec.Name, "ready\n")
				var rs shim.RunState
				if err := shim.ReadJSON(filepath.Join(dir, "instances", ContainerID(spec.Name)), "state.json", &rs); err != nil {
					t.Fatal(err)
				}
				if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", rs.Shim.Pid)); err != nil || exe != c.want {
					t.Errorf("the shim (pid %d) runs %q (%v), want %s", rs.Shim.Pid, exe, err, c.want)
				}
				if err := r.Stop(ctx, spec.Name, 10*time.Second); err != nil {
					t.Fatal(err)
				}
				st, err := r.State(ctx, spec.Name)
				if err != nil || st.Status != StatusExited || st.ExitCode != 0 {
					t.Errorf("after Stop: %+v, %v; want exited 0", st, err)
				}
				wantLines(t, logsOf(t, r, spec.Name, LogOptions{}), "ready", "got SIGTERM")
			})
		}
	})
}

// TestShimCommand: the daemon starts the outpost-shim binary beside its own, ShimEnv's
// binary when set, and re-executes itself when there is none or ShimEnv says "reexec".
func TestShimCommand(t *testing.T) {
	bin := t.TempDir()
	exe := filepath.Join(bin, "outpost")
	const dir = "/state/shim-x.sock"
	reexec := func(path string, env []string) bool {
		return path == "/proc/self/exe" && slices.Contains(env, shim.Env+"="+dir) && slices.Contains(env, "GOMAXPROCS=1")
	}
	t.Setenv(ShimEnv, "")
	if p, env := shimCommand(dir, exe); !reexec(p, env) {
		t.Errorf("no outpost-shim beside %s: %s, want the daemon's own binary with %s and GOMAXPROCS=1 set", exe, p, shim.Env)
	}
	if err := os.WriteFile(filepath.Join(bin, shim.Binary), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, env := shimCommand(dir, exe); p != filepath.Join(bin, shim.Binary) || reexec(p, env) || !slices.Contains(env, "GOMAXPROCS=1") {
		t.Errorf("outpost-shim beside %s: %s, want it with GOMAXPROCS=1", exe, p)
	}
	t.Setenv(ShimEnv, "reexec")
	if p, env := shimCommand(dir, exe); !reexec(p, env) {
		t.Errorf("%s=reexec: %s", ShimEnv, p)
	}
	t.Setenv(ShimEnv, "/opt/shim")
	if p, _ := shimCommand(dir, exe); p != "/opt/shim" {
		t.Errorf("%s=/opt/shim: %s", ShimEnv, p)
	}
}

// TestRuncState: the shim deletes runc's state of its instance once it has recorded the
// exit, with no Remove (so that the daemon runs no `runc delete` between a module's old
// instance and its new one); each instance has a runc id (and cgroup) of its own; and a
// runtime made over the state dir deletes the runc states no instance names, which a
// crash can leave.
func TestRuncState(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		if rt.kind != KindRunc {
			t.Skip("runc only")
		}
		dir := t.TempDir()
		r := rt.new(t, dir)
		ctx := ctxT(t, 60*time.Second)
		root := filepath.Join(dir, "runc")
		states := func() []string { return dirNames(root) }
		gone := func(what string) {
			t.Helper()
			for deadline := time.Now().Add(20 * time.Second); len(states()) > 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: runc still has %v", what, states())
				}
			}
		}
		runcID := func(name string) string {
			var rec instanceRecord
			if err := shim.ReadJSON(filepath.Join(dir, "instances", ContainerID(name)), "instance.json", &rec); err != nil {
				t.Fatal(err)
			}
			return rec.Launch.ID
		}

		spec := rt.spec("st", "exit", "0")
		if err := r.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		first := runcID("st")
		if _, err := r.Wait(ctx, "st"); err != nil {
			t.Fatal(err)
		}
		gone("an instance exited, not removed")
		if err := r.Remove(ctx, "st"); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Remove(context.Background(), "st") })
		if second := runcID("st"); second == first {
			t.Errorf("two instances of one module have the runc id %s", first)
		}
		// The second st exits too, and the shim deletes its state.
		if _, err := r.Wait(ctx, "st"); err != nil {
			t.Fatal(err)
		}
		gone("the second instance exited")

		// A crash: the shim and an instance killed, the instance's dir gone, runc's state
		// left.
		orphan := rt.spec("orphan", "ready", "forever")
		if err := r.Start(ctx, orphan); err != nil {
			t.Fatal(err)
		}
		waitLog(t, r, orphan.Name, "ready\n")
		odir := filepath.Join(dir, "instances", ContainerID(orphan.Name))
		orphanID := runcID(orphan.Name)
		var rs shim.RunState
		if err := shim.ReadJSON(odir, "state.json", &rs); err != nil {
			t.Fatal(err)
		}
		for _, p := range []shim.ProcRef{rs.Shim, rs.Main} {
			if err := p.Signal(unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := p.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := shim.UnmountRootfs(odir); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(odir); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); !slices.Equal(states(), []string{orphanID}); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("runc states %v, want only the orphan's", states())
			}
		}
		rt.new(t, dir)
		if ids := states(); len(ids) > 0 {
			t.Errorf("a new runtime left runc states no instance names: %v", ids)
		}
	})
}

// TestRemoveInBackground: Remove takes an instance away at once (its directory renamed
// aside and deleted in the background): the name is free for the module's next instance
// at once, and nothing is left shortly after; List shows no removed instance; and a
// runtime made over the state dir deletes what a Remove left (a daemon stopped before
// its background deletion ended).
func TestRemoveInBackground(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt rtUnderTest) {
		if rt.kind == KindDocker {
			t.Skip("the engine removes its containers")
		}
		dir := t.TempDir()
		inst := filepath.Join(dir, "instances")
		left := func() []string { return dirNames(inst) }
		r := rt.new(t, dir)
		ctx := ctxT(t, 30*time.Second)
		spec := rt.spec("rm", "exit", "0")
		run(t, r, spec)
		if err := r.Remove(ctx, spec.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := r.State(ctx, spec.Name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("State after Remove: %v, want ErrNotFound", err)
		}
		if err := r.Start(ctx, spec); err != nil {
			t.Fatalf("Start right after Remove: %v", err)
		}
		if _, err := r.Wait(ctx, spec.Name); err != nil {
			t.Fatal(err)
		}
		if err := r.Remove(ctx, spec.Name); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); len(left()) > 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("left after Remove: %v", left())
			}
		}

		// What a Remove left when its daemon stopped.
		removed := filepath.Join(inst, removedPrefix+ContainerID("x")+"-1")
		if err := os.MkdirAll(filepath.Join(removed, "logs"), 0o700); err != nil {
			t.Fatal(err)
		}
		rec := `{"kind": "` + rt.kind + `", "name": "x", "id": "` + ContainerID("x") + `"}`
		if err := os.WriteFile(filepath.Join(removed, "instance.json"), []byte(rec), 0o600); err != nil {
			t.Fatal(err)
		}
		if l, err := r.List(ctx); err != nil || len(l) != 0 {
			t.Errorf("List shows a removed instance: %+v, %v", l, err)
		}
		rt.new(t, dir)
		if l := left(); len(l) > 0 {
			t.Errorf("a new runtime left %v", l)
		}
	})
}

// dirNames lists the names in dir (none when there is no dir).
func dirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// waitNoProcessUnder waits, up to d, until no process has dir in its command line (the
// shims of the instances in dir, and the runc they run).
func waitNoProcessUnder(dir string, d time.Duration) {
	busy := func() bool {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(dir+"/")) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(d); busy() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}
