//go:build linux

package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// Hook turns a process re-executed by the runtime (Env set, argv as Main wants it) into a
// shim before main runs: the package init of internal/runtime calls it, so that a binary
// linking the runtime (outpost, a test binary) is its own shim when no outpost-shim is
// installed beside it.
func Hook() {
	if dir := os.Getenv(Env); dir != "" && len(os.Args) == 3 && os.Args[1] == Arg && os.Args[2] == dir {
		os.Unsetenv(Env)
		os.Exit(Run(dir))
	}
}

// Main is cmd/outpost-shim's main: argv [name, Arg, state dir].
func Main() int {
	if len(os.Args) != 3 || os.Args[1] != Arg || os.Args[2] == "" {
		fmt.Fprintf(os.Stderr, "%s: the runtime shim of outpost's runc and process runtimes; outpost daemon starts it, not people\n", Binary)
		return 2
	}
	return Run(os.Args[2])
}

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

// Run is the shim of the instance in dir: it returns the shim's exit code.
func Run(dir string) int {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	syncf := os.NewFile(3, "sync")
	replied := false
	reply := func(r Reply) {
		if !replied {
			replied = true
			_ = json.NewEncoder(syncf).Encode(r)
			syncf.Close()
		}
	}
	fail := func(format string, args ...any) int {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintln(os.Stderr, "shim:", msg)
		reply(Reply{Error: msg})
		return 1
	}
	var rec Instance
	if err := ReadJSON(dir, "instance.json", &rec); err != nil {
		return fail("%v", err)
	}
	l := rec.Launch
	lw, err := OpenLogWriter(l.LogDir, l.LogMax, l.LogFiles)
	if err != nil {
		return fail("logs: %v", err)
	}
	defer lw.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail("%v", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	files := []*os.File{devnull, outW, errW}

	var mainPid int
	switch rec.Kind {
	case KindProcess:
		attr := &syscall.SysProcAttr{Setpgid: true}
		if l.SetCred {
			attr.Credential = &syscall.Credential{Uid: l.UID, Gid: l.GID, Groups: l.Groups}
		}
		p, err := os.StartProcess(l.Path, l.Args, &os.ProcAttr{Dir: l.Dir, Env: l.Env, Files: files, Sys: attr})
		if err != nil {
			return fail("start %s: %v", l.Args[0], err)
		}
		mainPid = p.Pid
	case KindRunc:
		// As a child subreaper, the container's init becomes our child once runc exits.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fail("prctl: %v", err)
		}
		pidFile := filepath.Join(dir, "container.pid")
		runcLog := filepath.Join(dir, "runc.log")
		args := []string{l.Runc, "--root", l.RuncRoot, "--log", runcLog, "--log-format", "json",
			"run", "--detach", "--pid-file", pidFile, "--bundle", l.Bundle, l.ID}
		p, err := os.StartProcess(l.Runc, args, &os.ProcAttr{Files: files, Env: os.Environ()})
		if err != nil {
			return fail("start runc: %v", err)
		}
		st, err := p.Wait()
		if err != nil {
			return fail("runc: %v", err)
		}
		if !st.Success() {
			return fail("runc run: %s", RuncError(runcLog, st.String()))
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return fail("runc run: %v", err)
		}
		if mainPid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return fail("runc run: pid file: %v", err)
		}
	default:
		return fail("unknown kind %q", rec.Kind)
	}
	started := time.Now()
	outW.Close()
	errW.Close()
	devnull.Close()
	rs := RunState{Shim: RefOf(os.Getpid()), Main: RefOf(mainPid), StartedAt: started}
	if err := WriteJSON(dir, "state.json", rs); err != nil {
		// The instance runs: say so, and record what we can later.
		fmt.Fprintln(os.Stderr, "shim: state.json:", err)
	}
	reply(Reply{Pid: mainPid})

	var copying sync.WaitGroup
	copying.Go(func() { lw.CopyLines(outR, "stdout") })
	copying.Go(func() { lw.CopyLines(errR, "stderr") })

	var ws unix.WaitStatus
	for {
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			// ECHILD: not our child (cannot happen) — wait for it to go another way.
			_ = rs.Main.PollWait(context.Background())
			ws = unix.WaitStatus(0xff00) // exited 255: unknown
			break
		}
		if pid == mainPid {
			break
		}
		// another orphan reparented to us (runc's helpers): reaped, go on
	}
	finished := time.Now()
	// The pipes end when the last writer is gone; a process instance's own children may
	// hold them longer: do not wait for those.
	drained := make(chan struct{})
	go func() { copying.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
	}
	if rec.Kind == KindRunc {
		// The rootfs is of no more use (a new instance gets a new one): unmount it now
		// rather than at Remove, before exit.json says the instance has exited.
		if err := UnmountRootfs(dir); err != nil {
			fmt.Fprintln(os.Stderr, "shim:", err)
		}
	}
	es := ExitState{FinishedAt: finished}
	switch {
	case ws.Exited():
		es.ExitCode = ws.ExitStatus()
		es.Description = fmt.Sprintf("exited with code %d", es.ExitCode)
	case ws.Signaled():
		sig := ws.Signal()
		es.ExitCode = 128 + int(sig)
		es.Signal = unix.SignalName(sig)
		es.Description = fmt.Sprintf("killed by %s (exit code %d)", es.Signal, es.ExitCode)
	default:
		es.ExitCode = ExitUnknown
		es.Description = "exited, status unknown"
	}
	if err := WriteJSON(dir, "exit.json", es); err != nil {
		fmt.Fprintln(os.Stderr, "shim: exit.json:", err)
		return 1
	}
	if rec.Kind == KindRunc {
		// runc keeps a container's state (and cgroup) until it is deleted. The daemon
		// sees the exit in exit.json and goes on meanwhile: the next instance has a
		// runc id of its own, and the daemon deletes the state only once this shim is
		// gone (see the runtime's undo).
		args := []string{l.Runc, "--root", l.RuncRoot, "delete", "--force", l.ID}
		p, err := os.StartProcess(l.Runc, args, &os.ProcAttr{Dir: "/", Files: []*os.File{nil, os.Stderr, os.Stderr}})
		if err != nil {
			fmt.Fprintln(os.Stderr, "shim: runc delete:", err)
			return 1
		}
		if st, err := p.Wait(); err != nil || !st.Success() {
			fmt.Fprintln(os.Stderr, "shim: runc delete:", err, st)
			return 1
		}
	}
	return 0
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
