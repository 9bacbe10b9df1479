package store

// Procs is the GOMAXPROCS for a process whose work waits on this store's durable
// writes, given the CPUs it may use (runtime.GOMAXPROCS(0)): twice as many.
//
// A goroutine in fdatasync(2) or a directory fsync keeps its P (the runtime's right
// to run Go code) until the runtime's monitor sees it there twice, 40 µs to 10 ms
// later, and hands the P to another thread. A PATCH at the hub waits in two such calls,
// so with one P per CPU the ready goroutines (other requests' TLS, HTTP, JSON) wait
// behind Ps held by threads that sleep on the disk, and the CPUs idle: on 2 cores the
// hub used 1.3 of them at 16 clients. With twice the Ps the threads asleep in the
// kernel leave Ps for the rest; the CPUs still run at most one thread each. (Under a
// CPU quota, where the runtime gives fewer Ps than there are CPUs, more Ps would let more
// threads run at once than the quota allows: `hub serve` then keeps the runtime's count.)
// Measured in docs/benchmarks.md ("the hub beside its store"): about 40 % more PATCHes
// a second at 16 and 256 clients, in process.
func Procs(cpus int) int {
	return 2 * max(cpus, 1)
}
