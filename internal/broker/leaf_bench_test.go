package broker

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// The leaf device numbers of docs/benchmarks.md:
//
//	go test ./internal/broker -run '^$' -bench 'Leaf' -benchtime 5000x

// BenchmarkLeafToUpstreamThroughput: a leaf device (paho) sends b.N 1 KiB
// messages without waiting for each PUBACK, routed to $upstream by
// FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId); messages/s
// until every one is acknowledged, that is durable in the queue.
func BenchmarkLeafToUpstreamThroughput(b *testing.B) {
	cfg, q := withMessages(b, 0)
	f := setup(b, fixtureOptions{config: cfg})
	f.setRoutes(b, `{"routes": {"leaves": "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream"}}`)
	leaf := f.connectChild(b, "leaf", f.addChild(b, "leaf", true))
	body := strings.Repeat("x", 1024)
	toks := make([]paho.Token, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		toks = append(toks, leaf.c.Publish("devices/leaf/messages/events/n="+strconv.Itoa(i), 1, false, body))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			b.Fatalf("no PUBACK: %v", tok.Error())
		}
	}
	el := time.Since(start)
	b.StopTimer()
	if n := (*q).Stats(UpstreamDest).Count; n != b.N {
		b.Fatalf("upstream queue holds %d, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkLeafMethodRoundTrip: InvokeDeviceMethod → the leaf's
// $iothub/methods/POST → its answer → the caller, one call at a time; p50
// and p99 (the broker's part of a service → leaf call).
func BenchmarkLeafMethodRoundTrip(b *testing.B) {
	f := setup(b, fixtureOptions{})
	leaf := f.connectChild(b, "leaf", f.addChild(b, "leaf", true))
	leaf.c.Subscribe(filterMethods, 0, func(c paho.Client, msg paho.Message) {
		_, bag, _ := strings.Cut(msg.Topic(), "/?")
		c.Publish(topicMethodRes+"200/?"+bag, 0, false, msg.Payload())
	}).Wait()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		r, err := f.broker.InvokeDeviceMethod(ctx, "leaf", "echo", []byte(`{"n":1}`), 10*time.Second, 10*time.Second)
		if err != nil || r.Status != 200 {
			b.Fatalf("echo: %+v %v", r, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}
