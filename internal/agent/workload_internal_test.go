package agent

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRemoveStaleSocket: a socket left by an earlier daemon is replaced;
// anything else at the socket's path is left as it is and named.
func TestRemoveStaleSocket(t *testing.T) {
	dir := t.TempDir()
	if err := removeStaleSocket(filepath.Join(dir, "none")); err != nil {
		t.Fatalf("nothing there: %v", err)
	}

	sock := filepath.Join(dir, "workload.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := removeStaleSocket(sock); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("the stale socket is still there: %v", err)
	}

	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir.sock")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{file: "a file", sub: "a directory"} {
		err := removeStaleSocket(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), kind) {
			t.Errorf("%s: got %v, want an error naming it as %s", path, err, kind)
		}
		if _, serr := os.Lstat(path); serr != nil {
			t.Errorf("%s was removed: %v", path, serr)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("file content changed: %q", b)
	}
}
