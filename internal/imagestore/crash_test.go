package imagestore

import (
	"archive/tar"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const crashChildEnv = "OUTPOST_IMAGESTORE_CRASH_CHILD"

// TestCrashChild is the child of TestCrashMidPull: it pulls one image into a
// store and is killed somewhere along the way.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		t.Skip("the child process of TestCrashMidPull")
	}
	dir, ref, _ := strings.Cut(spec, "|")
	s, err := Open(dir, WithKeychain(noCreds), WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	if _, err := s.Pull(ctx, ref, nil); err != nil {
		fmt.Fprintln(os.Stderr, "pull:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// crashImage is a three-layer image of ~15 MB in ~1100 entries (files,
// dirs, symlinks, hard links, whiteouts, an opaque dir), and the tree it
// unpacks to.
func crashImage(t testing.TB) (v1.Image, map[string]fileState) {
	src := rand.NewChaCha8([32]byte{1, 2})
	r := rand.New(src)
	want := map[string]fileState{}
	body := func(n int) string {
		b := make([]byte, n)
		src.Read(b)
		return string(b)
	}
	d := fileState{Kind: "dir", Mode: 0o755}
	var l1, l2, l3 []entry
	for i := range 20 {
		name := fmt.Sprintf("d%02d", i)
		l1 = append(l1, mkdir(name+"/"))
		want[name] = d
		for j := range 20 {
			fn := fmt.Sprintf("%s/f%03d", name, j)
			b := body(8<<10 + r.IntN(64<<10))
			l1 = append(l1, entry{Name: fn, Type: tar.TypeReg, Body: b, Mode: 0o644})
			want[fn] = fileState{Kind: "file", Data: sha(b), Mode: 0o644}
		}
		l1 = append(l1, symlink(name+"/link", "f000"), hardlink(name+"/hard", name+"/f001"))
		want[name+"/link"] = fileState{Kind: "symlink", Data: "f000"}
		want[name+"/hard"] = want[name+"/f001"]
	}
	l1 = append(l1, mkdir("opaque/"), file("opaque/old", "old"))
	want["opaque"] = d
	for i := range 600 {
		fn := fmt.Sprintf("small/s%02d/%04d", i%30, i)
		if i < 30 {
			l2 = append(l2, mkdir(fmt.Sprintf("small/s%02d/", i)))
			want[fmt.Sprintf("small/s%02d", i)] = d
		}
		b := body(512 + r.IntN(3<<10))
		l2 = append(l2, entry{Name: fn, Type: tar.TypeReg, Body: b, Mode: 0o600})
		want[fn] = fileState{Kind: "file", Data: sha(b), Mode: 0o600}
	}
	l2 = append([]entry{mkdir("small/")}, l2...)
	want["small"] = d
	for i := range 10 {
		fn := fmt.Sprintf("d%02d/f%03d", i, 5)
		l2 = append(l2, file(fmt.Sprintf("d%02d/.wh.f%03d", i, 5), ""))
		delete(want, fn)
	}
	l2 = append(l2, file("opaque/.wh..wh..opq", ""), file("opaque/new", "new"))
	want["opaque/new"] = fileState{Kind: "file", Data: sha("new"), Mode: 0o644}
	for i := range 20 {
		fn := fmt.Sprintf("d%02d/f%03d", i, 10)
		b := body(4 << 10)
		l3 = append(l3, entry{Name: fn, Type: tar.TypeReg, Body: b, Mode: 0o755})
		want[fn] = fileState{Kind: "file", Data: sha(b), Mode: 0o755}
	}
	return image(t, v1.Platform{}, layer(t, l1...), layer(t, l2...), layer(t, l3...)), want
}

// TestCrashMidPull kills a child process pulling an image at random moments
// — half of them while it is unpacking — and checks that the store it
// leaves, once reopened, either does not have the image or has all of it,
// verified against the source; and that a pull then completes.
func TestCrashMidPull(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes for a while")
	}
	reg := newRegistry(t)
	img, want := crashImage(t)
	ref := reg.ref("crash:1")
	reg.push(t, ref, img)
	digest := digestOf(t, img)
	base := t.TempDir()

	var wholeOut *strings.Builder
	child := func(dir string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir+"|"+ref)
		var out strings.Builder
		if wholeOut == nil {
			wholeOut = &out
		}
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() && out.Len() > 0 {
				t.Logf("child output (%s):\n%s", dir, out.String())
			}
		})
		return cmd
	}
	check := func(dir string, s *Store, got *Image) {
		t.Helper()
		if got.Digest != digest {
			t.Errorf("%s: digest %s, want %s", dir, got.Digest, digest)
		}
		if diff := diffTrees(snapshot(t, got.Rootfs), want); diff != "" {
			t.Errorf("%s: the image is not what was pushed:\n%.2000s", dir, diff)
		}
	}

	// One whole pull, to time it.
	dir0 := filepath.Join(base, "whole")
	start := time.Now()
	if err := child(dir0).Wait(); err != nil {
		t.Fatalf("child pull: %v", err)
	}
	whole := time.Since(start)
	if testing.Verbose() {
		t.Logf("whole pull: %s", wholeOut.String())
	}
	s := openStore(t, dir0)
	got, err := s.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	check(dir0, s, got)
	s.Close()
	t.Logf("a whole pull in a child process takes %v", whole.Round(time.Millisecond))

	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	const rounds = 10
	var notPulled, complete, midUnpack int
	for i := range rounds {
		dir := filepath.Join(base, fmt.Sprint(i))
		cmd := child(dir)
		unpacking := i%2 == 0
		var delay time.Duration
		if unpacking {
			// Wait for the unpack to start, then kill within it.
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) && !hasTmpRootfs(dir) {
				time.Sleep(200 * time.Microsecond)
			}
			delay = time.Duration(r.Int64N(int64(whole / 2)))
		} else {
			delay = time.Duration(r.Int64N(int64(whole * 11 / 10)))
		}
		time.Sleep(delay)
		cmd.Process.Kill()
		cmd.Wait()
		if hasTmpRootfs(dir) {
			midUnpack++
		}

		s, err := Open(dir, WithKeychain(noCreds), WithLogger(testLogger(t)))
		if err != nil {
			t.Fatalf("round %d: reopen after the kill: %v", i, err)
		}
		if tmp, _, _ := leftovers(t, dir); len(tmp) > 0 {
			t.Errorf("round %d: Open left temp entries: %v", i, tmp)
		}
		got, err := s.Get(ref)
		switch {
		case isNotPulled(err):
			notPulled++
		case err != nil:
			t.Errorf("round %d: Get = %v", i, err)
		default:
			complete++
			check(dir, s, got)
		}
		// And a pull now finishes the job.
		got, err = s.Pull(ctx, ref, nil)
		if err != nil {
			t.Errorf("round %d: pull after the kill: %v", i, err)
		} else {
			check(dir, s, got)
		}
		s.Close()
	}
	t.Logf("%d kills: %d while unpacking; after reopening, %d not pulled, %d complete", rounds, midUnpack, notPulled, complete)
	if midUnpack == 0 {
		t.Errorf("no kill landed while unpacking")
	}
}

func hasTmpRootfs(dir string) bool {
	ents, _ := os.ReadDir(filepath.Join(dir, rootfsDir))
	for _, e := range ents {
		if strings.Contains(e.Name(), tmpMarker) {
			return true
		}
	}
	return false
}
