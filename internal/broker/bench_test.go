package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The numbers of docs/benchmarks.md:
//
//	go test ./internal/broker -run '^$' -bench . -benchtime 1000x
//
// Each reports p50 and p99 (ms) or patches/s as custom metrics.

// BenchmarkDesiredToModule: a desired patch at the hub → the paho
// subscriber's callback, through the syncer's long poll and the broker.
func BenchmarkDesiredToModule(b *testing.B) {
	f := setup(b, fixtureOptions{})
	a := f.connectModule(b, "a")
	a.get(b)
	benchDesired(b, f, func() map[string]any {
		_, patch := a.nextDesired(b)
		return patch
	})
}

// benchDesired patches module a's desired properties at the hub b.N times,
// one after another, each time until next (the module's next desired
// patch) returns it, and reports the latencies.
func benchDesired(b *testing.B, f *fixture, next func() map[string]any) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		f.hubDesired(b, "a", fmt.Sprintf(`{"seq":%d}`, i))
		for next()["seq"] != float64(i) { // an earlier patch: skip it
			continue
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkReportedToHub: a reported patch from a module → visible at the
// hub (polled every millisecond), one at a time.
func BenchmarkReportedToHub(b *testing.B) {
	f := setup(b, fixtureOptions{})
	a := f.connectModule(b, "a")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		topic, body := a.request(b, topicPatch, fmt.Appendf(nil, `{"seq":%d}`, i))
		if !strings.Contains(topic, "/204/") {
			b.Fatalf("patch answered on %s: %s", topic, body)
		}
		want := json.Number(fmt.Sprint(i))
		for {
			tw, err := f.owner.GetTwin(context.Background(), "d", "a")
			if err != nil {
				b.Fatal(err)
			}
			if tw.Reported()["seq"] == want {
				break
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkReportedThroughput: 10 modules report as fast as the broker
// acknowledges, each with up to 8 patches in flight (each 204 comes only
// once its patch is durable); b.N patches in all.
func BenchmarkReportedThroughput(b *testing.B) {
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%d", i)
	}
	f := setup(b, fixtureOptions{modules: ids})
	mods := make([]*module, len(ids))
	for i, id := range ids {
		mods[i] = f.connectModule(b, id)
	}
	const window = 8
	var wg sync.WaitGroup
	errs := make(chan error, len(mods))
	b.ResetTimer()
	start := time.Now()
	for i, m := range mods {
		n := b.N / len(mods)
		if i < b.N%len(mods) {
			n++
		}
		slots := make(chan struct{}, window)
		wg.Go(func() { // answers
			for got := 0; got < n; {
				select {
				case msg := <-m.msgs:
					if strings.HasPrefix(msg.Topic(), topicDesired) {
						continue // the full desired, on subscribing
					}
					got++
					if !strings.Contains(msg.Topic(), "/204/") {
						errs <- fmt.Errorf("patch answered on %s: %s", msg.Topic(), msg.Payload())
						return
					}
				case <-time.After(20 * time.Second):
					errs <- fmt.Errorf("no answer within 20 s")
					return
				}
				<-slots
			}
		})
		wg.Go(func() { // requests
			for j := range n {
				slots <- struct{}{}
				m.c.Publish(topicPatch+"?$rid="+fmt.Sprint(j+1), 1, false, fmt.Appendf(nil, `{"seq":%d}`, j))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "patches/s")
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

// BenchmarkSyncerPatchReported is the floor under
// BenchmarkReportedThroughput: the same patches from 10 goroutines straight
// into the syncer, without MQTT.
func BenchmarkSyncerPatchReported(b *testing.B) {
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%d", i)
	}
	f := setup(b, fixtureOptions{modules: ids})
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, id := range ids {
		n := b.N / len(ids)
		if i < b.N%len(ids) {
			n++
		}
		wg.Go(func() {
			for j := range n {
				if _, err := f.syncer.PatchReported(id, fmt.Appendf(nil, `{"seq":%d}`, j)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "patches/s")
}
