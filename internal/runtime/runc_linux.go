package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

// newRunc returns the runc runtime. Each instance is an OCI bundle in its state dir:
//
//   - root: an overlay of the shared image rootfs (read-only lower layer, never written)
//     with an upper layer of the instance's own, so the instance may write to its root as
//     under docker, and what it writes goes when it is removed. The overlay is unmounted
//     as soon as the instance has exited (a new instance gets a new one): its record, logs
//     and exit state stay until Remove, no mount does;
//   - namespaces: pid, mount, ipc, uts; no network namespace: the host's network, as
//     `docker run --network host` (DESIGN: host network by default);
//   - mounts: docker's standard set (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys and
//     /sys/fs/cgroup read-only), the host's /etc/resolv.conf and /etc/hosts read-only, the
//     binds, and the workload socket at /var/run/iotedge/workload.sock;
//   - process: Args, Env (+ PATH, HOME), WorkingDir, User resolved in the rootfs, docker's
//     default capabilities; cgroup /outpost/<runc id>, no resource limits.
//
// runc's own state lives in stateDir/runc (its --root), apart from any other runc user.
func newRunc(stateDir string) (Runtime, error) {
	bin, err := lookRunc()
	if err != nil {
		return nil, fmt.Errorf("runc runtime: runc not found (install it: apt-get install runc): %w", ErrUnavailable)
	}
	if !isRoot() {
		return nil, fmt.Errorf("runc runtime: needs root (rootless runc is not supported yet); use --runtime process or docker: %w", ErrUnavailable)
	}
	r, err := newLocal(KindRunc, stateDir)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(r.stateDir, "runc")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	rc := &runcRuntime{bin: bin, root: root}
	rc.sweep(r.instances)
	r.prepare = rc.prepare
	r.undo = rc.undo
	r.release = func(dir, _ string) error { return shim.UnmountRootfs(dir) }
	r.execProc = execRunc
	return r, nil
}

func lookRunc() (string, error) { return exec.LookPath("runc") }

func isRoot() bool { return os.Geteuid() == 0 }

type runcRuntime struct {
	bin  string // runc's path
	root string // runc --root
}

func (rc *runcRuntime) prepare(dir, id string, spec Spec, l *shim.Launch) (string, error) {
	// runc's id (and cgroup) is the instance's own: the state runc keeps for a container
	// that has exited, which the shim deletes once it has recorded the exit, need not be
	// gone before the module's next instance starts.
	cid := id + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	u, err := resolveUser(spec.Rootfs, spec.User)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(spec.Rootfs)
	if err != nil || !fi.IsDir() {
		return "", fmt.Errorf("rootfs %s: not a directory", spec.Rootfs)
	}
	bundle := filepath.Join(dir, "bundle")
	merged := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(merged, 0o755); err != nil {
		return "", err
	}
	if err := mountOverlay(dir, spec.Rootfs, merged); err != nil {
		return "", err
	}
	cfg, err := ociConfig(spec, u, cid)
	if err != nil {
		return "", err
	}
	if err := shim.WriteJSON(bundle, "config.json", cfg); err != nil {
		return "", err
	}
	l.Runc, l.RuncRoot, l.Bundle, l.ID = rc.bin, rc.root, bundle, cid
	return "", nil
}

// mountOverlay mounts lower (read-only) with an upper layer in dir at merged. When the
// state dir's file system cannot hold an upper layer (overlayfs itself, some network file
// systems) the upper layer goes on a tmpfs of 256 MiB instead.
func mountOverlay(dir, lower, merged string) error {
	if strings.ContainsAny(lower, ",:") || strings.ContainsAny(dir, ",:") {
		return fmt.Errorf("overlay: paths must not hold ',' or ':': %s, %s", lower, dir)
	}
	try := func(base string) error {
		upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
		return unix.Mount("overlay", merged, "overlay", 0, opts)
	}
	err := try(dir)
	if err == nil {
		return nil
	}
	tmp := filepath.Join(dir, "layer")
	if err2 := os.MkdirAll(tmp, 0o700); err2 != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	if err2 := unix.Mount("tmpfs", tmp, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=256m,mode=0700"); err2 != nil {
		return fmt.Errorf("overlay: %w (and a tmpfs for its upper layer: %v)", err, err2)
	}
	if err2 := try(tmp); err2 != nil {
		_ = unix.Unmount(tmp, unix.MNT_DETACH)
		return fmt.Errorf("overlay of %s: %w (on a tmpfs: %v)", lower, err, err2)
	}
	return nil
}

// undo deletes runc's state of the instance in dir, unless its shim is still alive to do
// so (it does once it has recorded the exit), and unmounts its rootfs.
func (rc *runcRuntime) undo(dir string, l shim.Launch) error {
	if l.ID != "" {
		if _, err := os.Stat(filepath.Join(rc.root, l.ID)); err == nil {
			var rs shim.RunState
			if shim.ReadJSON(dir, "state.json", &rs) != nil || !rs.Shim.Alive() {
				if err := rc.delete(l.ID); err != nil {
					return err
				}
			}
		}
	}
	return shim.UnmountRootfs(dir)
}

func (rc *runcRuntime) delete(id string) error {
	if out, err := exec.Command(rc.bin, "--root", rc.root, "delete", "--force", id).CombinedOutput(); err != nil {
		if _, serr := os.Stat(filepath.Join(rc.root, id)); errors.Is(serr, fs.ErrNotExist) {
			return nil // deleted meanwhile (by its shim)
		}
		return fmt.Errorf("runc delete: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// sweep deletes the containers in runc's root that no instance names: a shim killed
// before it deleted its container's state, after Remove took the instance away, leaves
// one; so does a daemon killed while a failed Start cleaned up.
func (rc *runcRuntime) sweep(instances string) {
	ents, err := os.ReadDir(rc.root)
	if err != nil || len(ents) == 0 {
		return
	}
	known := map[string]bool{}
	dirs, _ := os.ReadDir(instances)
	for _, d := range dirs {
		if strings.HasPrefix(d.Name(), removedPrefix) {
			continue
		}
		var rec instanceRecord
		if shim.ReadJSON(filepath.Join(instances, d.Name()), "instance.json", &rec) == nil {
			known[rec.Launch.ID] = true
		}
	}
	for _, e := range ents {
		if e.IsDir() && !known[e.Name()] {
			_ = rc.delete(e.Name())
		}
	}
}

// execRunc runs args in the instance's container with `runc exec`, which takes the
// process's user (with its additional gids), environment, working dir and capabilities
// from the bundle's config.json, as the container's init got them, and only the args from
// its command line. runc's own errors go to a log file of the exec's, so the output is the
// command's alone, and a failure logged there (no such program…) is an error rather than
// an exit code. The command is the leader of a session of its own (runc's init calls
// setsid), and so of a process group, which a kill ends whole: the command and what it
// started, unless that left the group.
//
// runc copies the command's output through pipes of its own and exits only once every
// writer has closed them: a process the command started in the background and left
// running with them would keep runc (and Exec) waiting for ever. So once the command has
// exited and runc has not followed within a second, what is left of its process group is
// killed: then runc exits with the command's exit code.
func execRunc(dir string, rec instanceRecord, args []string) (*execProc, error) {
	l := rec.Launch
	tmp, err := os.MkdirTemp(dir, "exec-")
	if err != nil {
		return nil, err
	}
	pidFile, logFile := filepath.Join(tmp, "pid"), filepath.Join(tmp, "runc.log")
	argv := append([]string{l.Runc, "--root", l.RuncRoot, "--log", logFile, "--log-format", "json",
		"exec", "--pid-file", pidFile, l.ID}, args...)
	// commandPid returns the host pid of the command once runc has written it (at once
	// after starting it), else 0.
	commandPid := func() int {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	// The command is runc's child until runc has reaped it: a pid whose parent is runc
	// is the command, not a process that reused its pid. Its process group outlives it as
	// long as a member does, and no new process gets its number meanwhile.
	kill := func(runc *os.Process, trying time.Duration) {
		pid := commandPid()
		if pid <= 0 {
			// Not started yet. Give runc a moment, then end runc itself (which may
			// leave a process it was starting).
			if trying > 2*time.Second {
				_ = runc.Kill()
			}
			return
		}
		if shim.PPid(pid) == runc.Pid {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		_ = unix.Kill(-pid, unix.SIGKILL)
		if trying > 5*time.Second {
			_ = runc.Kill()
		}
	}
	watch := func(runc *os.Process, gone <-chan struct{}) {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		pid := 0
		var exited time.Time // when the command was first seen gone
		for {
			select {
			case <-gone:
				return
			case <-t.C:
			}
			switch {
			case pid <= 0:
				pid = commandPid()
			case shim.PPid(pid) == runc.Pid: // runs (or is a zombie runc reaps at once)
			case exited.IsZero():
				exited = time.Now()
			case time.Since(exited) > time.Second:
				_ = unix.Kill(-pid, unix.SIGKILL)
			}
		}
	}
	done := func(code int) error {
		defer os.RemoveAll(tmp)
		if code == 0 {
			return nil
		}
		if msg := shim.RuncError(logFile, ""); msg != "" {
			return fmt.Errorf("runc exec: %s", msg)
		}
		return nil
	}
	return &execProc{path: l.Runc, argv: argv, env: os.Environ(), dir: "/", kill: kill, watch: watch, done: done}, nil
}

// The OCI runtime-spec subset outpost writes (config.json).
type (
	ociSpec struct {
		OCIVersion  string            `json:"ociVersion"`
		Process     ociProcess        `json:"process"`
		Root        ociRoot           `json:"root"`
		Hostname    string            `json:"hostname,omitempty"`
		Mounts      []ociMount        `json:"mounts"`
		Linux       ociLinux          `json:"linux"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	ociProcess struct {
		Terminal        bool     `json:"terminal"`
		User            ociUser  `json:"user"`
		Args            []string `json:"args"`
		Env             []string `json:"env"`
		Cwd             string   `json:"cwd"`
		Capabilities    ociCaps  `json:"capabilities"`
		NoNewPrivileges bool     `json:"noNewPrivileges"`
	}
	ociUser struct {
		UID            uint32   `json:"uid"`
		GID            uint32   `json:"gid"`
		AdditionalGids []uint32 `json:"additionalGids,omitempty"`
	}
	ociCaps struct {
		Bounding  []string `json:"bounding"`
		Effective []string `json:"effective"`
		Permitted []string `json:"permitted"`
	}
	ociRoot struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly"`
	}
	ociMount struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type,omitempty"`
		Source      string   `json:"source,omitempty"`
		Options     []string `json:"options,omitempty"`
	}
	ociLinux struct {
		Namespaces    []ociNamespace `json:"namespaces"`
		CgroupsPath   string         `json:"cgroupsPath,omitempty"`
		Resources     ociResources   `json:"resources"`
		MaskedPaths   []string       `json:"maskedPaths"`
		ReadonlyPaths []string       `json:"readonlyPaths"`
	}
	ociNamespace struct {
		Type string `json:"type"`
	}
	ociResources struct {
		Devices []ociDeviceRule `json:"devices"`
	}
	ociDeviceRule struct {
		Allow  bool   `json:"allow"`
		Access string `json:"access,omitempty"`
	}
)

// dockerCaps is docker's default capability set.
var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func ociConfig(spec Spec, u user, id string) (*ociSpec, error) {
	cwd := spec.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	hostname, _ := os.Hostname()
	caps := ociCaps{Bounding: dockerCaps, Effective: dockerCaps, Permitted: dockerCaps}
	if u.UID != 0 {
		caps.Effective, caps.Permitted = []string{}, []string{}
	}
	cfg := &ociSpec{
		OCIVersion: "1.0.2",
		Process: ociProcess{
			User:         ociUser{UID: u.UID, GID: u.GID, AdditionalGids: u.Groups},
			Args:         spec.Args,
			Env:          completeEnv(spec.Env, u.Home),
			Cwd:          cwd,
			Capabilities: caps,
		},
		Root:     ociRoot{Path: "rootfs"},
		Hostname: hostname,
		Mounts: []ociMount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: ociLinux{
			Namespaces:  []ociNamespace{{"pid"}, {"ipc"}, {"uts"}, {"mount"}},
			CgroupsPath: "/outpost/" + id,
			Resources:   ociResources{Devices: []ociDeviceRule{{Allow: false, Access: "rwm"}}},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
		Annotations: map[string]string{"outpost.module": spec.Name},
	}
	for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
			cfg.Mounts = append(cfg.Mounts, ociMount{Destination: f, Type: "bind", Source: f, Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
		}
	}
	for _, s := range spec.Binds {
		b, err := parseBind(s)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(b.Src); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(b.Src, 0o755); err != nil { // as docker does for -v
				return nil, fmt.Errorf("bind %s: %w", s, err)
			}
		}
		opts := []string{"rbind"}
		if b.ReadOnly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		cfg.Mounts = append(cfg.Mounts, ociMount{Destination: b.Dst, Type: "bind", Source: b.Src, Options: append(opts, b.Options...)})
	}
	if src, dst, err := prepareWorkloadMount(spec.WorkloadSocket); err != nil {
		return nil, err
	} else if src != "" {
		cfg.Mounts = append(cfg.Mounts, ociMount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}})
	}
	return cfg, nil
}
