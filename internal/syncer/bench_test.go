package syncer

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// BenchmarkOfflineCatchUp: 10 modules queue 10,000 reported patches (1,000
// each, 10 writers at once) while the hub is down; the hub comes back and
// Flush sends them all. Reported: how long the catch-up took (s/10k, from
// the hub's start to the last ack) and the queueing rate offline.
//
//	go test ./internal/syncer -run '^$' -bench OfflineCatchUp -benchtime 3x
func BenchmarkOfflineCatchUp(b *testing.B) {
	const modules, each = 10, 1000
	var catchUp, queue time.Duration
	for range b.N {
		b.StopTimer()
		h, hubData, s, ids := benchSyncer(b, modules)
		addr := h.Addr().String()
		h.Stop()

		start := time.Now()
		queueEach(b, s, ids, each)
		queue += time.Since(start)
		if st, err := s.Status(); err != nil || st.Outbox.Patches != modules*each {
			b.Fatalf("outbox offline: %+v %v", st.Outbox, err)
		}

		h2 := hubtest.Start(b, hubtest.Options{DataDir: hubData, Listen: addr})
		b.StartTimer()
		start = time.Now()
		if err := s.Flush(b.Context()); err != nil {
			b.Fatal(err)
		}
		catchUp += time.Since(start)
		b.StopTimer()
		for _, id := range ids {
			tw, err := h2.Client(b).GetTwin(b.Context(), "d", id)
			if err != nil || fmt.Sprint(tw.Reported()["seq"]) != fmt.Sprint(each-1) {
				b.Fatalf("hub twin %s after the catch-up: %s %v", id, tw.ReportedJSON(), err)
			}
		}
		if st, _ := s.Status(); st.Outbox.Patches != 0 {
			b.Fatalf("outbox after the catch-up: %+v", st.Outbox)
		}
	}
	b.ReportMetric(catchUp.Seconds()/float64(b.N), "s/10k")
	b.ReportMetric(float64(b.N*modules*each)/queue.Seconds(), "queued/s")
}

// benchSyncer starts a hub with device d and modules m0, m1, … (n of
// them), and a syncer for d, not run, that has synced once; it returns the
// hub, its data dir, the syncer and the module ids.
func benchSyncer(b *testing.B, n int) (h *hubtest.Hub, hubData string, s *Syncer, ids []string) {
	b.Helper()
	hubData = b.TempDir()
	h = hubtest.Start(b, hubtest.Options{DataDir: hubData})
	c := h.Client(b)
	d, err := c.CreateDevice(b.Context(), hubapi.Device{DeviceID: "d"})
	if err != nil {
		b.Fatal(err)
	}
	ids = make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%d", i)
		if _, err := c.CreateModule(b.Context(), hubapi.Module{DeviceID: "d", ModuleID: ids[i]}); err != nil {
			b.Fatal(err)
		}
	}
	device := h.ClientFor(b, h.DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey))
	f := &fixture{storeDir: b.TempDir()}
	if s, err = New(device, f.openStore(b), "d"); err != nil {
		b.Fatal(err)
	}
	resp, err := device.Sync(b.Context(), "d", "", 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.apply(resp); err != nil {
		b.Fatal(err)
	}
	return h, hubData, s, ids
}

// queueEach reports each patches for each module of ids, a writer per
// module, all at once.
func queueEach(b *testing.B, s *Syncer, ids []string, each int) {
	b.Helper()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for j := range each {
				if _, err := s.PatchReported(id, fmt.Appendf(nil, `{"seq":%d,"module":%q}`, j, id)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
