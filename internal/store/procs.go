package store

import (
	"os"
	"runtime"
)

// UseProcs gives a process whose work waits on this store's durable writes twice as
// many Ps as CPUs, and returns what puts the count back. It leaves the count alone when
// GOMAXPROCS is set in the environment, or under a CPU quota (the runtime then gives
// fewer Ps than there are CPUs: more threads running at once than the quota allows
// would be throttled).
//
// A goroutine in fdatasync(2) or a directory fsync keeps its P (the runtime's right
// to run Go code) until the runtime's monitor sees it there twice, 40 µs to 10 ms
// later, and hands the P to another thread. A PATCH at the hub waits in two such calls,
// so with one P per CPU the ready goroutines (other requests' TLS, HTTP, JSON) wait
// behind Ps held by threads that sleep on the disk, and the CPUs idle: on 2 cores the
// hub used 1.3 of them at 16 clients. With twice the Ps the threads asleep in the
// kernel leave Ps for the rest; the CPUs still run at most one thread each.
// Measured in docs/benchmarks.md ("the hub beside its store"): about 40 % more PATCHes
// a second at 16 and 256 clients, in process.
func UseProcs() (restore func()) {
	n := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" || n != runtime.NumCPU() {
		return func() {}
	}
	runtime.GOMAXPROCS(2 * n)
	return func() { runtime.GOMAXPROCS(n) }
}
