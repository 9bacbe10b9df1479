//go:build windows

package store

import (
	"io"
	"os"
	"path/filepath"
)

// readFileAt reads the file name of the directory dirPath (open as dir) into buf[:0],
// growing it as needed.
func readFileAt(_ *os.File, dirPath, name string, buf []byte) ([]byte, error) {
	f, err := os.Open(filepath.Join(dirPath, name))
	if err != nil {
		return buf, err
	}
	defer f.Close()
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
