package cputime

import (
	"runtime"
	"testing"
	"time"
)

// TestSelfCounts: a busy loop adds to the CPU time used (on unix).
func TestSelfCounts(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no getrusage here: Self is 0")
	}
	before := Self()
	x := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		x++
	}
	if after := Self(); after <= before || x == 0 {
		t.Fatalf("CPU time %v after a busy loop, %v before", after, before)
	}
}
