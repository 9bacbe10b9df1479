package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/outpost-edge/outpost/internal/errdefs"
)

// Binary is the daemon's own executable, installed beside outpost as the release
// archives and packages hold it: `outpost daemon` parses its flags, environment and
// config file, then replaces itself (exec, same process id) with this binary, which links
// only the daemon. The CLI's code and data (commands, hub, registry, TUI) then take no
// memory on the device. Without it (go install, go run, tests) `outpost daemon` runs the
// daemon in its own process.
const Binary = "outpost-daemon"

// ErrNoBinary is returned by Exec when no daemon binary is installed beside the running
// one: run the daemon in this process then.
var ErrNoBinary = errors.New("no " + Binary + " beside this binary")

// configFDFlag is the argument Exec passes the daemon binary: the file descriptor it
// reads its configuration from (JSON of execConfig), so that the device's key is in no
// process's arguments or environment.
const configFDFlag = "--config-fd"

// execConfig is what `outpost daemon` hands the daemon binary.
type execConfig struct {
	Config   Config
	LogLevel slog.Level
}

// lookBinary returns the daemon binary beside exe, or ErrNoBinary.
func lookBinary(exe string) (string, error) {
	if exe == "" {
		return "", ErrNoBinary
	}
	p := filepath.Join(filepath.Dir(exe), Binary)
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return "", ErrNoBinary
	}
	return p, nil
}

// SetRuntimeDefaults tunes the Go runtime for the daemon. Its heap is small and steady:
// collecting at 50% growth instead of Go's default 100% keeps it on small devices' budget
// (about 2 MB less RSS with 10 modules) for little CPU. GOGC in the environment still
// wins.
func SetRuntimeDefaults() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}

// NotifyReady tells systemd the daemon is ready (Type=notify), when NOTIFY_SOCKET names
// a socket; else it does nothing.
func NotifyReady() error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte("READY=1"))
	return err
}

// Main is the daemon binary's main (cmd/outpost-daemon): it reads the configuration
// `outpost daemon` handed it (see Exec), runs the daemon until SIGINT or SIGTERM and
// returns the exit code. Errors are printed as outpost prints them.
func Main() int {
	cfg, level, err := readExecConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n%s is started by `outpost daemon`, which reads the flags, environment and config file: run that\n", err, Binary)
		return errdefs.ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	SetRuntimeDefaults()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Ready = NotifyReady
	d, err := New(cfg)
	if err == nil {
		err = d.Run(ctx)
	}
	return Exit(os.Stderr, err)
}

// Exit prints err and what to do next on w and returns the exit code for it: the
// code outpost gives the same error (errdefs.ExitCode), as this binary does not link
// the CLI.
func Exit(w io.Writer, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(w, "Error: %v\n", err)
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		fmt.Fprintln(w, h.Hint())
	}
	if errors.Is(err, ErrConfig) {
		return errdefs.ExitUsage // as outpost daemon's own configuration errors
	}
	return errdefs.ExitCode(err)
}

// readExecConfig reads the configuration from the descriptor args name
// (--config-fd N).
func readExecConfig(args []string) (Config, slog.Level, error) {
	if len(args) != 2 || args[0] != configFDFlag {
		return Config{}, 0, fmt.Errorf("%s takes %s N, not %q", Binary, configFDFlag, args)
	}
	fd, err := strconv.Atoi(args[1])
	if err != nil || fd < 3 {
		return Config{}, 0, fmt.Errorf("%s %q: want a file descriptor number above 2", configFDFlag, args[1])
	}
	f := os.NewFile(uintptr(fd), "config")
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return Config{}, 0, fmt.Errorf("read the configuration from %s %d: %w", configFDFlag, fd, err)
	}
	var ec execConfig
	if err := json.Unmarshal(b, &ec); err != nil {
		return Config{}, 0, fmt.Errorf("the configuration from %s %d: %w", configFDFlag, fd, err)
	}
	return ec.Config, ec.LogLevel, nil
}
