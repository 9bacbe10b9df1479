//go:build unix

package store

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// readFileAt reads the file name of the directory dirPath, open as dir, into buf[:0],
// growing it as needed. It uses plain system calls: os.Open would also try to register
// each file with the netpoller, which makes loading 100k records markedly slower. It
// opens name relative to dir, which spares the kernel a walk of dirPath for each file:
// a fifth of the time of opening 130,000 records one after the other.
func readFileAt(dir *os.File, dirPath, name string, buf []byte) ([]byte, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return buf, &os.PathError{Op: "open", Path: filepath.Join(dirPath, name), Err: err}
	}
	defer unix.Close(fd)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf, &os.PathError{Op: "read", Path: filepath.Join(dirPath, name), Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
