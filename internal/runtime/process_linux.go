package runtime

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

// newProcess returns the process runtime: each instance is the entrypoint from the unpacked
// rootfs run as a plain host process — no isolation at all: it sees the host's files,
// network and processes. Its working directory is Rootfs+WorkingDir; binds are not applied
// (there is nothing to mount into); the workload socket is reached through
// IOTEDGE_WORKLOADURI=unix://<host path>. As root it switches to Spec.User; otherwise it runs
// as the daemon's user and says so in State.Description.
func newProcess(stateDir string) (Runtime, error) {
	r, err := newLocal(KindProcess, stateDir)
	if err != nil {
		return nil, err
	}
	r.groupKill = true
	r.prepare = prepareProcess
	r.execProc = execProcess
	return r, nil
}

func prepareProcess(dir, id string, spec Spec, l *shim.Launch) (string, error) {
	notes := []string{"not isolated: a host process (process runtime)"}
	u, err := resolveUser(spec.Rootfs, spec.User)
	if err != nil {
		return "", err
	}
	switch {
	case isRoot():
		l.SetCred = u.UID != 0 || u.GID != 0 || len(u.Groups) > 0
		l.UID, l.GID, l.Groups = u.UID, u.GID, u.Groups
	case spec.User != "" && int(u.UID) != os.Geteuid():
		notes = append(notes, fmt.Sprintf("user %q ignored: the daemon is not root, so it runs as uid %d", spec.User, os.Geteuid()))
	}
	if len(spec.Binds) > 0 {
		notes = append(notes, "binds not applied: "+strings.Join(spec.Binds, " "))
	}
	env := completeEnv(spec.Env, u.Home)
	if spec.WorkloadSocket != "" {
		uri := "unix://" + spec.WorkloadSocket
		env = envSet(env, "IOTEDGE_WORKLOADURI", uri)
		if _, ok := envGet(env, "OUTPOST_WORKLOADURI"); ok {
			env = envSet(env, "OUTPOST_WORKLOADURI", uri)
		}
	}
	wd := spec.WorkingDir
	if wd == "" {
		wd = "/"
	}
	hostDir, err := inRoot(spec.Rootfs, wd)
	if err != nil {
		return "", fmt.Errorf("working dir %s: %w", wd, err)
	}
	if fi, err := os.Stat(hostDir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("working dir %s: not a directory in the rootfs %s", wd, spec.Rootfs)
	}
	prog, err := lookProgram(spec, env, spec.Args[0])
	if err != nil {
		return "", err
	}
	l.Path, l.Args, l.Env, l.Dir = prog, spec.Args, env, hostDir
	return strings.Join(notes, "; "), nil
}

// lookProgram returns the host path of the program name in spec's rootfs, looked up as the
// instance's entrypoint is: on env's PATH, relative to its working dir.
func lookProgram(spec Spec, env []string, name string) (string, error) {
	wd := spec.WorkingDir
	if wd == "" {
		wd = "/"
	}
	pathEnv, _ := envGet(env, "PATH")
	return lookPathIn(spec.Rootfs, wd, name, pathEnv)
}

// execProcess runs args as the instance rec was started (see prepareProcess and the shim):
// the program from its rootfs, with its environment, working dir and user, in a process
// group of its own, which a kill ends whole.
func execProcess(dir string, rec instanceRecord, args []string) (*execProc, error) {
	l := rec.Launch
	prog, err := lookProgram(rec.Spec, l.Env, args[0])
	if err != nil {
		return nil, err
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if l.SetCred {
		attr.Credential = &syscall.Credential{Uid: l.UID, Gid: l.GID, Groups: l.Groups}
	}
	kill := func(p *os.Process, _ time.Duration) {
		_ = unix.Kill(-p.Pid, unix.SIGKILL)
		_ = p.Kill()
	}
	return &execProc{path: prog, argv: args, env: l.Env, dir: l.Dir, sys: attr, kill: kill}, nil
}
