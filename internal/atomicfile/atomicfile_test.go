package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for i, data := range []string{`{"a":1}`, `{"a":22}`} {
		if err := WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != data {
			t.Fatalf("write %d: read back %q, %v; want %q", i, b, err, data)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	// The mode asked for is the mode given, whatever the umask.
	if err := WriteFile(path, []byte("x"), 0o644, NoSync()); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v after rewrite with 0644", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only the file: %v", len(ents), ents)
	}
}

func TestWriteFileFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename: the write fails after the temp file is
	// written, and must leave neither the temp file nor a changed target.
	target := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(target, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, []byte("new"), 0o600); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if IsTemp(e.Name()) {
			t.Fatalf("temp file %s left after a failed write", e.Name())
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("other file changed: %q", b)
	}
}

func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{".REVISION.tmp-123": true, "REVISION": false, "a.tmp-1": false, ".hidden": false} {
		if IsTemp(name) != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, !want, want)
		}
	}
}

func TestCreateCommitOrDrop(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "blob")
	f, err := Create(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("half"))
	if err := f.Close(); err != nil { // dropped: nothing in place, no temp left
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a dropped write left %v", ents)
	}
	f, err = Create(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("whole"))
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the file is in place before Commit")
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "whole" {
		t.Fatalf("after Commit: %q %v", b, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close after Commit: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "whole" {
		t.Fatal("Close after Commit removed the file")
	}
}
