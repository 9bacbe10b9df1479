// Command reportbench is the module side of scripts/bench/report.sh: 10
// paho clients connect to a running `outpost daemon`'s module broker as
// modules, idle, then report patches as fast as the broker acknowledges
// them (each 204 comes only once its patch is durable), with up to WINDOW
// in flight per module. It prints the patches/s, the time until the hub
// holds the last patch of every module, and the daemon's memory (VmRSS from
// /proc/PID/status, Pss from /proc/PID/smaps_rollup) idle and under load.
//
//	go run ./scripts/bench/reportbench -pid PID -broker HOST:PORT -ca DEVICE-CA.pem \
//	    -modules FILE [-patches 20000] [-window 8]
//
// FILE holds the modules' connection strings, one a line; the hub is
// reached with OUTPOST_CONNECTION_STRING and OUTPOST_CA (the owner's), to
// see the patches arrive.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
)

func main() {
	pid := flag.Int("pid", 0, "the daemon's process id")
	broker := flag.String("broker", "", "the module broker's address")
	caFile := flag.String("ca", "", "the device CA certificate (the broker's issuer)")
	modulesFile := flag.String("modules", "", "file of module connection strings, one a line")
	patches := flag.Int("patches", 20000, "reported patches in all")
	window := flag.Int("window", 8, "patches in flight per module")
	flag.Parse()
	if *pid == 0 || *broker == "" || *caFile == "" || *modulesFile == "" {
		log.Fatal("usage: reportbench -pid PID -broker HOST:PORT -ca FILE -modules FILE")
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		log.Fatalf("%s: no PEM certificate", *caFile)
	}
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	b, err := os.ReadFile(*modulesFile)
	if err != nil {
		log.Fatal(err)
	}
	var mods []*module
	for line := range strings.FieldsSeq(string(b)) {
		cs, err := identity.ParseConnectionString(line)
		if err != nil {
			log.Fatal(err)
		}
		mods = append(mods, connect(cs, *broker, tlsConf))
	}
	hub, err := hubclient.New(os.Getenv("OUTPOST_CONNECTION_STRING"), os.Getenv("OUTPOST_CA"))
	if err != nil {
		log.Fatal(err)
	}

	time.Sleep(3 * time.Second)
	fmt.Printf("daemon idle, %d modules connected: %s\n", len(mods), memory(*pid))

	var peakRSS, peakPss atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			rss, pss := readMemory(*pid)
			peakRSS.Store(max(peakRSS.Load(), rss))
			peakPss.Store(max(peakPss.Load(), pss))
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	for i, m := range mods {
		n := *patches / len(mods)
		if i < *patches%len(mods) {
			n++
		}
		m.last = n - 1
		wg.Go(func() { m.report(n, *window) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	sampler.Wait()
	fmt.Printf("%d reported patches from %d modules, %d in flight each: %.0f patches/s acknowledged (durable)\n",
		*patches, len(mods), *window, float64(*patches)/elapsed.Seconds())
	fmt.Printf("daemon under that load, peak: VmRSS %.1f MB, Pss %.1f MB\n", float64(peakRSS.Load())/1024, float64(peakPss.Load())/1024)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, m := range mods {
		want := strconv.Itoa(m.last)
		for {
			tw, err := hub.GetTwin(ctx, m.cs.DeviceID, m.cs.ModuleID)
			if err != nil {
				log.Fatal(err)
			}
			if fmt.Sprint(tw.Reported()["seq"]) == want {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	fmt.Printf("last acknowledgement → every module's last patch at the hub: %d ms (%d ms from the first patch)\n",
		time.Since(start.Add(elapsed)).Milliseconds(), time.Since(start).Milliseconds())
	time.Sleep(3 * time.Second)
	fmt.Printf("daemon idle again: %s\n", memory(*pid))
	for _, m := range mods {
		m.c.Disconnect(100)
	}
}

type module struct {
	cs   *identity.ConnectionString
	c    paho.Client
	acks chan string // topics of the answers to reported patches
	last int
}

func connect(cs *identity.ConnectionString, broker string, tlsConf *tls.Config) *module {
	tok, err := cs.Token(time.Hour, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	m := &module{cs: cs, acks: make(chan string, 1024)}
	opts := paho.NewClientOptions().AddBroker("ssl://" + broker).
		SetClientID(cs.DeviceID + "/" + cs.ModuleID).
		SetUsername(cs.HostName + "/" + cs.DeviceID + "/" + cs.ModuleID + "/?api-version=2021-04-12").
		SetPassword(tok).SetTLSConfig(tlsConf).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetKeepAlive(30 * time.Second).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
			if strings.HasPrefix(msg.Topic(), "$iothub/twin/res/") {
				m.acks <- msg.Topic()
			}
		})
	m.c = paho.NewClient(opts)
	if t := m.c.Connect(); !t.WaitTimeout(20*time.Second) || t.Error() != nil {
		log.Fatalf("connect %s: %v", cs.ModuleID, t.Error())
	}
	t := m.c.SubscribeMultiple(map[string]byte{"$iothub/twin/res/#": 0, "$iothub/twin/PATCH/properties/desired/#": 0}, nil)
	if !t.WaitTimeout(20*time.Second) || t.Error() != nil {
		log.Fatalf("subscribe %s: %v", cs.ModuleID, t.Error())
	}
	return m
}

// report sends n patches, {"seq": j}, with up to window unanswered.
func (m *module) report(n, window int) {
	slots := make(chan struct{}, window)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			select {
			case topic := <-m.acks:
				if !strings.Contains(topic, "/204/") {
					log.Fatalf("%s: a patch answered on %s", m.cs.ModuleID, topic)
				}
			case <-time.After(30 * time.Second):
				log.Fatalf("%s: no answer within 30 s", m.cs.ModuleID)
			}
			<-slots
		}
	}()
	for j := range n {
		slots <- struct{}{}
		m.c.Publish("$iothub/twin/PATCH/properties/reported/?$rid="+strconv.Itoa(j+1), 1, false, fmt.Appendf(nil, `{"seq":%d}`, j))
	}
	<-done
}

func memory(pid int) string {
	rss, pss := readMemory(pid)
	return fmt.Sprintf("VmRSS %.1f MB, Pss %.1f MB", float64(rss)/1024, float64(pss)/1024)
}

// readMemory returns the VmRSS and Pss of pid, in KiB.
func readMemory(pid int) (rss, pss int64) {
	field := func(file, name string) int64 {
		f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		for sc := bufio.NewScanner(f); sc.Scan(); {
			if rest, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
				v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				return v
			}
		}
		return 0
	}
	return field("status", "VmRSS"), field("smaps_rollup", "Pss")
}
