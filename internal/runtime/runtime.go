// Package runtime runs module instances. One interface, Runtime, has three implementations:
// runc (an OCI bundle per instance, run by the runc binary), docker (the Docker/Moby Engine
// API over its socket) and process (the image's entrypoint as a plain host process, which
// does not isolate). A runtime knows nothing of the hub, the agent or images: it is given a
// prepared Spec.
//
// The runc and process runtimes start each instance under a small shim: the calling binary
// itself, re-executed (see shim_linux.go). The shim is the instance's parent, so it outlives
// a daemon restart, writes the instance's stdout and stderr to size-capped rotating log files
// and records its exit code; a new Runtime over the same state dir adopts what it finds.
package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Spec is what a runtime needs to create and start one instance.
type Spec struct {
	// Name is the instance name, unique per daemon: the module id. It may hold any IoT Hub
	// id character; runtimes map it to a safe container id with ContainerID.
	Name string
	// Image is the image reference. Only the docker runtime uses it (and pulls it when the
	// engine does not have it).
	Image string
	// Rootfs is the unpacked image root, shared read-only by every instance of the image:
	// runtimes never write into it. runc mounts an overlay with a per-instance upper layer
	// over it; process runs the entrypoint from it.
	Rootfs string
	// Args are the entrypoint and command, resolved by the caller. Args[0] is looked up in
	// the rootfs (PATH from Env when it has no slash). Empty means the image's own (docker
	// only; runc and process need Args).
	Args []string
	// Env is the complete environment, KEY=VALUE; the caller adds the IOTEDGE_* vars. Where
	// it lacks them, runc and process add PATH (Docker's default) and HOME (from the user's
	// passwd entry) as docker does.
	Env []string
	// WorkingDir is the working directory inside the instance ("" for /).
	WorkingDir string
	// User is "", "name", "uid", "uid:gid", "name:group" or "uid:group"; names are resolved
	// through Rootfs/etc/passwd and /etc/group (runc, process); docker passes it on.
	User string
	// Binds are docker-style "src:dst[:ro|rw]"; a missing src is created as a directory,
	// as docker does.
	Binds []string
	// WorkloadSocket is the host path of this module's workload socket. runc and docker
	// mount it at /var/run/iotedge/workload.sock: when the file is named workload.sock
	// they mount its directory at /var/run/iotedge instead, so that a socket re-created by
	// a restarted daemon is still the one the module sees (give each module a directory of
	// its own). The process runtime cannot mount: it sets IOTEDGE_WORKLOADURI (and
	// OUTPOST_WORKLOADURI when Env has it) to unix://<WorkloadSocket> instead, so the
	// caller passes the in-container URI in Env and the host path here, for every runtime.
	WorkloadSocket string
	// Labels are kept with the instance and returned in State.
	Labels map[string]string
	// LogDir is where the instance's logs go (runc, process): container.log and its
	// rotations container.log.1…, in the CRI log format. "" keeps them in the instance's
	// state dir, removed with it; a LogDir of the caller's is left to the caller on Remove.
	LogDir string
	// LogMaxBytes and LogFiles cap the logs: each file at most LogMaxBytes (default
	// 10 MiB), at most LogFiles files in all (default 3). docker gets the same caps for its
	// json-file driver.
	LogMaxBytes int64
	LogFiles    int
	// RegistryAuth, when set, is what the docker runtime gives the engine to pull Image
	// (the engine does not read the device's docker config.json: the client must send it).
	RegistryAuth *RegistryAuth `json:"-"`
}

// RegistryAuth are registry credentials, as the Engine API takes them.
type RegistryAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	ServerAddress string `json:"serveraddress,omitempty"`
}

// Log caps by default: 3 files of 10 MiB.
const (
	DefaultLogMaxBytes = 10 << 20
	DefaultLogFiles    = 3
)

func (s Spec) logCaps() (int64, int) {
	size, files := s.LogMaxBytes, s.LogFiles
	if size <= 0 {
		size = DefaultLogMaxBytes
	}
	if files <= 0 {
		files = DefaultLogFiles
	}
	return size, files
}

// Statuses of an instance.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// ExitUnknown is State.ExitCode when an instance has exited but its exit code could not be
// known (its shim was killed, or the machine rebooted); Description says why.
const ExitUnknown = -1

// State is what a runtime knows of one instance.
type State struct {
	Name       string // Spec.Name
	Running    bool
	Pid        int // host pid of the instance's main process while running
	ExitCode   int // once exited: the exit status, 128+signal when killed, or ExitUnknown
	StartedAt  time.Time
	FinishedAt time.Time
	Status     string // created | running | exited
	// Description says more, for a person: how it exited, that a process instance is not
	// isolated, that a user could not be switched to… ("" when there is nothing to add).
	Description string
	Labels      map[string]string
}

// LogOptions select what Logs returns.
type LogOptions struct {
	Follow     bool      // keep the stream open for new lines until the instance exits
	Tail       int       // only the last Tail lines (0: all)
	Since      time.Time // only lines written at or after Since (zero: all)
	Timestamps bool      // prefix each line with its RFC 3339 time
}

// Runtime creates, runs and removes instances.
type Runtime interface {
	// Name is "runc", "docker" or "process".
	Name() string
	// Isolated is false for process: its instances are plain host processes.
	Isolated() bool
	// Start creates and starts an instance. It fails with ErrExists when an instance of
	// that name exists, running or not: Remove it first.
	Start(ctx context.Context, spec Spec) error
	// Stop sends SIGTERM, then SIGKILL after grace, and returns once the instance has
	// exited. Stopping an instance that is not running is not an error.
	Stop(ctx context.Context, name string, grace time.Duration) error
	// Remove kills the instance if it runs and removes it and what the runtime kept of it.
	Remove(ctx context.Context, name string) error
	// State fails with ErrNotFound when there is no such instance.
	State(ctx context.Context, name string) (State, error)
	// List returns every instance this runtime's state dir holds (docker: every container
	// labelled as made by it), running or not: what a restarted daemon adopts.
	List(ctx context.Context) ([]State, error)
	// Wait returns once the instance has exited (at once if it has).
	Wait(ctx context.Context, name string) (State, error)
	// Logs returns the instance's stdout and stderr, merged, one line at a time.
	Logs(ctx context.Context, name string, opts LogOptions) (io.ReadCloser, error)
	// Exec runs args inside the running instance name, with the instance's rootfs,
	// environment, user and working directory, and returns its exit code and the last 4 KiB
	// of its stdout and stderr, merged. When ctx ends first the command is killed and Exec
	// returns ctx's error. It fails with ErrNotFound when there is no such instance and with
	// ErrNotRunning when the instance is not running. Health checks use it.
	Exec(ctx context.Context, name string, args []string) (ExecResult, error)
}

// ExecResult is how a command run by Exec ended.
type ExecResult struct {
	ExitCode int    // its exit status, or 128+signal when a signal ended it
	Output   string // its stdout and stderr, merged: the last MaxExecOutput bytes at most
}

// MaxExecOutput is how much of a command's output ExecResult keeps: its end.
const MaxExecOutput = 4 << 10

// ImagePuller is implemented by runtimes that keep images themselves (docker): the agent
// pulls through it instead of its own image store, and starts instances by Spec.Image.
type ImagePuller interface {
	// PullImage has the engine pull ref (with auth when not nil) and returns what it then has.
	PullImage(ctx context.Context, ref string, auth *RegistryAuth) (EngineImage, error)
	// InspectImage returns what the engine has of ref without pulling; ErrNotFound when none.
	InspectImage(ctx context.Context, ref string) (EngineImage, error)
	// GCImages removes the images PullImage pulled that are not in inUse (references, or
	// "sha256:…" ids or digests) and were last used (pulled or inspected) more than
	// olderThan ago, and returns their references. Images it did not pull stay.
	GCImages(ctx context.Context, inUse []string, olderThan time.Duration) ([]string, error)
}

// EngineImage is what an engine keeps of one image.
type EngineImage struct {
	ID string // the engine's image id (sha256:… of the config)
	// Digest is the manifest digest ("sha256:…") the ref resolved to, from the engine's
	// RepoDigests for the ref's repository; "" when the engine has none (a local image).
	// For a multi-platform image pulled by tag the engine records the index's digest.
	Digest string
	Config v1.Config // Entrypoint, Cmd, Env, WorkingDir, User, Labels, Healthcheck…
}

// Errors, to be matched with errors.Is.
var (
	ErrNotFound    = errors.New("no such instance")
	ErrExists      = errors.New("instance exists")
	ErrUnavailable = errors.New("runtime unavailable")
	ErrNotRunning  = errors.New("instance not running")
)

// Kinds of runtime New accepts.
const (
	KindAuto    = "auto"
	KindRunc    = "runc"
	KindDocker  = "docker"
	KindProcess = "process"
)

// New returns the runtime of that kind, keeping its state under stateDir. "auto" (or "")
// picks runc when it is installed and this process is root, else docker when its engine
// answers, else process.
func New(kind, stateDir string) (Runtime, error) {
	switch kind {
	case "", KindAuto:
		if _, err := lookRunc(); err == nil && isRoot() {
			return newRunc(stateDir)
		}
		if dockerAnswers() {
			return newDocker(stateDir)
		}
		return newProcess(stateDir)
	case KindRunc:
		return newRunc(stateDir)
	case KindDocker:
		return newDocker(stateDir)
	case KindProcess:
		return newProcess(stateDir)
	}
	return nil, fmt.Errorf("runtime %q: unknown; want auto, runc, docker or process", kind)
}

// ContainerID maps an instance name to the id runtimes give it: "outpost-" and the name
// with every byte outside [A-Za-z0-9.-] escaped as _XX (hex), so that the mapping is
// one-to-one; names whose id would pass 100 bytes are cut and end with a hash of the name.
func ContainerID(name string) string {
	var b strings.Builder
	b.WriteString("outpost-")
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	id := b.String()
	if len(id) > 100 {
		sum := sha256.Sum256([]byte(name))
		id = id[:80] + "-" + hex.EncodeToString(sum[:8])
	}
	return id
}

func checkSpec(spec Spec, needRootfs bool) error {
	if spec.Name == "" {
		return errors.New("spec: Name is empty")
	}
	if needRootfs {
		if spec.Rootfs == "" {
			return fmt.Errorf("%s: spec: Rootfs is empty", spec.Name)
		}
		if len(spec.Args) == 0 || spec.Args[0] == "" {
			return fmt.Errorf("%s: spec: Args is empty (no entrypoint or command)", spec.Name)
		}
	}
	for _, e := range spec.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("%s: spec: Env entry %q is not KEY=VALUE", spec.Name, e)
		}
	}
	for _, b := range spec.Binds {
		if _, err := parseBind(b); err != nil {
			return fmt.Errorf("%s: spec: %w", spec.Name, err)
		}
	}
	return nil
}

// bind is one parsed "src:dst[:opts]".
type bind struct {
	Src, Dst string
	ReadOnly bool
	Options  []string // other options: propagation (rprivate, rshared…); z/Z are dropped
}

func parseBind(s string) (bind, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return bind{}, fmt.Errorf("bind %q: want src:dst[:ro]", s)
	}
	b := bind{Src: parts[0], Dst: parts[1]}
	if !strings.HasPrefix(b.Src, "/") || !strings.HasPrefix(b.Dst, "/") {
		return bind{}, fmt.Errorf("bind %q: src and dst must be absolute paths (named volumes are not supported)", s)
	}
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				b.ReadOnly = true
			case "rw", "z", "Z", "":
			case "private", "rprivate", "shared", "rshared", "slave", "rslave":
				b.Options = append(b.Options, o)
			default:
				return bind{}, fmt.Errorf("bind %q: unknown option %q", s, o)
			}
		}
	}
	return b, nil
}

// envSet returns env with key set to value, replacing any entry of key.
func envSet(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k != key {
			out = append(out, e)
		}
	}
	return append(out, key+"="+value)
}

func envGet(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(env[i], "="); k == key {
			return v, true
		}
	}
	return "", false
}

// defaultPath is Docker's PATH for a container whose image sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Where a module finds its workload socket inside a container.
const (
	workloadDir    = "/var/run/iotedge"
	workloadSocket = workloadDir + "/workload.sock"
)

// workloadMount returns what runc and docker mount for a workload socket: its directory at
// /var/run/iotedge when the socket is named workload.sock, else the file itself.
func workloadMount(hostPath string) (src, dst string) {
	if hostPath == "" {
		return "", ""
	}
	if strings.HasSuffix(hostPath, "/workload.sock") {
		return strings.TrimSuffix(hostPath, "/workload.sock"), workloadDir
	}
	return hostPath, workloadSocket
}

// prepareWorkloadMount returns workloadMount's source and target, creating the socket's
// directory when it is the one mounted (the socket may come later); a socket mounted as a
// file must exist.
func prepareWorkloadMount(hostPath string) (src, dst string, err error) {
	src, dst = workloadMount(hostPath)
	if src == "" {
		return "", "", nil
	}
	if dst == workloadDir {
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", "", fmt.Errorf("workload socket dir: %w", err)
		}
		return src, dst, nil
	}
	if _, err := os.Stat(src); err != nil {
		return "", "", fmt.Errorf("workload socket: %w", err)
	}
	return src, dst, nil
}
