package moduleclient_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// BenchmarkDesiredToCallback measures a desired patch at the hub (from
// before the PATCH request) to the module's OnDesired callback, through
// the hub, the daemon's syncer, its broker and the SDK, one patch at a
// time. Run with -benchtime=1000x for p50/p99 over 1,000 patches:
//
//	go test ./sdk/moduleclient -run '^$' -bench DesiredToCallback -benchtime=1000x
func BenchmarkDesiredToCallback(b *testing.B) {
	d := newDevice(b)
	c := d.connect(b)
	got := make(chan int64, 16)
	c.OnDesired(func(patch map[string]any, version int64) { got <- version })
	tw, err := c.Twin(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	want := tw.Desired.Version
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		body, _ := json.Marshal(map[string]any{"properties": map[string]any{"desired": map[string]any{"interval": i}}})
		start := time.Now()
		if _, err := d.f.Owner.PatchTwin(b.Context(), d.f.DeviceID, d.module, body, ""); err != nil {
			b.Fatal(err)
		}
		want++
		for v := range got {
			if v >= want {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
