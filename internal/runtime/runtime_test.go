package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

func TestContainerID(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"tempsensor", "$edgeAgent", "a_b", "a_5fb", "a:b", "a.b-c", "(x),=@$'#*?!%+",
		strings.Repeat("x", 128), strings.Repeat("x", 127) + "y", strings.Repeat("$", 128)} {
		id := ContainerID(name)
		if other, ok := seen[id]; ok {
			t.Errorf("%q and %q both map to %q", name, other, id)
		}
		seen[id] = name
		if len(id) > 100 || !strings.HasPrefix(id, "outpost-") {
			t.Errorf("ContainerID(%q) = %q", name, id)
		}
		for _, c := range id {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.-", c)) {
				t.Errorf("ContainerID(%q) = %q holds %q", name, id, c)
			}
		}
	}
	if got := ContainerID("$edgeAgent"); got != "outpost-_24edgeAgent" {
		t.Errorf("ContainerID($edgeAgent) = %q", got)
	}
}

func TestParseBind(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bind
		err  bool
	}{
		{in: "/a:/b", want: bind{Src: "/a", Dst: "/b"}},
		{in: "/a:/b:ro", want: bind{Src: "/a", Dst: "/b", ReadOnly: true}},
		{in: "/a:/b:rw,z,rslave", want: bind{Src: "/a", Dst: "/b", Options: []string{"rslave"}}},
		{in: "vol:/b", err: true},
		{in: "/a", err: true},
		{in: "/a:/b:bogus", err: true},
		{in: "/a:b", err: true},
	} {
		got, err := parseBind(c.in)
		if (err != nil) != c.err || (err == nil && fmt.Sprint(got) != fmt.Sprint(c.want)) {
			t.Errorf("parseBind(%q) = %+v, %v", c.in, got, err)
		}
	}
}

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001:App:/home/app:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\napp:x:1001:\nvideo:x:44:app,other\naudio:x:29:other\n"), 0o644)
	for _, c := range []struct {
		spec string
		want string
		err  bool
	}{
		{"", "0:0 [] /root", false},
		{"app", "1000:1001 [44] /home/app", false},
		{"1000", "1000:1001 [44] /home/app", false},
		{"1000:29", "1000:29 [44] /home/app", false},
		{"app:audio", "1000:29 [44] /home/app", false},
		{"5000", "5000:0 [] /", false},
		{"5000:5000", "5000:5000 [] /", false},
		{"nobody", "", true},
		{"app:nogroup", "", true},
	} {
		u, err := resolveUser(root, c.spec)
		got := fmt.Sprintf("%d:%d %v %s", u.UID, u.GID, u.Groups, u.Home)
		if (err != nil) != c.err || (err == nil && got != c.want) {
			t.Errorf("resolveUser(%q) = %s, %v; want %s", c.spec, got, err, c.want)
		}
	}
}

func TestInRoot(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	os.Symlink("/etc/passwd", filepath.Join(root, "abs"))
	os.Symlink("../../../../../../etc", filepath.Join(root, "usr/up"))
	for in, want := range map[string]string{
		"/bin/x":         "/usr/bin/x",
		"bin/../bin/x":   "/usr/bin/x",
		"/abs":           "/etc/passwd",
		"/usr/up/shadow": "/etc/shadow",
		"/../../x":       "/x",
	} {
		got, err := inRoot(root, in)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("inRoot(%q) = %q, %v; want %q", in, got, err, filepath.Join(root, want))
		}
	}
	os.Symlink("loop", filepath.Join(root, "loop"))
	if _, err := inRoot(root, "/loop/x"); err == nil {
		t.Error("a symlink loop resolved")
	}
}

// TestLogRotation: the writer keeps at most files × max bytes; a reader following across
// rotations misses no line.
func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	const max = 16 << 10
	w, err := shim.OpenLogWriter(dir, max, 3)
	if err != nil {
		t.Fatal(err)
	}
	running := make(chan struct{})
	isRunning := func() bool {
		select {
		case <-running:
			return false
		default:
			return true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := readLogs(ctx, dir, LogOptions{Follow: true}, isRunning)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	got := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		got <- lines
	}()
	for i := 1; i <= n; i++ {
		if err := w.Record(time.Now(), "stdout", false, fmt.Appendf(nil, "line %d", i)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			time.Sleep(40 * time.Millisecond) // not so fast that the cap drops lines not yet followed
		}
	}
	w.Close()
	close(running)
	lines := <-got
	files := logFiles(dir)
	if len(files) != 3 {
		t.Errorf("files = %v, want 3", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() > max {
			t.Errorf("%s: %v, %v bytes", f, err, fi.Size())
		}
	}
	// The follower started on an empty log: every line, in order.
	if len(lines) != n || lines[0] != "line 1" || lines[n-1] != fmt.Sprintf("line %d", n) {
		t.Fatalf("followed %d lines (first %q), want %d", len(lines), lines[:min(3, len(lines))], n)
	}
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", i+1) {
			t.Fatalf("line %d = %q", i+1, l)
		}
	}
	// Reading now: only what the files keep, ending with the last line; Tail across files.
	rc, _ = readLogs(ctx, dir, LogOptions{Tail: 150}, isRunning)
	b, _ := io.ReadAll(rc)
	tail := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(tail) != 150 || tail[149] != fmt.Sprintf("line %d", n) || tail[0] != fmt.Sprintf("line %d", n-149) {
		t.Errorf("tail 150: %d lines, %q … %q", len(tail), tail[0], tail[len(tail)-1])
	}
}

// TestLogLongLines: a line longer than a record is split into P records and read back whole.
func TestLogLongLines(t *testing.T) {
	dir := t.TempDir()
	w, err := shim.OpenLogWriter(dir, 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 3*shim.MaxLogChunk+5)
	w.CopyLines(strings.NewReader("short\n"+long+"\nno newline at the end"), "stderr")
	w.Close()
	rc, _ := readLogs(context.Background(), dir, LogOptions{}, func() bool { return false })
	b, _ := io.ReadAll(rc)
	if want := "short\n" + long + "\nno newline at the end\n"; string(b) != want {
		t.Errorf("read back %d bytes, want %d", len(b), len(want))
	}
	raw, _ := os.ReadFile(filepath.Join(dir, shim.LogName))
	if strings.Count(string(raw), " stderr P ") != 3 {
		t.Errorf("want 3 partial records:\n%.300s", raw)
	}
}

func TestNewUnknownKind(t *testing.T) {
	if _, err := New("kvm", t.TempDir()); err == nil || !strings.Contains(err.Error(), "auto, runc, docker or process") {
		t.Errorf("New(kvm) = %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	tb := newTailBuffer(8)
	for _, s := range []string{"ab", "cdef", "gh"} {
		tb.Write([]byte(s))
	}
	if got := tb.String(); got != "abcdefgh" {
		t.Errorf("full = %q", got)
	}
	tb.Write([]byte("ij"))
	if got := tb.String(); got != "cdefghij" {
		t.Errorf("after 2 more = %q", got)
	}
	tb.Write([]byte("0123456789"))
	if got := tb.String(); got != "23456789" {
		t.Errorf("after a long write = %q", got)
	}
	tb.Write([]byte("é€")) // 2 + 3 bytes: the cut leaves half a rune in front, dropped
	if got := tb.String(); got != "789é€" {
		t.Errorf("after runes = %q", got)
	}
	tb = newTailBuffer(4)
	tb.Write([]byte("a€")) // 4 bytes: fits
	if got := tb.String(); got != "a€" {
		t.Errorf("exactly full = %q", got)
	}
	tb.Write([]byte("€")) // keeps "\xac€": the half rune goes
	if got := tb.String(); got != "€" {
		t.Errorf("cut rune = %q", got)
	}
}
