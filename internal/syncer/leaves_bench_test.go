package syncer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// BenchmarkLeafUpload is scripts/bench/leaves.sh's bottleneck in one
// process: an edge device with 1,000 children (leaf devices) on a real hub,
// and its syncer running (sync long poll and upload, as in the daemon).
//
//   - drain: 20 reported patches per child queued while the syncer is not
//     running (20,000, as after 20 s offline), then Run; from Run until the
//     outbox is empty. Reported as uploaded patches/s.
//
//   - online: the syncer running, the 1,000 children reporting once a second
//     each (paced, 1,000 patches/s in all) for 10 s; reported: the outbox's
//     deepest, its depth when the load stops, and how long it then takes to
//     drain; and a desired patch to 100 of the children 5 s into the load:
//     from each PATCH at the hub until the child's local twin has it
//     (p50, p99; polled every 10 ms).
//
//     go test ./internal/syncer -run '^$' -bench LeafUpload -benchtime 1x
func BenchmarkLeafUpload(b *testing.B) {
	const leaves = 1000
	b.Run("drain", func(b *testing.B) {
		const each = 20
		var took time.Duration
		for range b.N {
			b.StopTimer()
			_, s, ids := benchLeaves(b, leaves)
			parallelReports(b, s, ids, each)
			if ob, _ := s.Outbox(); ob.Patches != leaves*each {
				b.Fatalf("outbox before the run: %+v", ob)
			}
			b.StartTimer()
			start := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			waitOutbox(b, s, 0, 10*time.Minute)
			took += time.Since(start)
			b.StopTimer()
			cancel()
			<-done
		}
		b.ReportMetric(float64(b.N*leaves*each)/took.Seconds(), "patches/s")
	})
	b.Run("online", func(b *testing.B) {
		const window = 10 * time.Second
		var deepest, atEnd int
		var drain time.Duration
		var lat []time.Duration
		for range b.N {
			b.StopTimer()
			h, s, ids := benchLeaves(b, leaves)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			// A desired patch to each of the first 100 children, 5 s into the
			// load (16 at a time, as leaves.sh makes them), timed until the
			// syncer has it in the child's local twin.
			const desired = 100
			sentAt := make([]time.Time, desired)
			got := make(chan time.Duration, desired)
			var smu sync.Mutex
			go func() { // the syncer's local twins, every 10 ms (its watchers may drop a change)
				seen := make([]bool, desired)
				for n := 0; n < desired && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
					for i := range desired {
						smu.Lock()
						at := sentAt[i]
						smu.Unlock()
						if seen[i] || at.IsZero() {
							continue
						}
						if tw, err := s.ChildTwin(ids[i]); err == nil && tw.DesiredVersion() >= 2 {
							seen[i], n = true, n+1
							got <- time.Since(at)
						}
					}
				}
			}()
			go func() {
				time.Sleep(5 * time.Second)
				svc := h.Client(b)
				sem := make(chan struct{}, 16)
				for i := range desired {
					sem <- struct{}{}
					go func() {
						defer func() { <-sem }()
						smu.Lock()
						sentAt[i] = time.Now()
						smu.Unlock()
						if _, err := svc.PatchTwin(ctx, ids[i], "", []byte(`{"properties":{"desired":{"bench":1}}}`), ""); err != nil && ctx.Err() == nil {
							b.Error(err)
						}
					}()
				}
			}()
			b.StartTimer()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() { deepest = max(deepest, sampleDeepest(s, stop)) })
			var load sync.WaitGroup
			for i, id := range ids {
				load.Go(func() {
					// Each child once a second, the children spread over the second.
					time.Sleep(time.Duration(i) * time.Second / leaves)
					tick := time.NewTicker(time.Second)
					defer tick.Stop()
					for k := 0; k < int(window/time.Second); k++ {
						if _, err := s.PatchChildReported(id, fmt.Appendf(nil, `{"seq":%d}`, k)); err != nil {
							b.Error(err)
							return
						}
						<-tick.C
					}
				})
			}
			load.Wait()
			ob, _ := s.Outbox()
			atEnd = max(atEnd, ob.Patches)
			start := time.Now()
			waitOutbox(b, s, 0, 10*time.Minute)
			drain = max(drain, time.Since(start))
			close(stop)
			wg.Wait()
			b.StopTimer()
			timeout := time.After(time.Minute)
			for range desired {
				select {
				case d := <-got:
					lat = append(lat, d)
				case <-timeout:
					b.Fatalf("%d of %d desired changes reached the syncer within a minute", len(lat), desired)
				}
			}
			cancel()
			<-done
		}
		slices.Sort(lat)
		b.ReportMetric(lat[len(lat)/2].Seconds()*1000, "desired_p50_ms")
		b.ReportMetric(lat[len(lat)*99/100].Seconds()*1000, "desired_p99_ms")
		b.ReportMetric(float64(deepest), "deepest")
		b.ReportMetric(float64(atEnd), "depth_at_end")
		b.ReportMetric(drain.Seconds(), "s_drain")
	})
}

// benchLeaves starts a hub with edge device d and n children leaf0, leaf1,
// …, and a syncer for d, not run, that has synced once.
func benchLeaves(b *testing.B, n int) (*hubtest.Hub, *Syncer, []string) {
	b.Helper()
	h := hubtest.Start(b, hubtest.Options{})
	c := h.Client(b)
	d, err := c.CreateDevice(b.Context(), hubapi.Device{DeviceID: "d", Capabilities: &hubapi.Capabilities{IoTEdge: true}})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = fmt.Sprintf("leaf%d", i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := c.CreateDevice(b.Context(), hubapi.Device{DeviceID: ids[i], DeviceScope: d.DeviceScope, Capabilities: &hubapi.Capabilities{}}); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	device := h.ClientFor(b, h.DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey))
	f := &fixture{storeDir: b.TempDir()}
	s, err := New(device, f.openStore(b), "d")
	if err != nil {
		b.Fatal(err)
	}
	resp, err := device.Sync(b.Context(), "d", "", 0)
	if err != nil {
		b.Fatal(err)
	}
	if len(resp.Children) != n {
		b.Fatalf("first sync: %d children, want %d", len(resp.Children), n)
	}
	if err := s.apply(resp); err != nil {
		b.Fatal(err)
	}
	return h, s, ids
}

// parallelReports reports each patches for each child of ids, a writer per
// child, all at once.
func parallelReports(b *testing.B, s *Syncer, ids []string, each int) {
	b.Helper()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for j := range each {
				if _, err := s.PatchChildReported(id, fmt.Appendf(nil, `{"seq":%d}`, j)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// waitOutbox waits until the outbox holds at most n patches.
func waitOutbox(b *testing.B, s *Syncer, n int, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for {
		c := s.StatusChanged()
		ob, _ := s.Outbox()
		if ob.Patches <= n {
			return
		}
		select {
		case <-c:
		case <-time.After(time.Until(deadline)):
			b.Fatalf("outbox still holds %d patches after %s", ob.Patches, limit)
		}
	}
}

// sampleDeepest returns the deepest the outbox was, sampled every 100 ms,
// until stop is closed.
func sampleDeepest(s *Syncer, stop <-chan struct{}) int {
	deepest := 0
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ob, _ := s.Outbox()
		deepest = max(deepest, ob.Patches)
		select {
		case <-stop:
			return deepest
		case <-t.C:
		}
	}
}
