package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

// A binary that links the runtime is the shim of its instances when no outpost-shim is
// installed beside it (see startShim).
func init() { shim.Hook() }

// local is the part the runc and process runtimes share: an instance is a directory
// stateDir/instances/<ContainerID> holding
//
//	instance.json  the spec and what the shim starts (written by Start)
//	state.json     shim and main process, start time (written by the shim once running)
//	exit.json      exit code and time (written by the shim once exited)
//	logs/          the instance's logs, unless Spec.LogDir puts them elsewhere
//
// so that a new Runtime over the same state dir finds everything (adopt after restart). One
// shim serves all the instances (see startShim); stateDir holds its socket, its log
// (shim.log) and the lock of both (shim.lock).
type local struct {
	kind      string
	stateDir  string
	instances string
	// prepare fills the launch for spec (and mounts what it needs under dir); note is
	// added to State.Description. undo releases what prepare made, for a failed Start
	// and for Remove.
	prepare func(dir, id string, spec Spec, l *shim.Launch) (note string, err error)
	undo    func(dir string, l shim.Launch) error
	// release, when set, frees what an exited instance no longer needs but keeps its
	// record, logs and exit state (runc: unmounts its rootfs). It is called by whoever sees
	// the instance exited first — its shim, or State, Wait, Stop, List — and must be
	// idempotent.
	release func(dir, id string) error
	// execProc returns how to run args in the running instance rec (Exec).
	execProc func(dir string, rec instanceRecord, args []string) (*execProc, error)
	// groupKill: SIGKILL the main process's whole process group (process runtime).
	groupKill bool
}

// instanceRecord is instance.json.
type instanceRecord struct {
	Kind    string      `json:"kind"`
	Name    string      `json:"name"`
	ID      string      `json:"id"`
	Created time.Time   `json:"created"`
	Note    string      `json:"note,omitempty"`
	Spec    Spec        `json:"spec"`
	Launch  shim.Launch `json:"launch"`
}

// runState is state.json (shim.RunState) as load read it.
type runState struct {
	shim.RunState
	mainAlive, shimAlive bool // seen by load, before it read exit.json
}

func readInstance(dir string) (instanceRecord, error) {
	var rec instanceRecord
	err := shim.ReadJSON(dir, "instance.json", &rec)
	return rec, err
}

func newLocal(kind, stateDir string) (*local, error) {
	if stateDir == "" {
		return nil, fmt.Errorf("%s runtime: no state dir", kind)
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	inst := filepath.Join(abs, "instances")
	if err := os.MkdirAll(inst, 0o700); err != nil {
		return nil, fmt.Errorf("%s runtime: %w", kind, err)
	}
	ents, _ := os.ReadDir(inst)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), removedPrefix) {
			_ = os.RemoveAll(filepath.Join(inst, e.Name())) // left by a Remove (see there)
		}
	}
	return &local{kind: kind, stateDir: abs, instances: inst}, nil
}

// removedPrefix starts the name of an instance's directory that Remove renamed aside to
// delete it. Instance directories are ContainerIDs: they start with "outpost-".
const removedPrefix = ".removed-"

func (r *local) Name() string   { return r.kind }
func (r *local) Isolated() bool { return r.kind != KindProcess }

func (r *local) dirOf(name string) string { return filepath.Join(r.instances, ContainerID(name)) }

func (r *local) Start(ctx context.Context, spec Spec) (err error) {
	if err := checkSpec(spec, true); err != nil {
		return err
	}
	id := ContainerID(spec.Name)
	dir := filepath.Join(r.instances, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("start %s: %w (remove it first)", spec.Name, ErrExists)
		}
		return fmt.Errorf("start %s: %w", spec.Name, err)
	}
	max, files := spec.logCaps()
	l := shim.Launch{LogDir: spec.LogDir, LogMax: max, LogFiles: files}
	prepared := false
	defer func() {
		if err != nil {
			if prepared && r.undo != nil {
				_ = r.undo(dir, l)
			}
			os.RemoveAll(dir)
			err = fmt.Errorf("start %s: %w", spec.Name, err)
		}
	}()
	if l.LogDir == "" {
		l.LogDir = filepath.Join(dir, "logs")
	}
	note, err := r.prepare(dir, id, spec, &l)
	prepared = true
	if err != nil {
		return err
	}
	rec := instanceRecord{Kind: r.kind, Name: spec.Name, ID: id, Created: time.Now().UTC(), Note: note, Spec: spec, Launch: l}
	if err := shim.WriteJSON(dir, "instance.json", rec); err != nil {
		return err
	}
	return r.startShim(ctx, dir, spec.Name)
}

// load reads what is known of the instance in dir.
func (r *local) load(name string) (instanceRecord, *runState, *shim.ExitState, error) {
	dir := r.dirOf(name)
	rec, err := readInstance(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return rec, nil, nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		return rec, nil, nil, err
	}
	if rec.Kind != r.kind {
		return rec, nil, nil, fmt.Errorf("%s: %w (it belongs to the %s runtime)", name, ErrNotFound, rec.Kind)
	}
	var rs runState
	var rsp *runState
	if err := shim.ReadJSON(dir, "state.json", &rs); err == nil {
		rsp = &rs
		// Liveness before exit.json: a shim seen gone has written it if it ever will.
		rs.mainAlive, rs.shimAlive = rs.Main.Alive(), rs.Shim.Alive()
	}
	var es shim.ExitState
	var esp *shim.ExitState
	if err := shim.ReadJSON(dir, "exit.json", &es); err == nil {
		esp = &es
	}
	return rec, rsp, esp, nil
}

func (r *local) state(rec instanceRecord, rs *runState, es *shim.ExitState) State {
	st := State{Name: rec.Name, Labels: rec.Spec.Labels, Status: StatusCreated, ExitCode: 0}
	var desc []string
	switch {
	case rs == nil:
		desc = append(desc, "not started")
	case es != nil:
		st.Status, st.StartedAt, st.FinishedAt, st.ExitCode = StatusExited, rs.StartedAt, es.FinishedAt, es.ExitCode
		desc = append(desc, es.Description)
	case rs.mainAlive:
		st.Status, st.Running, st.Pid, st.StartedAt = StatusRunning, true, rs.Main.Pid, rs.StartedAt
		if !rs.shimAlive {
			desc = append(desc, "its shim is gone: logs are no longer captured and the exit code will be unknown")
		}
	case rs.shimAlive:
		// exited; the shim is writing exit.json this very moment
		st.Status, st.Running, st.Pid, st.StartedAt = StatusRunning, true, rs.Main.Pid, rs.StartedAt
	default:
		st.Status, st.StartedAt, st.ExitCode = StatusExited, rs.StartedAt, ExitUnknown
		desc = append(desc, "exited, exit code unknown: its shim is gone (killed, or the machine restarted)")
	}
	if rec.Note != "" {
		desc = append(desc, rec.Note)
	}
	st.Description = strings.Join(desc, "; ")
	return st
}

func (r *local) State(ctx context.Context, name string) (State, error) {
	rec, rs, es, err := r.load(name)
	if err != nil {
		return State{}, err
	}
	return r.settle(rec, r.state(rec, rs, es)), nil
}

// settle releases what an instance seen exited no longer needs (see release) and returns
// st. A failure is left for the next look, or for Remove, to retry and report.
func (r *local) settle(rec instanceRecord, st State) State {
	if r.release != nil && st.Status == StatusExited {
		_ = r.release(r.dirOf(rec.Name), rec.ID)
	}
	return st
}

func (r *local) List(ctx context.Context) ([]State, error) {
	ents, err := os.ReadDir(r.instances)
	if err != nil {
		return nil, err
	}
	var out []State
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), removedPrefix) {
			continue
		}
		rec, err := readInstance(filepath.Join(r.instances, e.Name()))
		if err != nil || rec.Kind != r.kind {
			continue // a Start under way, or another runtime's
		}
		_, rs, es, err := r.load(rec.Name)
		if err != nil {
			continue
		}
		out = append(out, r.settle(rec, r.state(rec, rs, es)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (r *local) Wait(ctx context.Context, name string) (State, error) {
	look := 2 * time.Millisecond
	for {
		rec, rs, es, err := r.load(name)
		if err != nil {
			return State{}, err
		}
		st := r.state(rec, rs, es)
		if !st.Running {
			return r.settle(rec, st), nil
		}
		if rs.mainAlive || !rs.shimAlive {
			// Running (or its shim is gone): wait for the main process to end.
			if err := rs.Main.Wait(ctx); err != nil {
				return st, err
			}
			continue
		}
		// It has exited and the shim is recording it: exit.json comes within
		// milliseconds, and the shim may go on cleaning up (runc's state) for longer
		// than that. Look again after 2 ms, then less and less often (a process
		// instance's children may keep its shim reading their output for 2 s), until
		// then or until the shim is gone.
		wctx, cancel := context.WithTimeout(ctx, look)
		_ = rs.Shim.Wait(wctx)
		cancel()
		look = min(2*look, 100*time.Millisecond)
		if err := ctx.Err(); err != nil {
			return st, err
		}
	}
}

func (r *local) Stop(ctx context.Context, name string, grace time.Duration) error {
	rec, rs, es, err := r.load(name)
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	if rs == nil || !rs.Main.Alive() {
		r.settle(rec, r.state(rec, rs, es))
		return nil
	}
	if err := rs.Main.Signal(unix.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	gctx, cancel := context.WithTimeout(ctx, grace)
	_, err = r.Wait(gctx, name)
	cancel()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("stop %s: %w", name, ctx.Err())
	}
	return r.kill(ctx, name, rs)
}

// kill sends SIGKILL and waits (10 s at most) for the instance to be gone.
func (r *local) kill(ctx context.Context, name string, rs *runState) error {
	if rs.Main.Alive() {
		if r.groupKill {
			_ = unix.Kill(-rs.Main.Pid, unix.SIGKILL)
		}
		if err := rs.Main.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill %s: %w", name, err)
		}
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.Wait(kctx, name); err != nil {
		return fmt.Errorf("kill %s: still running after SIGKILL: %w", name, err)
	}
	return nil
}

func (r *local) Remove(ctx context.Context, name string) error {
	rec, rs, _, err := r.load(name)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if rs != nil {
		if err := r.kill(ctx, name, rs); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	dir := r.dirOf(name)
	if r.undo != nil {
		if err := r.undo(dir, rec.Launch); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	// The instance is gone once its directory is: renamed aside at once and deleted in
	// the background, so that the module's next instance need not wait for it. What a
	// daemon stopped meanwhile leaves, the next runtime over the state dir deletes.
	trash := filepath.Join(r.instances, removedPrefix+filepath.Base(dir)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	go os.RemoveAll(trash)
	return nil
}

func (r *local) Logs(ctx context.Context, name string, opts LogOptions) (io.ReadCloser, error) {
	rec, _, _, err := r.load(name)
	if err != nil {
		return nil, fmt.Errorf("logs %s: %w", name, err)
	}
	running := func() bool {
		rec, rs, es, err := r.load(name)
		return err == nil && r.state(rec, rs, es).Running
	}
	return readLogs(ctx, rec.Launch.LogDir, opts, running)
}

// execProc is a command Exec runs in an instance: what to start, and how to end it.
type execProc struct {
	path string
	argv []string
	env  []string
	dir  string
	sys  *syscall.SysProcAttr
	// kill ends the command and what it started. Once ctx has ended, Exec calls it every
	// 50 ms until the command has exited, with how long it has been trying.
	kill func(p *os.Process, trying time.Duration)
	// watch, when set, runs beside the command until gone is closed: once it has exited.
	watch func(p *os.Process, gone <-chan struct{})
	// done, when set, is called once the command has exited with code: it cleans up and
	// returns an error when the command could not be run at all.
	done func(code int) error
}

func (r *local) Exec(ctx context.Context, name string, args []string) (ExecResult, error) {
	if len(args) == 0 || args[0] == "" {
		return ExecResult{}, fmt.Errorf("exec %s: no command", name)
	}
	// running returns the instance's record, ErrNotFound or ErrNotRunning.
	running := func() (instanceRecord, error) {
		rec, rs, es, err := r.load(name)
		if err == nil && (rs == nil || es != nil || !rs.mainAlive) {
			err = fmt.Errorf("%s: %w", name, ErrNotRunning)
		}
		return rec, err
	}
	rec, err := running()
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec: %w", err)
	}
	p, err := r.execProc(r.dirOf(name), rec, args)
	if err == nil {
		var res ExecResult
		if res, err = runExec(ctx, p); err == nil {
			return res, nil
		}
	}
	if ctx.Err() != nil {
		return ExecResult{}, ctx.Err()
	}
	if _, rerr := running(); rerr != nil { // it exited (or went) meanwhile
		return ExecResult{}, fmt.Errorf("exec: %w", rerr)
	}
	return ExecResult{}, fmt.Errorf("exec %s: %w", name, err)
}

// runExec runs p with its stdout and stderr on one pipe, and returns its exit code and
// the end of its output. When ctx ends first it kills p and returns ctx's error.
func runExec(ctx context.Context, p *execProc) (ExecResult, error) {
	proc, pr, err := func() (*os.Process, *os.File, error) {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return nil, nil, err
		}
		defer devnull.Close()
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		defer pw.Close()
		proc, err := os.StartProcess(p.path, p.argv, &os.ProcAttr{Dir: p.dir, Env: p.env, Files: []*os.File{devnull, pw, pw}, Sys: p.sys})
		if err != nil {
			pr.Close()
			return nil, nil, fmt.Errorf("start %s: %w", p.argv[0], err)
		}
		return proc, pr, nil
	}()
	if err != nil {
		if p.done != nil {
			_ = p.done(ExitUnknown) // to clean up
		}
		return ExecResult{}, err
	}
	defer pr.Close()
	out := newTailBuffer(MaxExecOutput)
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(out, pr); close(copied) }()
	exited := make(chan *os.ProcessState, 1)
	gone := make(chan struct{})
	go func() { ps, _ := proc.Wait(); exited <- ps; close(gone) }()
	if p.watch != nil {
		go p.watch(proc, gone)
	}

	var ps *os.ProcessState
	select {
	case ps = <-exited:
	case <-ctx.Done():
		start := time.Now()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
	kill:
		for {
			p.kill(proc, time.Since(start))
			select {
			case <-exited:
				break kill
			case <-t.C:
			}
			if time.Since(start) > 10*time.Second {
				break kill // unkillable (stuck in the kernel): the Wait above reaps it some day
			}
		}
	}
	// What the command started may hold the pipe open: wait a little for it, not for its end.
	select {
	case <-copied:
	case <-time.After(time.Second):
		pr.Close()
		<-copied
	}
	code := ExitUnknown
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Exited():
				code = ws.ExitStatus()
			case ws.Signaled():
				code = 128 + int(ws.Signal())
			}
		}
	}
	if p.done != nil {
		err = p.done(code)
	}
	switch {
	case ctx.Err() != nil && ps == nil:
		return ExecResult{}, ctx.Err()
	case err != nil:
		return ExecResult{}, err
	case ps == nil:
		return ExecResult{}, fmt.Errorf("%s: wait failed", p.argv[0])
	}
	return ExecResult{ExitCode: code, Output: out.String()}, nil
}
