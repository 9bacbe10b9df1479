// Command replicabench is the load side of scripts/bench/replicas.sh and
// scripts/bench/fanout.sh: it drives running `outpost hub serve` processes
// over HTTPS with the hub's own client.
//
// -mode patch: durable desired patches per second, -clients concurrent
// clients (each on its own module twin of device "bench"), -patches in all,
// through -hub (the owner's connection string; its HostName is the address,
// a load balancer in front of replicas).
//
// -mode delivery: a device long-polls replica -b while the patches go to
// replica -a (both default to the connection string's address); prints p50
// and p99 of the time from sending a PATCH to the device's poll returning
// with it, -deliveries of them, one at a time.
//
// -mode fanout: -devices devices (made once, with one module "m" each),
// each holding a sync long poll on its own connection; then one desired
// patch on every device's module twin ("twin patch" on each, -clients at a
// time, as an operator's script would), timed until the last device's poll
// returned with it. With -pid (the hub's process id) it prints the hub's
// RSS before the devices connected, with all polls held, and the
// difference per held poll.
//
//	go run ./scripts/bench/replicabench -hub "$CS" -ca ca.pem -mode patch -clients 16 -patches 20000
//	go run ./scripts/bench/replicabench -hub "$CS" -ca ca.pem -mode delivery -a 127.0.0.1:4431 -b 127.0.0.1:4432
//	go run ./scripts/bench/replicabench -hub "$CS" -ca ca.pem -mode fanout -devices 10000 -pid PID
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
)

var (
	hubCS   = flag.String("hub", os.Getenv("OUTPOST_CONNECTION_STRING"), "the owner's connection string")
	caFile  = flag.String("ca", os.Getenv("OUTPOST_CA"), "the hub's CA certificate")
	mode    = flag.String("mode", "patch", "patch, delivery or fanout")
	clients = flag.Int("clients", 16, "concurrent clients (patch), concurrent patches (fanout)")
	patches = flag.Int("patches", 20000, "patches in all (patch)")
	addrA   = flag.String("a", "", "replica the patches go to (delivery; default: the connection string's address)")
	addrB   = flag.String("b", "", "replica the device long-polls (delivery)")
	deliv   = flag.Int("deliveries", 500, "patches timed one at a time (delivery)")
	devices = flag.Int("devices", 10000, "devices holding long polls (fanout)")
	pid     = flag.Int("pid", 0, "the hub's process id, for its RSS (fanout)")
	ctx     = context.Background()
	pool    *x509.CertPool
)

func main() {
	flag.Parse()
	if *hubCS == "" || *caFile == "" {
		log.Fatal("usage: replicabench -hub CONNECTION_STRING -ca CA.pem [-mode patch|delivery|fanout]")
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		log.Fatalf("%s: no PEM certificate", *caFile)
	}
	switch *mode {
	case "patch":
		patchRate()
	case "delivery":
		delivery()
	case "fanout":
		fanout()
	default:
		log.Fatalf("-mode %q: use patch, delivery or fanout", *mode)
	}
}

// client is a hub client for cs whose connections go to addr (the
// connection string's own address when ""): the SAS tokens and the TLS
// name stay the connection string's, as when a load balancer is between.
func client(cs, addr string) *hubclient.Client {
	parsed, err := identity.ParseConnectionString(cs)
	if err != nil {
		log.Fatal(err)
	}
	host := parsed.HostName
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(0)},
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	if addr != "" {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
	}
	c, err := hubclient.New(cs, "", hubclient.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		log.Fatal(err)
	}
	return c
}

// device makes device id (if it is not there) with module "m" and returns
// the device's connection string.
func device(c *hubclient.Client, id string) string {
	d, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: id})
	if errors.Is(err, hubclient.ErrConflict) {
		d, err = c.GetDevice(ctx, id)
	}
	if err != nil {
		log.Fatalf("device %s: %v", id, err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: id, ModuleID: "m"}); err != nil && !errors.Is(err, hubclient.ErrConflict) {
		log.Fatalf("module %s/m: %v", id, err)
	}
	cs, _ := identity.ParseConnectionString(*hubCS)
	return (&identity.ConnectionString{HostName: cs.HostName, DeviceID: id, SharedAccessKey: d.Authentication.SymmetricKey.PrimaryKey}).String()
}

func patchRate() {
	c := client(*hubCS, "")
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "bench"}); err != nil && !errors.Is(err, hubclient.ErrConflict) {
		log.Fatal(err)
	}
	for i := range *clients {
		if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "bench", ModuleID: fmt.Sprintf("m%d", i)}); err != nil && !errors.Is(err, hubclient.ErrConflict) {
			log.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *clients {
		wg.Go(func() {
			mod := fmt.Sprintf("m%d", i)
			for {
				n := next.Add(1)
				if n > int64(*patches) {
					return
				}
				if _, err := c.PatchTwin(ctx, "bench", mod, fmt.Appendf(nil, `{"properties":{"desired":{"n":%d,"interval":5}}}`, n), ""); err != nil {
					log.Fatalf("patch: %v", err)
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("clients=%d patches=%d %.0f patches/s\n", *clients, *patches, float64(*patches)/el.Seconds())
}

func delivery() {
	owner := client(*hubCS, *addrA)
	dcs := device(client(*hubCS, ""), "latency")
	dev := client(dcs, *addrB)
	s, err := dev.Sync(ctx, "latency", "", 0)
	if err != nil {
		log.Fatal(err)
	}
	cursor := s.Cursor
	lat := make([]time.Duration, 0, *deliv)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := range *deliv {
		want := fmt.Appendf(nil, `"n":"%s-%d"`, run, i)
		got := make(chan time.Time, 1)
		go func() {
			for {
				r, err := dev.Sync(ctx, "latency", cursor, 30*time.Second)
				if err != nil {
					log.Fatalf("sync through %s: %v", *addrB, err)
				}
				cursor = r.Cursor
				if slices.ContainsFunc(r.Twins, func(t json.RawMessage) bool { return bytes.Contains(t, want) }) {
					got <- time.Now()
					return
				}
			}
		}()
		time.Sleep(5 * time.Millisecond) // let the poll reach the replica and park
		sent := time.Now()
		if _, err := owner.PatchTwin(ctx, "latency", "m", fmt.Appendf(nil, `{"properties":{"desired":{%s}}}`, want), ""); err != nil {
			log.Fatalf("patch through %s: %v", *addrA, err)
		}
		lat = append(lat, (<-got).Sub(sent))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("deliveries=%d p50 %.2f ms p99 %.2f ms max %.2f ms\n", len(lat), ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1]))
}

func rss() int64 {
	if *pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", *pid))
	if err != nil {
		log.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func fanout() {
	owner := client(*hubCS, "")
	// The devices: made once (a second run finds them), 64 at a time.
	css := make([]string, *devices)
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *devices {
					return
				}
				css[i] = device(owner, fmt.Sprintf("fan-%05d", i))
			}
		})
	}
	wg.Wait()
	log.Printf("%d devices ready in %s", *devices, time.Since(t0).Round(time.Millisecond))
	owner.CloseIdleConnections()
	time.Sleep(2 * time.Second)
	before := rss()

	// Each device: a first sync, then long polls until it has the patch.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	want := fmt.Appendf(nil, `"fan":"%s"`, run)
	got := make([]time.Time, *devices)
	var polling, done atomic.Int64
	t0 = time.Now()
	for i, cs := range css {
		wg.Go(func() {
			id := fmt.Sprintf("fan-%05d", i)
			dev := client(cs, "")
			s, err := dev.Sync(ctx, id, "", 0)
			for err != nil { // a hub busy with thousands of handshakes may refuse some
				time.Sleep(100 * time.Millisecond)
				s, err = dev.Sync(ctx, id, "", 0)
			}
			cursor := s.Cursor
			polling.Add(1)
			for {
				r, err := dev.Sync(ctx, id, cursor, hubapi.MaxWait)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				cursor = r.Cursor
				if slices.ContainsFunc(r.Twins, func(t json.RawMessage) bool { return bytes.Contains(t, want) }) {
					got[i] = time.Now()
					done.Add(1)
					return
				}
			}
		})
	}
	for polling.Load() < int64(*devices) {
		time.Sleep(100 * time.Millisecond)
	}
	// Wait until the hub holds every poll. Polls end after 60 s and are
	// renewed at once, so when connecting took longer a few may be between
	// two polls at any moment: after 10 s at 99 % or more, go on (a device
	// between polls gets the patch from its next one, by its cursor).
	var held int64
	var since time.Time
	for ; ; time.Sleep(200 * time.Millisecond) {
		st, err := owner.Status(ctx)
		if err != nil {
			log.Fatal(err)
		}
		held = st.LongPolls
		if held >= int64(*devices) {
			break
		}
		if held*100 < int64(*devices)*99 {
			since = time.Time{}
		} else if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) > 10*time.Second {
			break
		}
	}
	log.Printf("%d long polls held, %s after the first device connected", held, time.Since(t0).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	heldRSS := rss()

	// One desired patch on every device's module twin.
	sent := time.Now()
	next.Store(0)
	var pw sync.WaitGroup
	for range *clients {
		pw.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *devices {
					return
				}
				if _, err := owner.PatchTwin(ctx, fmt.Sprintf("fan-%05d", i), "m", fmt.Appendf(nil, `{"properties":{"desired":{%s}}}`, want), ""); err != nil {
					log.Fatalf("patch: %v", err)
				}
			}
		})
	}
	pw.Wait()
	patched := time.Since(sent)
	wg.Wait()
	last := slices.MaxFunc(got, func(a, b time.Time) int { return a.Compare(b) })
	fmt.Printf("devices=%d all patches answered %.2f s; last device has its patch %.2f s after the first patch was sent\n",
		*devices, patched.Seconds(), last.Sub(sent).Seconds())
	if *pid != 0 {
		fmt.Printf("hub RSS %d MB before the polls, %d MB with %d polls held: %.1f KB a held poll\n",
			before>>20, heldRSS>>20, *devices, float64(heldRSS-before)/1024/float64(*devices))
	}
}
