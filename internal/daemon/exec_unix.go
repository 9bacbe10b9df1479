//go:build unix

package daemon

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxExecConfig bounds the configuration Exec writes into a pipe before anyone reads
// it: the smallest pipe buffer of the systems it runs on (16 KiB), far above a real
// configuration (about 1 KiB).
const maxExecConfig = 16 << 10

// Exec replaces this process with the daemon binary installed beside it (see Binary),
// handing it cfg (whose Logger, Ready, Now and listeners it sets itself: a logger on
// stderr at level, systemd's readiness notification) through a pipe. It returns only on
// an error: ErrNoBinary when there is no daemon binary, so that the caller runs the
// daemon itself.
func Exec(cfg Config, level slog.Level) error {
	exe, _ := os.Executable()
	path, err := lookBinary(exe)
	if err != nil {
		return err
	}
	b, err := json.Marshal(execConfig{Config: cfg, LogLevel: level})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if len(b) > maxExecConfig {
		return fmt.Errorf("daemon: the configuration is %d bytes, more than the %d a pipe to %s holds", len(b), maxExecConfig, Binary)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer r.Close()
	_, err = w.Write(b)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("daemon: write the configuration for %s: %w", Binary, err)
	}
	// Go opens every descriptor close-on-exec; the daemon binary reads this one.
	fd := r.Fd()
	if _, err := unix.FcntlInt(fd, unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	err = syscall.Exec(path, []string{path, configFDFlag, strconv.Itoa(int(fd))}, os.Environ())
	runtime.KeepAlive(r)
	return fmt.Errorf("daemon: exec %s: %w", path, err)
}
