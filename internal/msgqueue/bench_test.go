package msgqueue

import (
	"slices"
	"testing"
	"time"
)

// The floor under the broker's module-to-module numbers (docs/benchmarks.md):
//
//	go test ./internal/msgqueue -run '^$' -bench . -benchtime 2000x
//
// BenchmarkAppendSync: one 1 KiB append at a time, each until durable (one
// write and one fdatasync): p50 and p99.
func BenchmarkAppendSync(b *testing.B) {
	l, rec := benchLog(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		seq, err := l.AppendSync(rec)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		l.Ack("input/b/in1", seq)
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

// BenchmarkAppendGroup: 1 KiB appends as fast as they come, not waiting
// for each (as the broker does with a module's messages): records/s
// durable.
func BenchmarkAppendGroup(b *testing.B) {
	l, rec := benchLog(b)
	done := make(chan uint64, b.N)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		l.Append(rec, func(seq uint64, err error) {
			if err != nil {
				b.Error(err)
			}
			done <- seq
		})
	}
	for range b.N {
		l.Ack("input/b/in1", <-done)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
}

// benchLog opens a log for the test and makes a 1 KiB record for one input.
func benchLog(b *testing.B) (*Log, Record) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l, Record{Dests: []Dest{{Name: "input/b/in1"}}, Data: make([]byte, 1024)}
}
