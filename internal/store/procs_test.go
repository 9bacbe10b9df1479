package store

import (
	"runtime"
	"testing"
)

// TestUseProcs: twice the Ps when neither the environment nor a CPU quota
// chose the count, and the count put back after; none when GOMAXPROCS is set.
func TestUseProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Setenv("GOMAXPROCS", "")
	restore := UseProcs()
	got := runtime.GOMAXPROCS(0)
	restore()
	if before == runtime.NumCPU() && got != 2*before {
		t.Errorf("GOMAXPROCS %d with %d CPUs, want %d", got, runtime.NumCPU(), 2*before)
	}
	if before != runtime.NumCPU() && got != before { // this test under a quota or -cpu
		t.Errorf("GOMAXPROCS %d under a quota of %d Ps, want it kept", got, before)
	}
	if n := runtime.GOMAXPROCS(0); n != before {
		t.Errorf("after restore: %d Ps, want %d", n, before)
	}

	t.Setenv("GOMAXPROCS", "1")
	restore = UseProcs()
	got = runtime.GOMAXPROCS(0)
	restore()
	if got != before {
		t.Errorf("GOMAXPROCS set in the environment: %d Ps, want %d kept", got, before)
	}
}
