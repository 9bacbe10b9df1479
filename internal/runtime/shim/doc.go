// Package shim is the parent of one instance of the runc or process runtime: it starts
// the instance (runc run --detach as a child subreaper, or the program itself), reports on
// fd 3, writes the instance's stdout and stderr to its log files, waits for it, unmounts a
// runc instance's rootfs and records how it exited in exit.json. It is in a session of its
// own, ignores SIGTERM, SIGINT and SIGHUP, and so outlives the daemon.
//
// One shim runs per instance for as long as the instance runs, so it is kept small: this
// package imports only the standard library's basics and x/sys/unix. It runs as the
// outpost-shim binary (cmd/outpost-shim, installed beside outpost), or, where that binary
// is missing, as the binary that started it re-executed with Env set (see Hook).
//
// The daemon (internal/runtime) and the shim share the files of the instance's state dir:
//
//	instance.json  what to start (Instance; written by the daemon)
//	state.json     shim and main process, start time (RunState; written by the shim once running)
//	exit.json      exit code and time (ExitState; written by the shim once exited)
package shim

// How the daemon starts a shim: argv [Binary or any name, Arg, the instance's state dir],
// and, when it re-executes its own binary, Env set to the state dir too.
const (
	Binary = "outpost-shim"
	Env    = "OUTPOST_RUNTIME_SHIM"
	Arg    = "outpost-runtime-shim"
)

// Kinds of instance a shim starts (the runtime's names).
const (
	KindRunc    = "runc"
	KindProcess = "process"
)

// ExitUnknown is the exit code recorded when the instance's exit code could not be known
// (runtime.ExitUnknown).
const ExitUnknown = -1
