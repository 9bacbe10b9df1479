package hub_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

// from dials the hub from the loopback address 127.0.0.{last}.
func from(last byte) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, last)}, Timeout: 10 * time.Second}
}

// httpFrom is an HTTP client whose connections come from 127.0.0.{last}.
func httpFrom(last byte) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: from(last).DialContext}}
}

// slowClient opens a connection from 127.0.0.{last} and writes head (a
// request, or part of one) and nothing more.
func slowClient(t *testing.T, addr string, last byte, head string) net.Conn {
	t.Helper()
	c, err := from(last).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from 127.0.0.%d: %v", last, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil && !isClosed(err) {
		t.Fatalf("write from 127.0.0.%d: %v", last, err)
	}
	return c
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// outcome is what a slow client saw within its deadline: the status of an
// answer (0 for none) and whether the hub then closed the connection.
type outcome struct {
	status int
	closed bool
	err    error
}

// await reads what the hub sends on c until it closes c or deadline passes.
func await(c net.Conn, deadline time.Time) outcome {
	c.SetReadDeadline(deadline)
	var o outcome
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err == nil {
		o.status = resp.StatusCode
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	} else if !isClosed(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
		o.err = err
		return o
	}
	_, err := br.ReadByte()
	switch {
	case err == nil:
		o.err = errors.New("more data after the answer")
	case isClosed(err):
		o.closed = true
	default:
		o.err = err
	}
	return o
}

// awaitAll runs await on every connection at once.
func awaitAll(conns []net.Conn, deadline time.Time) []outcome {
	out := make([]outcome, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { out[i] = await(c, deadline) })
	}
	wg.Wait()
	return out
}

// TestSlowClientFlood floods the hub with clients that never finish their
// requests: from one address (more than its per-address limit), and from
// several, with a bad token and a trickled body, and with a good token and a
// trickled body. A normal request from another address is still answered,
// and a sync long poll longer than the read and write timeouts is not cut.
func TestSlowClientFlood(t *testing.T) {
	const perIP = 40
	h := hubtest.Start(t, hubtest.Options{InsecureHTTP: true, Limits: hub.Limits{
		MaxConnsPerIP:     perIP,
		ReadHeaderTimeout: 5 * time.Minute, // the silent clients below stay held
		ReadTimeout:       time.Second,
		WriteTimeout:      time.Second,
	}})
	addr := h.Addr().String()
	dev, err := h.Registry().CreateDevice(hubapi.Device{DeviceID: "d"}) // no connection from 127.0.0.1
	if err != nil {
		t.Fatal(err)
	}
	auth := ownerAuth(t, h)
	body := func(token string) string {
		return "PUT /devices/x HTTP/1.1\r\nHost: " + h.HostName() + "\r\nAuthorization: " + token +
			"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"dev"
	}

	// 300 clients from 127.0.0.1 that send part of their headers: the hub
	// keeps perIP of them and closes the others at once.
	var silent []net.Conn
	for range 300 {
		silent = append(silent, slowClient(t, addr, 1, "GET /devices HTTP/1.1\r\nHost: x\r\n"))
	}
	// 160 clients from 127.0.0.2-9 with a bad token and a trickled body:
	// each gets its 401 and its connection closed without the body read.
	var refused []net.Conn
	for i := range 160 {
		refused = append(refused, slowClient(t, addr, byte(2+i%8), body("SharedAccessSignature sr=x&sig=y&se=1")))
	}
	// 80 clients from 127.0.0.10-13 with a good token and a trickled body:
	// each gets a 408 after the read timeout, and its connection closed.
	var trickled []net.Conn
	for i := range 80 {
		trickled = append(trickled, slowClient(t, addr, byte(10+i%4), body(auth)))
	}

	// While they are all connected, a normal request is answered.
	req, _ := http.NewRequest("GET", "http://"+addr+"/devices/d", nil)
	req.Header.Set("Authorization", auth)
	resp, err := httpFrom(200).Do(req)
	if err != nil {
		t.Fatalf("a normal GET during the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a normal GET during the flood: %s", resp.Status)
	}

	// A sync long poll waits longer than the read and write timeouts.
	lp, err := hubclientFrom(t, h, 201, h.DeviceConnectionString("d", "", dev.Authentication.SymmetricKey.PrimaryKey))
	if err != nil {
		t.Fatal(err)
	}
	first, err := lp.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s, err := lp.Sync(ctx, "d", first.Cursor, 3*time.Second)
	if err != nil || s.Cursor != first.Cursor {
		t.Fatalf("sync long poll of 3 s with 1 s timeouts: %v", err)
	}
	if waited := time.Since(start); waited < 3*time.Second {
		t.Fatalf("the long poll answered after %s, before its wait", waited)
	}

	deadline := time.Now().Add(20 * time.Second)
	if closed := awaitClosed(silent, 300-perIP, deadline); closed < 300-perIP {
		t.Errorf("the hub closed %d of 300 silent clients from one address, want %d (all above its limit of %d)", closed, 300-perIP, perIP)
	}
	for i, o := range awaitAll(refused, deadline) {
		if o.status != 401 || !o.closed {
			t.Errorf("client %d with a bad token: answer %d, closed %v, err %v; want 401 and closed", i, o.status, o.closed, o.err)
		}
	}
	for i, o := range awaitAll(trickled, deadline) {
		if o.status != 408 || !o.closed {
			t.Errorf("client %d trickling its body: answer %d, closed %v, err %v; want 408 and closed", i, o.status, o.closed, o.err)
		}
	}
}

// awaitClosed waits until the hub has closed n of conns without an answer,
// or deadline passes, and returns how many it closed.
func awaitClosed(conns []net.Conn, n int, deadline time.Time) int {
	ch := make(chan outcome, len(conns))
	for _, c := range conns {
		go func() { ch <- await(c, deadline) }()
	}
	closed := 0
	for range conns {
		if o := <-ch; o.closed && o.status == 0 {
			if closed++; closed == n {
				break
			}
		}
	}
	return closed
}

func TestLimitsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		l    hub.Limits
		want string
	}{
		{hub.Limits{ReadTimeout: -time.Second}, "--read-timeout -1s is negative"},
		{hub.Limits{IdleTimeout: -time.Second}, "--idle-timeout -1s is negative"},
		{hub.Limits{MaxConnsPerIP: -2}, "--max-conns-per-ip -2: give a positive number"},
	} {
		_, _, err := hub.Open(hub.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", InsecureHTTP: true, Limits: tc.l})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.l, err, tc.want)
		}
	}
	if err := (hub.Limits{MaxConnsPerIP: -1}).Validate(); err != nil {
		t.Errorf("no per-address limit: %v", err)
	}
}

// hubclientFrom is a client for connectionString on the (plain HTTP) hub h
// whose connections come from 127.0.0.{last}.
func hubclientFrom(t *testing.T, h *hubtest.Hub, last byte, connectionString string) (*hubclient.Client, error) {
	t.Helper()
	return hubclient.New(connectionString, h.CAFile, hubclient.WithHTTPClient(httpFrom(last)))
}

// TestRefusedOverTLS: over HTTPS too, a client with a bad token that keeps
// trickling its body gets its 401 and then a closed connection.
func TestRefusedOverTLS(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.DialWithDialer(from(1), "tcp", h.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PATCH /twins/d HTTP/1.1\r\nHost: "+h.HostName()+"\r\nAuthorization: SharedAccessSignature sr=x&sig=y&se=1\r\nContent-Length: 5000\r\n\r\n{")
	go func() { // the trickle: a byte a second, until the hub closes
		for {
			time.Sleep(time.Second)
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	if o := await(c, time.Now().Add(20*time.Second)); o.status != 401 || !o.closed {
		t.Fatalf("answer %d, closed %v, err %v; want 401 and closed", o.status, o.closed, o.err)
	}
}
