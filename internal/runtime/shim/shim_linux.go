//go:build linux

package shim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// Instance is the part of instance.json the shim reads.
type Instance struct {
	Kind   string `json:"kind"`
	Launch Launch `json:"launch"`
}

// Launch is what the shim starts, decided by the daemon and kept in instance.json.
type Launch struct {
	// process runtime
	Path    string   `json:"path,omitempty"` // host path of the program
	Args    []string `json:"args,omitempty"`
	Env     []string `json:"env,omitempty"`
	Dir     string   `json:"dir,omitempty"`
	SetCred bool     `json:"setCred,omitempty"`
	UID     uint32   `json:"uid,omitempty"`
	GID     uint32   `json:"gid,omitempty"`
	Groups  []uint32 `json:"groups,omitempty"`
	// runc runtime
	Runc     string `json:"runc,omitempty"`
	RuncRoot string `json:"runcRoot,omitempty"`
	Bundle   string `json:"bundle,omitempty"`
	ID       string `json:"id,omitempty"`
	// both
	LogDir   string `json:"logDir"`
	LogMax   int64  `json:"logMax"`
	LogFiles int    `json:"logFiles"`
}

// Reply is what the shim writes on fd 3 once the instance runs or could not start.
type Reply struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// RunState is state.json, written by the shim once the instance runs.
type RunState struct {
	Shim      ProcRef   `json:"shim"`
	Main      ProcRef   `json:"main"` // the instance's main process (the container's init)
	StartedAt time.Time `json:"startedAt"`
}

// ExitState is exit.json, written by the shim once the instance has exited.
type ExitState struct {
	ExitCode    int       `json:"exitCode"`
	Signal      string    `json:"signal,omitempty"`
	FinishedAt  time.Time `json:"finishedAt"`
	Description string    `json:"description"`
}

// RuncError returns the last error runc logged (its --log in JSON), or fallback.
func RuncError(logFile, fallback string) string {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return fallback
	}
	msg := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msg = e.Msg
		}
	}
	if msg == "" {
		return fallback
	}
	return msg
}

// WriteJSON writes v to dir/name atomically: a temp file, then rename. No fsync: these
// records describe processes, which a power loss ends anyway (and the boot id tells), and
// four fsyncs would double the start time of a short-lived instance. A record torn by a
// crash reads as absent.
func WriteJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o600, atomicfile.NoSync())
}

// ReadJSON reads dir/name into v.
func ReadJSON(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

// UnmountRootfs unmounts what the runc runtime mounted for the instance in dir: its rootfs
// overlay, and the tmpfs of the upper layer if there is one. What is not mounted (any
// more) is fine. The shim calls it once the instance has exited, the daemon when it sees
// the instance exited first, and Remove: an exited instance holds no mount.
func UnmountRootfs(dir string) error {
	for _, m := range []string{filepath.Join(dir, "bundle", "rootfs"), filepath.Join(dir, "layer")} {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return nil
}
