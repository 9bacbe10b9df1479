// Command slowflood floods a running hub with slow clients and measures what
// they cost it, for scripts/bench/slowclients.sh. Each client connects from
// one of -sources loopback addresses (127.0.0.1, .2, …), does the TLS
// handshake, sends a request's headers and then trickles its body, one byte
// every few seconds:
//
//   - mode bad: a PUT with a bad token (the case: it gets a 401);
//   - mode good: a PUT with the owner's token;
//   - mode silent: only part of the headers, nothing more.
//
// When half of the clients have dialled, and again -settle after the last
// one dialled and -later after that, it reads the hub's open fds and RSS
// from /proc/PID and times a normal GET /devices from another address
// (127.0.0.250).
//
//	go run ./scripts/bench/slowflood -addr 127.0.0.1:8443 -ca hub/ca.pem -cs "$CS" -pid $PID -clients 10000
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/identity"
)

func main() {
	addr := flag.String("addr", "", "the hub's listening address, host:port")
	caFile := flag.String("ca", "", "the hub's CA (PEM)")
	cs := flag.String("cs", "", "the owner's connection string")
	pid := flag.Int("pid", 0, "the hub's process id, for its fds and RSS")
	clients := flag.Int("clients", 10000, "slow clients")
	sources := flag.Int("sources", 10, "loopback source addresses (127.0.0.1 …)")
	mode := flag.String("mode", "bad", "bad | good | silent")
	settle := flag.Duration("settle", 5*time.Second, "wait after the last client connected before measuring")
	later := flag.Duration("later", 40*time.Second, "measure again this long after the first time (0: don't)")
	flag.Parse()
	if *addr == "" || *caFile == "" || *cs == "" || *pid == 0 {
		log.Fatal("slowflood: -addr, -ca, -cs and -pid are required")
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	owner, err := identity.ParseConnectionString(*cs)
	if err != nil {
		log.Fatal(err)
	}
	token, err := owner.Token(time.Hour, time.Now())
	if err != nil {
		log.Fatal(err)
	}

	var head string
	switch *mode {
	case "bad", "good":
		auth := "SharedAccessSignature sr=x&sig=y&se=1"
		if *mode == "good" {
			auth = token
		}
		head = "PUT /devices/slow HTTP/1.1\r\nHost: " + owner.HostName + "\r\nAuthorization: " + auth +
			"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
	case "silent":
		head = "GET /devices HTTP/1.1\r\nHost: " + owner.HostName + "\r\n"
	default:
		log.Fatalf("slowflood: -mode %q: want bad, good or silent", *mode)
	}

	var opened, failed, closedByHub atomic.Int64
	measure := func(when string) {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", *pid))
		rss := procStatus(*pid, "VmRSS")
		hc := &http.Client{Timeout: 120 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tlsConf,
			DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 250)}}).DialContext,
		}}
		req, _ := http.NewRequest("GET", "https://"+*addr+"/devices", nil)
		req.Header.Set("Authorization", token)
		start := time.Now()
		resp, err := hc.Do(req)
		took := time.Since(start)
		status := "error: "
		if err == nil {
			resp.Body.Close()
			status = resp.Status
		} else {
			status += err.Error()
		}
		fmt.Printf("  %s: %d sent their request, %d closed by the hub, %d could not connect; hub: %d fds, RSS %s; normal GET /devices: %s in %d ms\n",
			when, opened.Load(), closedByHub.Load(), failed.Load(), len(fds), rss, status, took.Milliseconds())
	}
	fmt.Printf("mode %s, %d clients from %d addresses\n", *mode, *clients, *sources)
	var during sync.WaitGroup
	var wg sync.WaitGroup
	stop := make(chan struct{})
	sem := make(chan struct{}, 64) // concurrent handshakes
	for i := range *clients {
		if i == *clients/2 {
			during.Go(func() { measure("half of the clients dialled") })
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%*sources))}, Timeout: 30 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", *addr, tlsConf)
			<-sem
			if err != nil {
				failed.Add(1)
				return
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, head); err != nil {
				closedByHub.Add(1)
				return
			}
			opened.Add(1)
			// Read (and drop) whatever the hub answers; note when it closes.
			gone := make(chan struct{})
			go func() {
				io.Copy(io.Discard, conn)
				close(gone)
			}()
			tick := time.NewTicker(3 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-gone:
					closedByHub.Add(1)
					return
				case <-tick.C:
					if _, err := conn.Write([]byte(" ")); err != nil {
						closedByHub.Add(1)
						return
					}
				}
			}
		}()
	}
	time.Sleep(*settle)

	during.Wait()
	measure(fmt.Sprintf("%s after the last client dialled", *settle))
	if *later > 0 {
		time.Sleep(*later)
		measure(fmt.Sprintf("%s later", *later))
	}
	close(stop)
	wg.Wait()
}

// procStatus reads a field of /proc/PID/status, e.g. "VmRSS" → "83 MB".
func procStatus(pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for line := range bytes.Lines(b) {
		if name, v, ok := strings.Cut(string(line), ":"); ok && name == field {
			var kb int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return fmt.Sprintf("%d MB", kb/1024)
		}
	}
	return "?"
}
