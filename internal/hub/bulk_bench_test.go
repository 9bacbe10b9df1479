package hub_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// BenchmarkBulkCreate measures devices created per second by bulk registry
// operations of 100 devices each (POST /devices, importMode create), and
// then GET /statistics/devices over all of them.
//
//	go test ./internal/hub -run '^$' -bench BulkCreate -benchtime 20x
func BenchmarkBulkCreate(b *testing.B) {
	h := hubtest.Start(b, hubtest.Options{})
	auth := ownerAuth(b, h)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		items := make([]string, 100)
		for j := range items {
			items[j] = fmt.Sprintf(`{"id":"b%d-%d","importMode":"create"}`, i, j)
		}
		if status, body := h.Request(b, "POST", "/devices", auth, "", []byte("["+strings.Join(items, ",")+"]")); status != 200 {
			b.Fatalf("bulk create: %d %s", status, body)
		}
	}
	b.ReportMetric(float64(100*b.N)/time.Since(start).Seconds(), "devices/s")
	b.StopTimer()
	statsStart := time.Now()
	status, body := h.Request(b, "GET", "/statistics/devices", auth, "", nil)
	if want := fmt.Sprintf(`"totalDeviceCount":%d`, 100*b.N); status != 200 || !strings.Contains(body, want) {
		b.Fatalf("statistics: %d %s, want %s", status, body, want)
	}
	b.ReportMetric(float64(time.Since(statsStart).Microseconds())/1000, "stats-ms")
}
