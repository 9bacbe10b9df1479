package hub_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/cputime"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// BenchmarkTwinPatch measures durable desired patches per second through
// HTTPS with 1, 16, 64 and 256 concurrent clients, each on its own twin.
//
//	go test ./internal/hub -run '^$' -bench TwinPatch -benchtime 4000x
func BenchmarkTwinPatch(b *testing.B) {
	for _, clients := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			procsAsHubServe(b)
			h := hubtest.Start(b, hubtest.Options{})
			c := h.Client(b)
			if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "bench"}); err != nil {
				b.Fatal(err)
			}
			// The modules are made by the clients at once, so that each has
			// its connection (and TLS handshake) before the timer starts: the
			// benchmark measures connected clients, as a service's are.
			connectThenPatch(b, clients, "patch", "patches", func(mod string) error {
				_, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "bench", ModuleID: mod})
				return err
			}, func(mod string, patch []byte) error {
				_, err := c.PatchTwin(ctx, "bench", mod, patch, "")
				return err
			})
		})
	}
}

// BenchmarkTwinGet measures twin reads per second with 16 clients.
func BenchmarkTwinGet(b *testing.B) {
	h := hubtest.Start(b, hubtest.Options{})
	c := h.Client(b)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "bench"}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "bench", ModuleID: "m"}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.PatchTwin(ctx, "bench", "m", []byte(`{"properties":{"desired":{"interval":5,"units":"C"}}}`), ""); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(8) // 16 goroutines on 2 cores
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.GetTwin(ctx, "bench", "m"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "gets/s")
}

// BenchmarkDesiredDelivery measures how long a desired patch takes to reach
// a device parked in a sync long poll: from sending the PATCH to the
// device's poll returning with it. It reports p50 and p99.
//
//	go test ./internal/hub -run '^$' -bench DesiredDelivery -benchtime 1000x
func BenchmarkDesiredDelivery(b *testing.B) {
	h := hubtest.Start(b, hubtest.Options{})
	c := h.Client(b)
	d, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "bench", ModuleID: "m"}); err != nil {
		b.Fatal(err)
	}
	dc := h.ClientFor(b, h.DeviceConnectionString("bench", "", d.Authentication.SymmetricKey.PrimaryKey))
	s, err := dc.Sync(ctx, "bench", "", 0)
	if err != nil {
		b.Fatal(err)
	}
	cursor := s.Cursor
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		got := make(chan time.Time, 1)
		parked := make(chan struct{})
		go func() {
			close(parked)
			r, err := dc.Sync(ctx, "bench", cursor, 30*time.Second)
			if err != nil {
				b.Error(err)
			} else {
				cursor = r.Cursor
			}
			got <- time.Now()
		}()
		<-parked
		time.Sleep(2 * time.Millisecond) // let the request reach the hub and park
		sent := time.Now()
		if _, err := c.PatchTwin(ctx, "bench", "m", fmt.Appendf(nil, `{"properties":{"desired":{"n":%d}}}`, i), ""); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-got).Sub(sent))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkBareHTTPSPut is the floor under BenchmarkTwinPatch: the same
// clients, connections and store with none of the hub. An HTTPS server
// (net/http, TLS 1.3, HTTP/1.1 kept alive, as the hub serves) whose handler
// reads the body, makes it one durable Put in a file store and answers 600
// bytes of JSON; as many clients on their own keys, through a net/http
// client set up as hubclient's. Compare BenchmarkTwinPatch with this, and this
// with the store's BenchmarkPut16Writers: what HTTPS and a client in the same
// process cost a durable write on this machine, whatever the hub does.
func BenchmarkBareHTTPSPut(b *testing.B) {
	answer := []byte(`{"deviceId":"bench","moduleId":"m0","etag":"AAAAAAAAAAE=","version":2,"properties":{"desired":{"n":1,"interval":5,"$metadata":{"$lastUpdated":"2026-12-03T10:00:00.0000000Z"},"$version":2},"reported":{"$metadata":{"$lastUpdated":"2026-12-03T10:00:00.0000000Z"},"$version":1}}}`)
	answer = append(answer, bytes.Repeat([]byte(" "), max(0, 600-len(answer)))...)
	for _, clients := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			procsAsHubServe(b)
			st, err := store.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				if err == nil {
					_, err = st.Put("twins/bench/"+r.URL.Query().Get("m"), body, store.Any)
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
				w.Write(answer)
			}))
			srv.EnableHTTP2 = false
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut by Close at the end
			srv.StartTLS()
			defer srv.Close()
			tr := srv.Client().Transport.(*http.Transport)
			tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 1024
			tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(0)
			hc := &http.Client{Transport: tr}
			put := func(mod string, body []byte) error {
				req, err := http.NewRequest(http.MethodPatch, srv.URL+"/twins/bench/modules?m="+mod, bytes.NewReader(body))
				if err != nil {
					return err
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("status %s", resp.Status)
				}
				return nil
			}
			connectThenPatch(b, clients, "put", "puts", func(mod string) error {
				return put(mod, []byte(`{}`))
			}, put)
		})
	}
}

// procsAsHubServe runs the rest of benchmark b with the Ps `hub serve` on
// the file store gives itself (store.UseProcs). Set
// in each sub-benchmark: the testing package runs a sub-benchmark's timed
// rounds after its parent's function has returned.
func procsAsHubServe(b *testing.B) {
	b.Cleanup(store.UseProcs())
}

// connectThenPatch runs connect for each of clients modules ("m0", "m1", …)
// at once, so that every client has its connection before the timer starts,
// then b.N desired patches with each client on its own module, and reports
// whats/s and the process's CPU per what (server and client together; on a
// machine shared with other jobs it says what one costs better than the rate).
func connectThenPatch(b *testing.B, clients int, what, whats string, connect func(mod string) error, patch func(mod string, patch []byte) error) {
	var made sync.WaitGroup
	for i := range clients {
		made.Go(func() {
			if err := connect(fmt.Sprintf("m%d", i)); err != nil {
				b.Error(err)
			}
		})
	}
	made.Wait()
	if b.Failed() {
		return
	}
	var next atomic.Int64
	b.ResetTimer()
	start, cpu := time.Now(), cputime.Self()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			mod := fmt.Sprintf("m%d", i)
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				if err := patch(mod, fmt.Appendf(nil, `{"properties":{"desired":{"n":%d,"interval":5}}}`, n)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), whats+"/s")
	b.ReportMetric(float64((cputime.Self()-cpu).Microseconds())/float64(b.N), "cpu-us/"+what)
}
