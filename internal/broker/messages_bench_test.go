package broker

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/cputime"
)

// The message numbers of docs/benchmarks.md:
//
//	go test ./internal/broker -run '^$' -bench 'ModuleToModule' -benchtime 5000x
//
// 1 KiB messages from module a's output through a route to module b's
// input, each durable in the message queue (fdatasync) before a's PUBACK.

// BenchmarkModuleToModuleLatency: one message at a time, a's publish → b's
// callback; p50 and p99.
func BenchmarkModuleToModuleLatency(b *testing.B) {
	_, a, m := benchRouted(b)
	body := strings.Repeat("x", 1024)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		tok := a.c.Publish(events("a", "$.on=out1&n="+strconv.Itoa(i)), 1, false, body)
		for {
			msg := m.next(b)
			if strings.Contains(msg.Topic(), "&n="+strconv.Itoa(i)) || strings.HasSuffix(msg.Topic(), "n="+strconv.Itoa(i)) {
				break
			}
		}
		lat = append(lat, time.Since(start))
		tok.Wait()
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkModuleToModuleThroughput: a sends b.N messages without waiting
// for each PUBACK (as the Azure SDKs do); messages/s until b has them all,
// and the CPU time of the whole process (broker and both paho clients) per
// message, which says more than the rate on a machine shared with other
// jobs.
func BenchmarkModuleToModuleThroughput(b *testing.B) {
	_, a, m := benchRouted(b)
	body := strings.Repeat("x", 1024)
	b.ResetTimer()
	start, cpu := time.Now(), cputime.Self()
	go func() {
		for i := range b.N {
			a.c.Publish(events("a", "$.on=out1&n="+strconv.Itoa(i)), 1, false, body)
		}
	}()
	for i := range b.N {
		select {
		case <-m.msgs:
		case <-time.After(20 * time.Second):
			b.Fatalf("b has %d of %d messages after 20 s without one", i, b.N)
		}
	}
	el, cpu := time.Since(start), cputime.Self()-cpu
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu_us/msg")
	}
}

func benchRouted(b *testing.B) (*fixture, *module, *module) {
	cfg, _ := withMessages(b, 0)
	f := setup(b, fixtureOptions{config: cfg})
	f.desiredAtDevice(b, HubModuleID, `{"routes": {"ab": "FROM /messages/modules/a/outputs/out1 INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")"}}`)
	eventually(b, "the routes", func() bool { rt := f.broker.msg.routing.Load(); return rt != nil && len(rt.routes) == 1 })
	a := f.connectModule(b, "a")
	m := f.connectModule(b, "b")
	m.subscribe(b, inputs(f, "b"))
	return f, a, m
}
