package hub_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/cputime"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

// BenchmarkListDevices measures what the TUI's fleet view asks of a hub
// with 10,000 IoT Edge devices (made by bulk registry operations, so that it runs
// on the etcd store too): a page of 100 devices from the start, from the
// middle (a continuation token) and from the end; every device in pages of
// 1,000; the same as fleet pages (hubapi.FleetPath: module count and
// deployment report too); and the first frame's request from a new client
// (TLS handshake included). Each reports ms per operation on the wall
// clock and in CPU time of the process (hub and client together).
//
//	go test ./internal/hub -run '^$' -bench ListDevices -benchtime 50x
//	OUTPOST_TEST_STORE=etcd go test ./internal/hub -run '^$' -bench ListDevices -benchtime 50x
func BenchmarkListDevices(b *testing.B) {
	h := hubtest.Start(b, hubtest.Options{})
	auth := ownerAuth(b, h)
	const devices = 10000
	for i := range devices / 100 {
		items := make([]string, 100)
		for j := range items {
			items[j] = fmt.Sprintf(`{"id":"device-%05d","importMode":"create","capabilities":{"iotEdge":true}}`, 100*i+j)
		}
		if status, body := h.Request(b, "POST", "/devices", auth, "", []byte("["+strings.Join(items, ",")+"]")); status != 200 {
			b.Fatalf("bulk create: %d %s", status, body)
		}
	}
	c := h.Client(b)
	measure := func(b *testing.B, per string, op func(b *testing.B) int) {
		start, cpu, n := time.Now(), cputime.Self(), 0
		for b.Loop() {
			n += op(b)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(n), "ms/"+per)
		b.ReportMetric(float64((cputime.Self()-cpu).Microseconds())/1000/float64(n), "cpu-ms/"+per)
	}
	page := func(b *testing.B, c *hubclient.Client, after string, want int) {
		ds, _, err := c.ListDevicesPage(ctx, after, 100)
		if err != nil {
			b.Fatal(err)
		}
		if len(ds) != want {
			b.Fatalf("a page after %q: %d devices, want %d", after, len(ds), want)
		}
	}
	for _, bc := range []struct {
		name, after string
		want        int
	}{
		{"page-100-first", "", 100},
		{"page-100-middle", "device-04999", 100},
		{"page-100-last", "device-09949", 50},
	} {
		b.Run(bc.name, func(b *testing.B) {
			measure(b, "page", func(b *testing.B) int { page(b, c, bc.after, bc.want); return 1 })
		})
	}
	b.Run("all-in-pages-1000", func(b *testing.B) {
		measure(b, "page", func(b *testing.B) int {
			cont, n, pages := "", 0, 0
			for {
				ds, next, err := c.ListDevicesPage(ctx, cont, 1000)
				if err != nil {
					b.Fatal(err)
				}
				n, pages = n+len(ds), pages+1
				if cont = next; cont == "" {
					break
				}
			}
			if n != devices {
				b.Fatalf("%d devices listed, want %d", n, devices)
			}
			return pages
		})
	})
	// The fleet view's pages: each device with its module count and its
	// agent's deployment report.
	fleet := func(b *testing.B, c *hubclient.Client, after string, top, want int) string {
		p, err := c.ListFleetPage(ctx, after, top)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Devices) != want || p.Cursor == "" {
			b.Fatalf("a fleet page after %q: %d devices (want %d), cursor %q", after, len(p.Devices), want, p.Cursor)
		}
		return p.Next
	}
	b.Run("fleet-page-100-first", func(b *testing.B) {
		measure(b, "page", func(b *testing.B) int { fleet(b, c, "", 100, 100); return 1 })
	})
	b.Run("fleet-all-in-pages-1000", func(b *testing.B) {
		measure(b, "page", func(b *testing.B) int {
			cont, pages := "", 0
			for {
				pages++
				if cont = fleet(b, c, cont, 1000, 1000); cont == "" {
					return pages
				}
			}
		})
	})
	// What the fleet view does before its first frame, on a new connection:
	// one request, the first fleet page.
	b.Run("first-frame-new-client", func(b *testing.B) {
		measure(b, "frame", func(b *testing.B) int {
			c := h.Client(b)
			fleet(b, c, "", 100, 100)
			c.CloseIdleConnections()
			return 1
		})
	})
}
