package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, floor uint64
		want        int
	}{
		{0, 32 * mib, 800},         // nothing live yet: the floor, at most 800
		{1 * mib, 32 * mib, 800},   // 32× would be 3200: capped (the runtime's minimum goal grows with GOGC)
		{8 * mib, 32 * mib, 400},   // 32 MiB above 8
		{32 * mib, 32 * mib, 100},  // the floor equals the live heap
		{64 * mib, 32 * mib, 50},   // still the floor
		{128 * mib, 32 * mib, 25},  // a quarter equals the floor
		{1024 * mib, 32 * mib, 25}, // a quarter, no less
		{100 * mib, 0, 25},         // no floor: a quarter
		{3 * mib, 1 * mib, 33},     // rounded down
		{1 << 40, 32 * mib, 25},    // no overflow
		{1, 1 << 62, maxPercent},   // nor here
		{1 << 62, 1 << 62, 100},    // nor here
		{400 * mib, 200 * mib, 50}, // floor above a quarter
		{400 * mib, 100 * mib, 25}, // floor equal to a quarter
		{4 * mib, 32 * mib, 800},   // 8× exactly
		{5 * mib, 32 * mib, 640},   // under the cap
		{1 << 30, 1 << 30, 100},    // 1 GiB floor
		{2 << 30, 1 << 30, 50},     // half
		{16 << 30, 1 << 30, 25},    // a quarter
		{64 * mib, 64 * mib, 100},  // equal
		{65 * mib, 64 * mib, 98},   // just above
		{63 * mib, 64 * mib, 101},  // just below
		{256 * mib, 64 * mib, 25},  // a quarter = floor
		{257 * mib, 64 * mib, 25},  // a quarter > floor
		{255 * mib, 64 * mib, 25},  // 64/255 = 25.09 %
		{200 * mib, 64 * mib, 32},  // 32 %
	} {
		if got := Percent(tc.live, tc.floor); got != tc.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tc.live, tc.floor, got, tc.want)
		}
	}
}

// TestRunSetsGOGC: Run sets GOGC from the live heap at once and follows it
// when the live heap grows.
func TestRunSetsGOGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	gogc := func() int { p := debug.SetGCPercent(-1); debug.SetGCPercent(p); return p }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	runtime.GC()
	go func() { defer close(done); Run(ctx, 64<<20, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	// This test binary's live heap is far below 16 MiB: 64 MiB of floor is
	// more than 4× it, past the cap.
	waitFor(t, func() bool { return gogc() == maxPercent }, "GOGC 800 for a small heap")

	// 512 MiB live (pointer-free, as the hub's records): a quarter is above
	// the floor.
	live := make([]byte, 512<<20)
	runtime.GC()
	waitFor(t, func() bool { return gogc() == 25 }, "GOGC 25 for a 512 MiB heap")
	runtime.KeepAlive(live)
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
