// Package gctune sets the garbage collector's heap goal from the live heap: a
// quarter above it, and never less than a fixed floor above it.
//
// GOGC alone cannot say that. At GOGC=25 a heap of long-lived records (the hub's
// registry) stays near its size, but a small one is collected after every
// megabyte allocated: a hub with a small registry spent 268 – 295 µs of CPU
// a PATCH at GOGC=25 and 157 – 217 µs at 100 (docs/benchmarks.md). At GOGC=100 a large registry
// would double its resident size. So Run watches the live heap and keeps GOGC at
// whatever gives max(live/4, floor) of headroom.
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// maxPercent bounds GOGC: the runtime's smallest heap goal is 4 MiB × GOGC/100,
// so a higher GOGC would raise the goal of a small heap past live + floor.
const maxPercent = 800

// Percent is the GOGC that gives a live heap of live bytes max(live/4, floor)
// bytes of headroom: between 25 and 800.
func Percent(live, floor uint64) int {
	if live == 0 {
		return maxPercent
	}
	head := max(live/4, floor)
	p := float64(head) * 100 / float64(live) // in uint64, head*100 overflows past 184 PB
	return int(min(max(p, 25), maxPercent))
}

// Run sets GOGC to Percent(live heap, floor) now and again every interval until
// ctx ends, when the live heap has moved it. The live heap is what the last
// collection marked (runtime/metrics /gc/heap/live:bytes).
func Run(ctx context.Context, floor uint64, every time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := -1
	tune := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		if p := Percent(sample[0].Value.Uint64(), floor); p != set {
			debug.SetGCPercent(p)
			set = p
		}
	}
	tune()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			tune()
		}
	}
}
