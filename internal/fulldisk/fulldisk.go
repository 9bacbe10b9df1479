// Package fulldisk gives tests a real small file system to run out of space on: a tmpfs
// mounted for the test (which needs root on Linux; other tests skip), and a way to fill it.
// It imports nothing of outpost.
package fulldisk

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size (as mount's size=, e.g. "1m") on a new temp dir and
// unmounts it when the test ends. It skips the test where that is not possible.
func Mount(t testing.TB, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root on Linux")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// Fill writes the file path until its file system is full, then gives back room bytes
// (a multiple of 4096). Removing path frees the space again.
func Fill(t testing.TB, path string, room int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(fi.Size()/4096*4096 - room); err != nil {
		t.Fatal(err)
	}
}
