package hub_test

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/cputime"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// startBenchFleet starts a hub on scripts/bench/hubfill's fleet of 10,000
// devices × 5 module twins: in the data dir OUTPOST_BENCH_HUB_DATA, which
// it fills (about 90 s) when it has none and keeps for the next run, or in
// a temporary one.
func startBenchFleet(b *testing.B) *hubtest.Hub {
	dir := os.Getenv("OUTPOST_BENCH_HUB_DATA")
	if _, err := os.Stat(dir + "/store"); dir == "" || err != nil {
		if dir == "" {
			dir = b.TempDir()
		}
		hubtest.Start(b, hubtest.Options{DataDir: dir}).Stop() // a hub's data dir, then its fleet
		fill := exec.Command("go", "run", "../../scripts/bench/hubfill", "-data", dir, "-devices", "10000", "-modules", "5")
		fill.Stderr = os.Stderr
		if err := fill.Run(); err != nil {
			b.Fatalf("hubfill: %v", err)
		}
	}
	return hubtest.Start(b, hubtest.Options{DataDir: dir})
}

// BenchmarkQuery measures queries over 10,000 devices × 5 module twins
// (scripts/bench/hubfill's fleet: 10,000 device twins, 60,000 module twins
// with $agent), end to end through HTTPS and hubclient. Each sub-benchmark
// reports ms per query (or per page), on the wall clock and in CPU time of
// the process (hub and client together; the machine may be busy with
// other jobs, which the wall clock counts and CPU time does not).
//
//	OUTPOST_BENCH_HUB_DATA=DIR go test ./internal/hub -run '^$' -bench Query -benchtime 20x
//
// The benchmark makes a hub data dir in DIR and fills it with
// scripts/bench/hubfill (about 90 s) when DIR has none, and keeps it for
// the next run; without OUTPOST_BENCH_HUB_DATA it fills a temporary one.
func BenchmarkQuery(b *testing.B) {
	h := startBenchFleet(b)
	c := h.Client(b)
	for _, bc := range []struct {
		name, q string
		want    int // items, or -1 for any
	}{
		// Every module twin is read; few or none match.
		{"scan-no-match", "SELECT * FROM devices.modules WHERE properties.reported.firmware = '2.0.0'", 0},
		{"scan-count", "SELECT COUNT() AS n FROM devices.modules WHERE properties.desired.interval = 5 AND properties.reported.temperature > 20", 1},
		{"scan-group-by", "SELECT properties.reported.firmware AS fw, COUNT() AS n FROM devices.modules GROUP BY properties.reported.firmware", -1},
		{"scan-in-startswith", "SELECT deviceId, moduleId FROM devices.modules WHERE moduleId IN ['module-4'] AND STARTSWITH(deviceId, 'device-0999')", 10},
		// A query that reads $metadata decodes every twin it scans.
		{"scan-metadata", "SELECT COUNT() AS n FROM devices.modules WHERE properties.reported.$metadata.$lastUpdated > '2000'", 1},
		// The first page of a query that matches everything.
		{"page-1-of-all-twins", "SELECT * FROM devices.modules", -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			start, cpu := time.Now(), cputime.Self()
			for b.Loop() {
				p, err := c.QueryPage(ctx, bc.q, 0, "")
				if err != nil {
					b.Fatal(err)
				}
				if bc.want >= 0 && len(p.Items) != bc.want {
					b.Fatalf("%s: %d items, want %d", bc.q, len(p.Items), bc.want)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/query")
			b.ReportMetric(float64((cputime.Self()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/query")
		})
	}
	// Every device twin, in pages of 1,000, to the end.
	b.Run("all-devices-paged", func(b *testing.B) {
		start, cpu, pages := time.Now(), cputime.Self(), 0
		for b.Loop() {
			cont, n := "", 0
			for {
				p, err := c.QueryPage(ctx, "SELECT deviceId FROM devices", 1000, cont)
				if err != nil {
					b.Fatal(err)
				}
				n, pages = n+len(p.Items), pages+1
				if cont = p.Continuation; cont == "" {
					break
				}
			}
			if n != 10000 {
				b.Fatalf("%d devices", n)
			}
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(pages), "ms/page")
		b.ReportMetric(float64((cputime.Self()-cpu).Microseconds())/1000/float64(pages), "cpu-ms/page")
	})
}
