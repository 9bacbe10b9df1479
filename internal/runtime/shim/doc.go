// Package shim is the parent of the instances of the runc and process runtimes: one shim
// process serves every instance that one build of the daemon starts in one runtime state
// dir. The daemon asks it on a unix socket in that dir to start an instance (runc run
// --detach, the shim a child subreaper, or the program itself); the shim reports, writes
// the instance's stdout and stderr to its log files, waits for it, unmounts a runc
// instance's rootfs and records how it exited in exit.json. It is in a session of its own,
// ignores SIGTERM, SIGINT and SIGHUP, and so outlives the daemon; it exits once it has no
// instance and no connection left.
//
// The shim runs for as long as any instance runs, so it is kept small: this package
// imports only the standard library's basics and x/sys/unix. It runs as the outpost-shim
// binary (cmd/outpost-shim, installed beside outpost), or, where that binary is missing, as
// the binary that started it re-executed with Env set (see Hook).
//
// The daemon (internal/runtime) and the shim share the files of the instance's state dir:
//
//	instance.json  what to start (Instance; written by the daemon)
//	state.json     shim and main process, start time (RunState; written by the shim once running)
//	exit.json      exit code and time (ExitState; written by the shim once exited)
package shim

// How the daemon starts a shim: argv [Binary or any name, Arg, the socket's path], and,
// when it re-executes its own binary, Env set to the socket's path too.
const (
	Binary = "outpost-shim"
	Env    = "OUTPOST_RUNTIME_SHIM"
	Arg    = "outpost-runtime-shims"
)

// Kinds of instance a shim starts (the runtime's names).
const (
	KindRunc    = "runc"
	KindProcess = "process"
)

// ExitUnknown is the exit code recorded when the instance's exit code could not be known
// (runtime.ExitUnknown).
const ExitUnknown = -1
