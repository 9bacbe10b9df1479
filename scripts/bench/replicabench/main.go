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
// returned with it. The devices connect to the connection string's address,
// or, with -lbs (load balancers' addresses), to each in turn. The polls held
// are counted by asking each of -replicas (replicas' addresses; default: the
// connection string's address) for its status. With -pid (the hub's process
// id, or the replicas', comma-separated) it prints each one's RSS before the
// devices connected, with all polls held, and the difference per held poll,
// and their sum; -lbpid likewise for the load balancers. A device that has
// not had its patch 150 s after the last PATCH was answered (two poll
// lifetimes and more) is counted lost, and the run fails naming some. A
// device retries a failed sync as internal/syncer does (-retry). With
// -device-cpu N at most N devices compute their side of a TLS handshake at
// once (trace.go: as if each had its own CPU). -errlog FILE gets one line a
// failed device request saying where it failed; a new connection the hub
// closed at its limits on a slow device is counted apart from errors.
//
//	go run ./scripts/bench/replicabench -hub "$CS" -ca ca.pem -mode patch -clients 16 -patches 20000
//	go run ./scripts/bench/replicabench -hub "$CS" -ca ca.pem -mode delivery -a 127.0.0.1:4431 -b 127.0.0.1:4432
//	go run ./scripts/bench/replicabench -hub "$CS" -ca ca.pem -mode fanout -devices 10000 -pid PID
//	go run ./scripts/bench/replicabench -hub "$CS" -ca ca.pem -mode fanout -devices 10000 \
//		-lbs 127.0.0.1:4430,127.0.0.1:4440 -replicas 127.0.0.1:4431,127.0.0.1:4432 -pid PID1,PID2 -lbpid PID3,PID4
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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/errdefs"
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
	pids    = flag.String("pid", "", "the hub's process id, or its replicas' (comma-separated), for their RSS (fanout)")
	lbPids  = flag.String("lbpid", "", "the load balancers' process ids (comma-separated), for their RSS (fanout)")
	lbs     = flag.String("lbs", "", "addresses the devices connect to, in turn (fanout; default: the connection string's)")
	reps    = flag.String("replicas", "", "the replicas' addresses, asked for the polls they hold (fanout; default: the connection string's)")
	devCPU  = flag.Int("device-cpu", 0, "the devices' TLS handshakes computing at once in this program (fanout; 0: all at once, each device's goroutine sharing the cores with all others)")
	retry   = flag.String("retry", "jitter", "how a device waits after an error: jitter (as internal/syncer) or fixed (100 ms)")
	errFile = flag.String("errlog", "", "a file for one line per failed device request: when, which, where it failed (fanout)")
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
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		if addr != "" {
			a = addr
		}
		c, err := d.DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		if t, ok := ctx.Value(traceKey{}).(*reqTrace); ok {
			t.mu.Lock()
			t.local = c.LocalAddr().String()
			t.mu.Unlock()
		}
		if cpuSlots != nil {
			c = &slotted{Conn: c}
		}
		return c, nil
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

// list is the comma-separated items of v.
func list(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// rss is process pid's resident set size in bytes.
func rss(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		log.Fatalf("process %s: %v (is the hub still running?)", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// rssAll is rss of each of pids.
func rssAll(pids []string) []int64 {
	r := make([]int64, len(pids))
	for i, p := range pids {
		r[i] = rss(p)
	}
	return r
}

// printRSS prints each process's RSS before and after, the difference a held
// poll, and, for more than one, the sums.
func printRSS(what string, pids []string, before, after []int64, polls []int64) {
	var sb, sa int64
	for i, p := range pids {
		line := fmt.Sprintf("%s %d (pid %s) RSS %d MB before the polls, %d MB with them held", what, i+1, p, before[i]>>20, after[i]>>20)
		if polls != nil {
			n := polls[i]
			if len(pids) == 1 {
				n = int64(*devices) // every device's connection, a few between two polls
			}
			line += fmt.Sprintf(" (%d polls): %.1f KB a held poll", polls[i], float64(after[i]-before[i])/1024/float64(max(n, 1)))
		}
		fmt.Println(line)
		sb += before[i]
		sa += after[i]
	}
	if len(pids) > 1 || polls == nil {
		fmt.Printf("%s RSS summed: %d MB before the polls, %d MB with %d polls held: %.1f KB a held poll\n",
			what, sb>>20, sa>>20, *devices, float64(sa-sb)/1024/float64(*devices))
	}
}

// heldPolls is the sync long polls each of replicas (owner's address when
// none) holds now.
func heldPolls(owner *hubclient.Client, replicas []*hubclient.Client) []int64 {
	if len(replicas) == 0 {
		replicas = []*hubclient.Client{owner}
	}
	n := make([]int64, len(replicas))
	for i, c := range replicas {
		st, err := c.Status(ctx)
		if err != nil {
			log.Fatalf("status of replica %d: %v", i+1, err)
		}
		n[i] = st.LongPolls
	}
	return n
}

// errLog is -errlog, when given.
var errLog detailLog

// detailLog writes lines to a file, if it has one.
type detailLog struct {
	mu sync.Mutex
	f  *os.File
}

func (l *detailLog) printf(format string, args ...any) {
	if l.f == nil {
		return
	}
	l.mu.Lock()
	fmt.Fprintf(l.f, format+"\n", args...)
	l.mu.Unlock()
}

// cutError is a connection the hub closed at one of its limits because the
// simulated device was slow (reqTrace.cut): counted apart from errors.
type cutError struct{ why string }

func (e *cutError) Error() string { return e.why }

var deviceIDs = regexp.MustCompile(`fan-[0-9]{5}`)

// errorCount counts errors by message (a few kinds, each many times).
type errorCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *errorCount) add(err error) {
	msg := deviceIDs.ReplaceAllString(err.Error(), "fan-N") // one kind, whichever device
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	e.mu.Lock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[msg]++
	e.mu.Unlock()
}

// report prints the counts, most frequent first, and empties them.
func (e *errorCount) report(what string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	type kv struct {
		msg string
		n   int
	}
	var all []kv
	total := 0
	for m, n := range e.n {
		all = append(all, kv{m, n})
		total += n
	}
	e.n = nil
	if total == 0 {
		fmt.Printf("%s: no errors\n", what)
		return
	}
	slices.SortFunc(all, func(a, b kv) int { return b.n - a.n })
	cut := 0
	for _, x := range all {
		if strings.HasPrefix(x.msg, "cut by the hub") {
			cut += x.n
		}
	}
	fmt.Printf("%s: %d errors and %d connections cut by the hub as the device was slow (all retried)\n", what, total-cut, cut)
	for _, x := range all[:min(len(all), 5)] {
		fmt.Printf("  %d× %s\n", x.n, x.msg)
	}
}

func fanout() {
	owner := client(*hubCS, "")
	var replicas []*hubclient.Client
	for _, a := range list(*reps) {
		replicas = append(replicas, client(*hubCS, a))
	}
	entry := list(*lbs)
	if len(entry) == 0 {
		entry = []string{""}
	}
	hubPids, lbPidList := list(*pids), list(*lbPids)
	if *devCPU > 0 {
		cpuSlots = make(chan struct{}, *devCPU)
	}
	if *errFile != "" {
		f, err := os.Create(*errFile)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		errLog.f = f
	}
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
	before, lbBefore := rssAll(hubPids), rssAll(lbPidList)

	// Each device: a first sync, then long polls until it has the patch.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	want := fmt.Appendf(nil, `"fan":"%s"`, run)
	got := make([]time.Time, *devices)
	var polling, done atomic.Int64
	var connectErrs, pollErrs, patchErrs errorCount
	var patching atomic.Bool
	t0 = time.Now()
	for i, cs := range css {
		wg.Go(func() {
			id := fmt.Sprintf("fan-%05d", i)
			dev := client(cs, entry[i%len(entry)])
			sync := func(cursor string, wait time.Duration, what string) (*hubapi.Sync, error) {
				tctx, tr := traced(ctx)
				s, err := dev.Sync(tctx, id, cursor, wait)
				if err != nil {
					errLog.printf("%.3f s %s %s from %s: %s: %v", time.Since(t0).Seconds(), id, what, tr.local, tr.stage(), err)
					if c := tr.cut(err); c != "" {
						return s, &cutError{c}
					}
				}
				return s, err
			}
			// As internal/syncer: a sync that answers at once first (and
			// after every error), then long polls; after an error, wait
			// hubclient.Jitter of a back-off from 1 s doubling to 30 s (or,
			// with -retry fixed, 100 ms as this program did before).
			var cursor string
			connected, counted := false, false
			backoff := time.Second
			for {
				wait, what := hubapi.MaxWait, "long poll"
				if cursor == "" || !connected {
					wait, what = 0, "first sync"
				}
				r, err := sync(cursor, wait, what)
				if err != nil {
					if patching.Load() {
						pollErrs.add(err)
					} else {
						connectErrs.add(err)
					}
					connected = false
					if *retry == "fixed" {
						time.Sleep(100 * time.Millisecond)
					} else {
						time.Sleep(hubclient.Jitter(backoff))
						backoff = min(2*backoff, 30*time.Second)
					}
					continue
				}
				backoff, connected = time.Second, true
				if !counted {
					counted = true
					polling.Add(1)
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
	var perReplica []int64
	var since time.Time
	for ; ; time.Sleep(200 * time.Millisecond) {
		perReplica = heldPolls(owner, replicas)
		held = 0
		for _, n := range perReplica {
			held += n
		}
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
	log.Printf("%d long polls held %v, %s after the first device connected", held, perReplica, time.Since(t0).Round(time.Millisecond))
	connectErrs.report("connecting and holding the polls")
	time.Sleep(2 * time.Second)
	heldRSS, lbHeld := rssAll(hubPids), rssAll(lbPidList)
	perReplica = heldPolls(owner, replicas)

	// One desired patch on every device's module twin.
	patching.Store(true)
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
				// A replica that answers 503 (etcd too slow for its 5 s) or a
				// connection cut is retried, as an operator's script would;
				// anything else ends the run.
				for b := time.Second; ; b = min(2*b, 30*time.Second) {
					_, err := owner.PatchTwin(ctx, fmt.Sprintf("fan-%05d", i), "m", fmt.Appendf(nil, `{"properties":{"desired":{%s}}}`, want), "")
					if err == nil {
						break
					} else if !errors.Is(err, errdefs.ErrUnavailable) {
						log.Fatalf("patch: %v", err)
					}
					patchErrs.add(err)
					time.Sleep(hubclient.Jitter(b))
				}
			}
		})
	}
	pw.Wait()
	patched := time.Since(sent)
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(150 * time.Second):
		var lost []string
		for i, t := range got {
			if t.IsZero() {
				lost = append(lost, fmt.Sprintf("fan-%05d", i))
			}
		}
		pollErrs.report("polls after the first PATCH")
		log.Fatalf("%d of %d devices had no patch 150 s after the last PATCH was answered (lost deliveries), e.g. %v",
			len(lost), *devices, lost[:min(len(lost), 10)])
	}
	last := slices.MaxFunc(got, func(a, b time.Time) int { return a.Compare(b) })
	fmt.Printf("devices=%d all patches answered %.2f s (%.0f PATCH/s); last device has its patch %.2f s after the first patch was sent\n",
		*devices, patched.Seconds(), float64(*devices)/patched.Seconds(), last.Sub(sent).Seconds())
	pollErrs.report("polls after the first PATCH")
	patchErrs.report("PATCHes")
	if len(hubPids) > 0 {
		polls := perReplica
		if len(polls) != len(hubPids) {
			polls = nil
		}
		what := "hub"
		if len(replicas) > 0 {
			what = "replica"
		}
		printRSS(what, hubPids, before, heldRSS, polls)
	}
	if len(lbPidList) > 0 {
		printRSS("haproxy", lbPidList, lbBefore, lbHeld, nil)
	}
}
