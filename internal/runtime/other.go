//go:build !linux

package runtime

import (
	"errors"
	"fmt"
	"os"
)

func isRoot() bool { return os.Geteuid() == 0 }

func lookRunc() (string, error) { return "", errors.New("runc runs on Linux only") }

func newRunc(string) (Runtime, error) {
	return nil, fmt.Errorf("runc runtime: Linux only: %w", ErrUnavailable)
}

func newProcess(string) (Runtime, error) {
	return nil, fmt.Errorf("process runtime: Linux only for now: %w", ErrUnavailable)
}
