//go:build linux

// Command leafbench is scripts/bench/leaves.sh: N leaf devices (children of
// one edge device) on one real `outpost daemon`. It starts a hub (outpost hub
// serve) on a free loopback port, creates an edge device and N leaf devices
// with it as their parent, starts `outpost daemon` for the edge device
// (process runtime, nothing deployed), and connects N paho clients to the
// daemon's broker as the leaf devices, as Azure IoT's device SDKs do (TLS
// to the device CA, client id {deviceId}, the device's SAS token). Then:
//
//   - load: every leaf reports a patch once a second for -window; the
//     daemon's CPU (utime+stime from /proc/PID/stat) and memory (VmRSS,
//     VmHWM) over it;
//
//   - desired: one desired patch per leaf through the hub's service API,
//     while the load goes on, and the time until each leaf's client has it
//     (p50, p99, max);
//
//   - outbox: the hub stopped for -offline while the leaves keep reporting,
//     then started again; the outbox depth it left and the time until the
//     daemon's outbox is empty, extrapolated to an hour offline.
//
//     go run ./scripts/bench/leafbench -outpost BIN [-n 1000] [-window 60s] [-offline 60s]
//
// The processes it starts die with it (Pdeathsig) and its temp dir is removed.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

var (
	telemetry bool
	upstream  bool // the leaves' telemetry routed to the hub
	work      string
	procs     []*exec.Cmd
)

func main() {
	bin := flag.String("outpost", "", "the outpost binary")
	n := flag.Int("n", 1000, "leaf devices")
	window := flag.Duration("window", 60*time.Second, "the measured load window")
	offline := flag.Duration("offline", 60*time.Second, "how long the hub is stopped (0: skip the outbox part)")
	flag.BoolVar(&telemetry, "telemetry", true, "each leaf also sends a telemetry message a second (QoS 1)")
	flag.BoolVar(&upstream, "upstream", false, "deploy a route that sends the leaves' telemetry upstream (FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream); without it no route takes it and the broker drops it after its PUBACK")
	flag.Parse()
	if *bin == "" || *n < 1 {
		log.Fatal("usage: leafbench -outpost BIN [-n 1000] [-window 60s] [-offline 60s]")
	}
	var err error
	if work, err = os.MkdirTemp("", "outpost-bench-leaves."); err != nil {
		log.Fatal(err)
	}
	code := run(*bin, *n, *window, *offline)
	for _, p := range procs {
		if p.Process != nil && p.ProcessState == nil {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}
	_ = os.RemoveAll(work)
	os.Exit(code)
}

func fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func run(bin string, n int, window, offline time.Duration) (code int) {
	defer func() {
		if r := recover(); r != nil {
			log.Print(r)
			for _, f := range []string{"hub.log", "daemon.log"} {
				if b, err := os.ReadFile(filepath.Join(work, f)); err == nil {
					log.Printf("the end of %s:\n%s", f, b[max(0, len(b)-3000):])
				}
			}
			code = 1
		}
	}()
	ctx := context.Background()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(2*n+256) {
		fatalf("ulimit -n is %d: %d leaves need at least %d file descriptors (a socket each in this process and in the daemon): raise it with `ulimit -n %d`", lim.Cur, n, 2*n+256, 4*n)
	}
	hubAddr := freePort()
	hub := startHub(bin, hubAddr)
	owner := ownerClient()

	edge, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: "bench-edge"})
	if err != nil {
		fatalf("create the edge device: %v", err)
	}
	if upstream {
		manifest := []byte(`{"schemaVersion":"1.0","modules":{},"routes":{"leaves":"FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream"}}`)
		if _, err := owner.ApplyConfiguration(ctx, edge.DeviceID, manifest); err != nil {
			fatalf("deploy the leaves' upstream route: %v", err)
		}
		fmt.Println("route: the leaves' telemetry goes upstream (FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream)")
	}
	leaves := make([]*leaf, n)
	t0 := time.Now()
	parallel(n, 8, func(i int) {
		id := fmt.Sprintf("leaf-%04d", i)
		d, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: id, DeviceScope: edge.DeviceScope, Capabilities: &hubapi.Capabilities{}})
		if err != nil {
			fatalf("create %s: %v", id, err)
		}
		leaves[i] = &leaf{id: id, key: d.Authentication.SymmetricKey.PrimaryKey, desiredAt: make(chan time.Time, 1)}
	})
	fmt.Printf("hub: %d leaf devices created with --parent %s in %.1f s (8 at a time)\n", n, edge.DeviceID, time.Since(t0).Seconds())

	edgeCS := (&identity.ConnectionString{HostName: owner.HostName(), DeviceID: edge.DeviceID,
		SharedAccessKey: edge.Authentication.SymmetricKey.PrimaryKey, UseInsecureHTTP: owner.ConnectionString().UseInsecureHTTP}).String()
	brokerAddr := freePort()
	sock := filepath.Join(work, "mgmt.sock")
	t0 = time.Now()
	daemon := start(bin, filepath.Join(work, "daemon.log"), nil, "daemon", "--connection-string", edgeCS,
		"--data", filepath.Join(work, "device"), "--runtime", "process", "--mgmt-socket", sock,
		"--broker-listen", brokerAddr, "--gateway-hostname", "localhost", "--workload-dir", filepath.Join(work, "workload"))
	mgmt := mgmtclient.New(sock)
	waitFor("the daemon's first sync", 2*time.Minute, func() bool {
		st, err := mgmt.Status(ctx)
		return err == nil && !st.LastSync.IsZero()
	})
	fmt.Printf("daemon: first sync (with %d children and their keys) %.1f s after its start\n", n, time.Since(t0).Seconds())

	tlsConf := deviceTLS(filepath.Join(work, "device", "ca", "device-ca.pem"))
	var lost atomic.Int64
	t0 = time.Now()
	parallel(n, 32, func(i int) { leaves[i].connect(owner.HostName(), brokerAddr, tlsConf, &lost) })
	fmt.Printf("broker: %d leaves connected (TLS, SAS, 2 subscriptions each) in %.1f s\n", n, time.Since(t0).Seconds())
	time.Sleep(3 * time.Second)
	rss, _ := memory(daemon.Process.Pid)
	fmt.Printf("daemon idle, %d leaves connected: VmRSS %.1f MB\n", n, float64(rss)/1024)

	// The load: every leaf reports {"seq": k} once a second, the leaves
	// spread over the second.
	var sent, acked, refused atomic.Int64
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	for i, l := range leaves {
		loadWG.Go(func() {
			select {
			case <-time.After(time.Duration(i) * time.Second / time.Duration(n)):
			case <-stopLoad:
				return
			}
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for k := 1; ; k++ {
				l.c.Publish("$iothub/twin/PATCH/properties/reported/?$rid="+strconv.Itoa(k), 1, false, fmt.Appendf(nil, `{"seq":%d}`, k))
				sent.Add(1)
				if telemetry {
					l.c.Publish("devices/"+l.id+"/messages/events/", 1, false, fmt.Appendf(nil, `{"seq":%d,"temperature":21.5}`, k))
				}
				select {
				case <-tick.C:
				case <-stopLoad:
					return
				}
			}
		})
	}
	for _, l := range leaves {
		go func() {
			for topic := range l.acks {
				if strings.Contains(topic, "/204/") {
					acked.Add(1)
				} else {
					refused.Add(1)
				}
			}
		}()
	}
	time.Sleep(5 * time.Second) // all leaves in their stride
	cpu0, at0 := cpuTicks(daemon.Process.Pid), time.Now()
	sent0, acked0 := sent.Load(), acked.Load()
	peak := sampleRSS(daemon.Process.Pid)
	load0 := loadavg()
	depth0 := outbox(mgmt)
	trace := traceOutbox(mgmt, "load")
	time.Sleep(window)
	trace()
	depth1 := outbox(mgmt)
	cpu1, at1 := cpuTicks(daemon.Process.Pid), time.Now()
	sec := at1.Sub(at0).Seconds()
	peakRSS := peak()
	_, hwm := memory(daemon.Process.Pid)
	if st, err := mgmt.Status(ctx); err == nil && st.Messages != nil {
		fmt.Printf("telemetry: %v (devices/{id}/messages/events/, QoS 1, one a second per leaf); message queue upstream at the window's end: %d messages, %d refused, routes error %q\n",
			telemetry, st.Messages.Upstream.Count, st.Messages.Upstream.Refused, st.Messages.RoutesError)
	}
	fmt.Printf("load: %d leaves, 1 reported patch/s each, over %.0f s: %.0f patches/s sent, %.0f/s acknowledged 204 (durable), %d refused answers\n",
		n, sec, float64(sent.Load()-sent0)/sec, float64(acked.Load()-acked0)/sec, refused.Load())
	fmt.Printf("outbox (reported patches not yet at the hub) %d at the window's start, %d at its end: %.0f patches/s more than the daemon uploads\n",
		depth0, depth1, float64(depth1-depth0)/sec)
	fmt.Printf("daemon under that load: CPU %.0f%% of one core (utime+stime %.1f s over %.0f s), VmRSS peak %.1f MB, VmHWM %.1f MB; load average before %s, after %s\n",
		100*float64(cpu1-cpu0)/100/sec, float64(cpu1-cpu0)/100, sec, float64(peakRSS)/1024, float64(hwm)/1024, load0, loadavg())

	// Desired: one patch per leaf at the hub, during the load.
	sentAt := make([]time.Time, n)
	t0 = time.Now()
	parallel(n, 16, func(i int) {
		sentAt[i] = time.Now()
		if _, err := owner.PatchTwin(ctx, leaves[i].id, "", []byte(`{"properties":{"desired":{"bench":1}}}`), "*"); err != nil {
			fatalf("desired patch of %s: %v", leaves[i].id, err)
		}
	})
	patched := time.Since(t0)
	lat := make([]time.Duration, n)
	deadline := time.After(2 * time.Minute)
	var last time.Time
	for i, l := range leaves {
		select {
		case at := <-l.desiredAt:
			lat[i] = at.Sub(sentAt[i])
			if at.After(last) {
				last = at
			}
		case <-deadline:
			fatalf("%s: no desired patch within 2 minutes", l.id)
		}
	}
	slices.Sort(lat)
	fmt.Printf("desired: %d patches through the service API (16 at a time) in %.1f s; at each leaf after its PATCH: p50 %d ms, p99 %d ms, max %d ms; the last leaf had it %.1f s after the first PATCH\n",
		n, patched.Seconds(), lat[n/2].Milliseconds(), lat[n*99/100].Milliseconds(), lat[n-1].Milliseconds(), last.Sub(t0).Seconds())

	if offline > 0 {
		stopHub(hub)
		t0 = time.Now()
		sentOff, ackedOff := sent.Load(), acked.Load()
		time.Sleep(offline)
		queued := outbox(mgmt)
		fmt.Printf("offline: hub stopped %.0f s, %d patches sent by the leaves, %d acknowledged meanwhile; outbox %d patches\n",
			time.Since(t0).Seconds(), sent.Load()-sentOff, acked.Load()-ackedOff, queued)
		cpu0, at0 = cpuTicks(daemon.Process.Pid), time.Now()
		startHub(bin, hubAddr)
		up := time.Now()
		waitFor("the daemon back online", 5*time.Minute, func() bool {
			st, err := mgmt.Status(ctx)
			return err == nil && st.Connected
		})
		reconnect := time.Since(up)
		// With the leaves still reporting: the net drain (negative: the
		// outbox still grows).
		trace = traceOutbox(mgmt, "drain, leaves reporting")
		d0, t1 := outbox(mgmt), time.Now()
		time.Sleep(30 * time.Second)
		trace()
		d1 := outbox(mgmt)
		net := float64(d0-d1) / time.Since(t1).Seconds()
		fmt.Printf("drain, leaves still reporting: daemon online %.1f s after the hub's start; outbox %d → %d over 30 s: net %.0f patches/s drained (upload %.0f/s against the leaves' %d/s)\n",
			reconnect.Seconds(), d0, d1, net, net+float64(n), n)
		// The leaves stopped: the upload alone.
		close(stopLoad)
		loadWG.Wait()
		time.Sleep(time.Second)
		trace = traceOutbox(mgmt, "drain, leaves stopped")
		d2, t2 := outbox(mgmt), time.Now()
		d3 := d2
		for d3 > 0 && time.Since(t2) < 2*time.Minute {
			time.Sleep(100 * time.Millisecond)
			d3 = outbox(mgmt)
		}
		trace()
		upload := float64(d2-d3) / time.Since(t2).Seconds()
		cpu1 = cpuTicks(daemon.Process.Pid)
		fmt.Printf("drain, leaves stopped: outbox %d → %d in %.0f s: %.0f patches/s uploaded; daemon CPU %.0f%% over the whole drain\n",
			d2, d3, time.Since(t2).Seconds(), upload, 100*float64(cpu1-cpu0)/100/time.Since(at0).Seconds())
		hour := float64(n) * 3600
		fmt.Printf("an hour offline: %d leaves × 1/s × 3600 s = %.0f patches queued; at the upload rate with the leaves quiet (%.0f/s): %.0f minutes to drain", n, hour, upload, hour/upload/60)
		if net > 0 {
			fmt.Printf("; with the leaves still reporting (net %.0f/s): %.0f minutes\n", net, hour/net/60)
		} else {
			fmt.Printf("; with the leaves still reporting it never drains (the upload, %.0f/s, is below the leaves' %d/s)\n", net+float64(n), n)
		}
	} else {
		close(stopLoad)
		loadWG.Wait()
	}
	fmt.Printf("connections lost during the run: %d\n", lost.Load())
	for _, l := range leaves {
		l.c.Disconnect(50)
	}
	return 0
}

type leaf struct {
	id, key   string
	c         paho.Client
	acks      chan string
	desiredAt chan time.Time
}

func (l *leaf) connect(hubHost, broker string, tlsConf *tls.Config, lost *atomic.Int64) {
	l.acks = make(chan string, 4096)
	tok, err := identity.NewSAS(hubHost+"/devices/"+l.id, l.key, time.Now().Add(24*time.Hour), "")
	if err != nil {
		fatalf("token of %s: %v", l.id, err)
	}
	opts := paho.NewClientOptions().AddBroker("ssl://" + broker).
		SetClientID(l.id).SetUsername(hubHost + "/" + l.id + "/?api-version=2021-04-12").
		SetPassword(tok).SetTLSConfig(tlsConf).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetKeepAlive(60 * time.Second).SetOrderMatters(false).
		SetConnectionLostHandler(func(paho.Client, error) { lost.Add(1) }).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
			topic := msg.Topic()
			switch {
			case strings.HasPrefix(topic, "$iothub/twin/res/"):
				select {
				case l.acks <- topic:
				default:
				}
			case strings.HasPrefix(topic, "$iothub/twin/PATCH/properties/desired/"):
				at := time.Now()
				var p struct{ Bench int }
				if json.Unmarshal(msg.Payload(), &p) == nil && p.Bench == 1 {
					select {
					case l.desiredAt <- at:
					default:
					}
				}
			}
		})
	// The daemon knows its children from the sync: retry while it refuses.
	deadline := time.Now().Add(time.Minute)
	for {
		l.c = paho.NewClient(opts)
		t := l.c.Connect()
		if t.WaitTimeout(30*time.Second) && t.Error() == nil {
			break
		}
		if time.Now().After(deadline) {
			fatalf("connect %s: %v", l.id, t.Error())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t := l.c.SubscribeMultiple(map[string]byte{"$iothub/twin/res/#": 0, "$iothub/twin/PATCH/properties/desired/#": 0}, nil)
	if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		fatalf("subscribe %s: %v", l.id, t.Error())
	}
}

// parallel calls f(0..n-1), width at a time.
func parallel(n, width int, f func(int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	var failure atomic.Value
	for range width {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					failure.Store(r)
				}
			}()
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		if failure.Load() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if r := failure.Load(); r != nil {
		panic(r)
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs bin with args, its stderr to logFile, its stdout to stdout
// (nil: discarded), and kills it when this process dies.
func start(bin, logFile string, stdout *os.File, args ...string) *exec.Cmd {
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(bin, args...)
	// OUTPOST_CA: the daemon trusts the hub's certificate.
	cmd.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null", "OUTPOST_CA="+filepath.Join(work, "hub", "ca.pem"))
	cmd.Stderr, cmd.Stdout = lf, stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fatalf("start %s: %v", bin, err)
	}
	procs = append(procs, cmd)
	return cmd
}

func startHub(bin, addr string) *exec.Cmd {
	out, err := os.Create(filepath.Join(work, "hub.out"))
	if err != nil {
		fatalf("%v", err)
	}
	defer out.Close()
	logFile := filepath.Join(work, "hub.log")
	before := fileSize(logFile)
	cmd := start(bin, logFile, out, "hub", "serve", "--data", filepath.Join(work, "hub"), "--listen", addr)
	waitFor("the hub to listen", time.Minute, func() bool {
		b, _ := os.ReadFile(logFile)
		return int64(len(b)) > before && strings.Contains(string(b[before:]), "hub listening")
	})
	return cmd
}

func stopHub(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
}

func fileSize(name string) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// ownerClient is a client of the hub with the owner's connection string,
// the first line the hub printed.
func ownerClient() *hubclient.Client {
	b, err := os.ReadFile(filepath.Join(work, "hub.out"))
	if err != nil {
		fatalf("%v", err)
	}
	cs, _, _ := strings.Cut(string(b), "\n")
	c, err := hubclient.New(strings.TrimSpace(cs), filepath.Join(work, "hub", "ca.pem"))
	if err != nil {
		fatalf("owner client: %v", err)
	}
	return c
}

func deviceTLS(caFile string) *tls.Config {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fatalf("%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fatalf("%s: no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

func waitFor(what string, limit time.Duration, ok func() bool) {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func outbox(mgmt *mgmtclient.Client) int {
	st, err := mgmt.Status(context.Background())
	if err != nil {
		fatalf("daemon status: %v", err)
	}
	return st.Outbox.Patches
}

// cpuTicks is utime+stime of pid, in clock ticks (1/100 s on Linux).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		fatalf("%v", err)
	}
	// The fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// memory returns the VmRSS and VmHWM of pid, in KiB.
func memory(pid int) (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fatalf("%v", err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		name, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch name {
		case "VmRSS":
			rss = kb
		case "VmHWM":
			hwm = kb
		}
	}
	return rss, hwm
}

// sampleRSS samples the VmRSS of pid every 200 ms until the function it
// returns is called, which returns the peak.
func sampleRSS(pid int) func() int64 {
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			rss, _ := memory(pid)
			peak.Store(max(peak.Load(), rss))
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() int64 { close(stop); <-done; return peak.Load() }
}

// traceOutbox prints the outbox depth every 10 s until the function it
// returns is called.
func traceOutbox(mgmt *mgmtclient.Client, what string) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Second):
			}
			st, err := mgmt.Status(context.Background())
			if err == nil {
				fmt.Printf("  %s +%.0f s: outbox %d patches, hub link connected=%v\n", what, time.Since(start).Seconds(), st.Outbox.Patches, st.Connected)
			}
		}
	}()
	return func() { close(stop); <-done }
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
