package moduleclient_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// TestOnMethod: a call made at the hub reaches the module's OnMethod
// handler through the daemon, with its payload, and the handler's status
// and result come back to the caller; a method without a handler is
// answered 501; the handler keeps answering after the client reconnects
// (a new token).
func TestOnMethod(t *testing.T) {
	d := newDevice(t)
	c := d.connect(t)
	got := make(chan json.RawMessage, 4)
	if err := c.OnMethod("reboot", func(_ context.Context, payload json.RawMessage) (int, any) {
		got <- payload
		return 202, map[string]any{"accepted": true}
	}); err != nil {
		t.Fatal(err)
	}
	call := func(method string, payload string) (*hubapi.MethodResult, error) {
		conn := 10 // the subscription may be on its way
		return d.f.Owner.InvokeMethod(t.Context(), d.f.DeviceID, d.module, hubapi.MethodRequest{
			MethodName: method, Payload: json.RawMessage(payload), ConnectTimeoutInSeconds: &conn})
	}
	res, err := call("reboot", `{"delay":2}`)
	if err != nil || res.Status != 202 || string(res.Payload) != `{"accepted":true}` {
		t.Fatalf("reboot: %+v %v", res, err)
	}
	if p := <-got; string(p) != `{"delay":2}` {
		t.Fatalf("handler's payload %s", p)
	}
	res, err = call("nosuch", "null")
	if err != nil || res.Status != 501 {
		t.Fatalf("a method without a handler: %+v %v", res, err)
	}

	// The daemon restarts: the client connects again, subscribed again.
	d.stop()
	d.start(t, nil)
	res, err = call("reboot", `null`)
	if err != nil || res.Status != 202 {
		t.Fatalf("reboot after the daemon restarted: %+v %v", res, err)
	}
	if p := <-got; string(p) != "null" {
		t.Fatalf("handler's payload %s, want null", p)
	}
}

// BenchmarkMethodRoundTrip measures a direct method from the service to a
// module and back: POST /twins/{d}/modules/{m}/methods at the hub, handed
// to the daemon in its long poll, published by its broker to the Go SDK's
// OnMethod handler, whose answer goes back the same way. Run with
// -benchtime=1000x for p50/p99 over 1,000 calls:
//
//	go test ./sdk/moduleclient -run '^$' -bench MethodRoundTrip -benchtime=1000x
func BenchmarkMethodRoundTrip(b *testing.B) {
	d := newDevice(b)
	c := d.connect(b)
	if err := c.OnMethod("echo", func(_ context.Context, payload json.RawMessage) (int, any) {
		return 200, payload
	}); err != nil {
		b.Fatal(err)
	}
	conn := 10
	req := hubapi.MethodRequest{MethodName: "echo", Payload: json.RawMessage(`{"n":1}`), ConnectTimeoutInSeconds: &conn}
	if _, err := d.f.Owner.InvokeMethod(b.Context(), d.f.DeviceID, d.module, req); err != nil { // subscribed, connections warm
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		res, err := d.f.Owner.InvokeMethod(b.Context(), d.f.DeviceID, d.module, req)
		if err != nil || res.Status != 200 {
			b.Fatalf("echo: %+v %v", res, err)
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
