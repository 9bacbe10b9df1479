package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// local is the part the runc and process runtimes share: an instance is a directory
// stateDir/instances/<ContainerID> holding
//
//	instance.json  the spec and what the shim starts (written by Start)
//	state.json     shim and main process, start time (written by the shim once running)
//	exit.json      exit code and time (written by the shim once exited)
//	shim.log       the shim's own errors
//	logs/          the instance's logs, unless Spec.LogDir puts them elsewhere
//
// so that a new Runtime over the same state dir finds everything (adopt after restart).
type local struct {
	kind      string
	stateDir  string
	instances string
	// prepare fills the launch for spec (and mounts what it needs under dir); note is
	// added to State.Description. undo releases what prepare made, for a failed Start
	// and for Remove.
	prepare func(dir, id string, spec Spec, l *launch) (note string, err error)
	undo    func(dir, id string) error
	// groupKill: SIGKILL the main process's whole process group (process runtime).
	groupKill bool
}

// instanceRecord is instance.json.
type instanceRecord struct {
	Kind    string    `json:"kind"`
	Name    string    `json:"name"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Note    string    `json:"note,omitempty"`
	Spec    Spec      `json:"spec"`
	Launch  launch    `json:"launch"`
}

func readInstance(dir string) (instanceRecord, error) {
	var rec instanceRecord
	err := readJSON(dir, "instance.json", &rec)
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
	return &local{kind: kind, stateDir: abs, instances: inst}, nil
}

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
	prepared := false
	defer func() {
		if err != nil {
			if prepared && r.undo != nil {
				_ = r.undo(dir, id)
			}
			os.RemoveAll(dir)
			err = fmt.Errorf("start %s: %w", spec.Name, err)
		}
	}()
	max, files := spec.logCaps()
	l := launch{LogDir: spec.LogDir, LogMax: max, LogFiles: files}
	if l.LogDir == "" {
		l.LogDir = filepath.Join(dir, "logs")
	}
	note, err := r.prepare(dir, id, spec, &l)
	prepared = true
	if err != nil {
		return err
	}
	rec := instanceRecord{Kind: r.kind, Name: spec.Name, ID: id, Created: time.Now().UTC(), Note: note, Spec: spec, Launch: l}
	if err := writeJSON(dir, "instance.json", rec); err != nil {
		return err
	}
	return startShim(ctx, dir)
}

// startShim starts the shim for the instance in dir and waits for its report.
func startShim(ctx context.Context, dir string) error {
	shimLog, err := os.OpenFile(filepath.Join(dir, "shim.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer shimLog.Close()
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer syncR.Close()
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe", // this very binary, even if replaced on disk meanwhile
		Args:        []string{"outpost-shim", shimArg, dir},
		Env:         append(os.Environ(), shimEnv+"="+dir),
		Stderr:      shimLog,
		ExtraFiles:  []*os.File{syncW},
		Dir:         "/",
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	syncW.Close()
	if err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reaps the shim whenever it ends

	replyc := make(chan shimReply, 1)
	go func() {
		var rep shimReply
		if err := json.NewDecoder(syncR).Decode(&rep); err != nil {
			rep.Error = "shim exited without a word (see " + filepath.Join(dir, "shim.log") + ")"
		}
		replyc <- rep
	}()
	select {
	case rep := <-replyc:
		if rep.Error != "" {
			<-exited
			return errors.New(rep.Error)
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		// The instance may have started meanwhile: it goes too (runc's by undo).
		var rs runState
		if readJSON(dir, "state.json", &rs) == nil && rs.Main.alive() {
			_ = unix.Kill(-rs.Main.Pid, unix.SIGKILL)
			_ = rs.Main.signal(unix.SIGKILL)
		}
		return ctx.Err()
	}
}

// load reads what is known of the instance in dir.
func (r *local) load(name string) (instanceRecord, *runState, *exitState, error) {
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
	if err := readJSON(dir, "state.json", &rs); err == nil {
		rsp = &rs
		// Liveness before exit.json: a shim seen gone has written it if it ever will.
		rs.mainAlive, rs.shimAlive = rs.Main.alive(), rs.Shim.alive()
	}
	var es exitState
	var esp *exitState
	if err := readJSON(dir, "exit.json", &es); err == nil {
		esp = &es
	}
	return rec, rsp, esp, nil
}

func (r *local) state(rec instanceRecord, rs *runState, es *exitState) State {
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
	return r.state(rec, rs, es), nil
}

func (r *local) List(ctx context.Context) ([]State, error) {
	ents, err := os.ReadDir(r.instances)
	if err != nil {
		return nil, err
	}
	var out []State
	for _, e := range ents {
		if !e.IsDir() {
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
		out = append(out, r.state(rec, rs, es))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (r *local) Wait(ctx context.Context, name string) (State, error) {
	for {
		rec, rs, es, err := r.load(name)
		if err != nil {
			return State{}, err
		}
		st := r.state(rec, rs, es)
		if !st.Running {
			return st, nil
		}
		// The shim writes exit.json, then exits: wait for it (or for the main process
		// when the shim is gone).
		ref := rs.Shim
		if !ref.alive() {
			ref = rs.Main
		}
		if err := ref.wait(ctx); err != nil {
			return st, err
		}
	}
}

func (r *local) Stop(ctx context.Context, name string, grace time.Duration) error {
	_, rs, _, err := r.load(name)
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	if rs == nil || !rs.Main.alive() {
		return nil
	}
	if err := rs.Main.signal(unix.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
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
	if rs.Main.alive() {
		if r.groupKill {
			_ = unix.Kill(-rs.Main.Pid, unix.SIGKILL)
		}
		if err := rs.Main.signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
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
		if err := r.undo(dir, rec.ID); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
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
