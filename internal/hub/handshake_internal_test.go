package hub

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// handshakeServer is a handshakeListener on loopback with the hub's own
// kind of certificate, and a client configuration that trusts it.
func handshakeServer(t *testing.T, timeout, clientTimeout time.Duration, slots int) (*handshakeListener, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	cert, err := ensureTLS(dir, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newHandshakeListener(raw, &tls.Config{Certificates: []tls.Certificate{*cert}}, timeout, clientTimeout, slots, nil)
	t.Cleanup(func() { l.Close() })
	return l, &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// acceptWithin returns the next connection Accept gives, failing the test if
// none comes in a minute (a handshake that never completes).
func acceptWithin(t *testing.T, l *handshakeListener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := l.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		return r.c
	case <-time.After(time.Minute):
		t.Fatal("no handshake completed in a minute")
		return nil
	}
}

// echoLine answers one line on c with the same line.
func echoLine(t *testing.T, c net.Conn) {
	t.Helper()
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Errorf("server read: %v", err)
		return
	}
	c.Write(b)
}

// TestHandshakeQueuedPastTimeout: a connection whose handshake waited for
// a slot longer than the handshake timeout is not cut: its deadline starts
// with its slot. (With crypto/tls's listener under http.Server the deadline
// started at the accept, and a storm of handshakes cut thousands mid-way.)
func TestHandshakeQueuedPastTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	l, cfg := handshakeServer(t, timeout, timeout, 1)
	l.slots.acquire(nil) // the only slot, taken

	errc := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			errc <- err
			return
		}
		b := make([]byte, 5)
		_, err = io.ReadFull(c, b)
		if err == nil && string(b) != "ping\n" {
			err = errors.New("echo: " + string(b))
		}
		errc <- err
	}()
	for l.stats.waiting.Load() == 0 { // its ClientHello is in, it waits for the slot
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * timeout) // past the deadline it would have had from the accept
	l.slots.release()
	c := acceptWithin(t, l)
	defer c.Close()
	echoLine(t, c)
	if err := <-errc; err != nil {
		t.Fatalf("client of a handshake that waited %s for its slot: %v", 3*timeout, err)
	}
	if n := l.stats.failed.Load(); n != 0 {
		t.Errorf("%d handshakes failed, want 0", n)
	}
}

// blockedReads is a client connection that sends and never receives: a
// client that sent its ClientHello and then stalls.
type blockedReads struct {
	net.Conn
	unblock chan struct{}
}

func (c blockedReads) Read([]byte) (int, error) {
	<-c.unblock
	return 0, io.EOF
}

// TestHandshakeSlowClientHoldsNoSlot: a slot is given back once the hub has
// sent its part of the handshake, so with one slot a client that stalls
// after its ClientHello does not keep the next client from connecting; and
// a client that sends nothing is closed after the timeout without ever
// taking a slot.
func TestHandshakeSlowClientHoldsNoSlot(t *testing.T) {
	l, cfg := handshakeServer(t, time.Minute, time.Minute, 1)
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	unblock := make(chan struct{})
	defer close(unblock)
	go tls.Client(blockedReads{raw, unblock}, cfg).Handshake()
	silent, err := net.Dial("tcp", l.Addr().String()) // says nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	errc := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err == nil {
			_, err = c.Write([]byte("ping\n"))
			b := make([]byte, 5)
			if err == nil {
				_, err = io.ReadFull(c, b)
			}
			c.Close()
		}
		errc <- err
	}()
	c := acceptWithin(t, l)
	defer c.Close()
	echoLine(t, c)
	if err := <-errc; err != nil {
		t.Fatalf("client after a stalled one: %v", err)
	}

	// The silent client, with a short timeout.
	l2, _ := handshakeServer(t, 100*time.Millisecond, 100*time.Millisecond, 1)
	s2, err := net.Dial("tcp", l2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := s2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a client that sends nothing: read %v, want EOF (closed by the hub)", err)
	}
	if l2.stats.silent.Load() != 1 || l2.slots.freeSlots() != 1 {
		t.Errorf("silent client: %d counted silent, %d slots free; want 1 and 1", l2.stats.silent.Load(), l2.slots.freeSlots())
	}
}

// TestHandshakePlainHTTP: plain HTTP on the hub's HTTPS port gets the
// answer http.Server gives it, and Close ends Accept.
func TestHandshakePlainHTTP(t *testing.T) {
	l, _ := handshakeServer(t, time.Minute, time.Minute, 1)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(time.Minute))
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), "400 Bad Request") || !strings.Contains(string(b), "HTTPS server") {
		t.Errorf("plain HTTP on the TLS port got %q, want 400 naming HTTPS", b)
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after close: %v, want net.ErrClosed", err)
	}
}

// TestHandshakeNewestFirst: when handshakes wait for a slot, the newest
// gets the next one (the oldest are the likeliest given up by their
// clients; a load balancer's check is always new).
func TestHandshakeNewestFirst(t *testing.T) {
	l, cfg := handshakeServer(t, time.Minute, time.Minute, 1)
	// The order the hub starts handshakes in, in their slots (the order they
	// complete in is the clients' as much as the hub's).
	started := make(chan string, 2)
	l.cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		started <- hello.Conn.RemoteAddr().String()
		return nil, nil
	}
	l.slots.acquire(nil) // the only slot, taken
	dial := func(want int64) <-chan net.Conn {
		ch := make(chan net.Conn, 1)
		go func() {
			c, err := tls.Dial("tcp", l.Addr().String(), cfg)
			if err != nil {
				t.Errorf("dial: %v", err)
				close(ch)
				return
			}
			ch <- c
		}()
		for int64(queued(l.slots)) < want {
			time.Sleep(10 * time.Millisecond)
		}
		return ch
	}
	old := dial(1)
	newer := dial(2)
	l.slots.release()
	first := acceptWithin(t, l)
	defer first.Close()
	second := acceptWithin(t, l)
	defer second.Close()
	c := <-newer
	if c == nil {
		return
	}
	defer c.Close()
	if o := <-old; o != nil {
		o.Close()
	}
	if got := <-started; got != c.LocalAddr().String() {
		t.Errorf("the first handshake started was %s's, want the newest client's (%s)", got, c.LocalAddr())
	}
}

// TestHandshakeGivenUpSkipped: a client that closed its connection while
// its handshake waited for a slot costs no handshake: the hub sees it gone
// when its turn comes, and the slot goes on to the next.
func TestHandshakeGivenUpSkipped(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the hub cannot tell a gone client before its handshake on Windows")
	}
	l, cfg := handshakeServer(t, time.Minute, time.Minute, 1)
	l.slots.acquire(nil) // the only slot, taken
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	unblock := make(chan struct{})
	defer close(unblock)
	go tls.Client(blockedReads{raw, unblock}, cfg).Handshake() // its ClientHello, then nothing
	for l.stats.waiting.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	raw.Close() // gives up
	l.slots.release()
	for l.stats.abandoned.Load() == 0 {
		if l.stats.failed.Load() > 0 {
			t.Fatal("the handshake of a client that had closed its connection was attempted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	errc := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	c := acceptWithin(t, l)
	c.Close()
	if err := <-errc; err != nil {
		t.Fatalf("the next client: %v", err)
	}
}

// TestHandshakeResumes: a client's second connection resumes the session
// of its first through the queue (the tickets of one tls.Config).
func TestHandshakeResumes(t *testing.T) {
	l, cfg := handshakeServer(t, time.Minute, time.Minute, 1)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(0)
	for i, want := range []bool{false, true} {
		errc := make(chan error, 1)
		resumed := make(chan bool, 1)
		go func() {
			c, err := tls.Dial("tcp", l.Addr().String(), cfg)
			if err == nil {
				// TLS 1.3 tickets come after the handshake: read until the server closes.
				io.Copy(io.Discard, c)
				resumed <- c.ConnectionState().DidResume
				c.Close()
			}
			errc <- err
		}()
		c := acceptWithin(t, l)
		c.Write([]byte("x"))
		c.Close()
		if err := <-errc; err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		if got := <-resumed; got != want {
			t.Errorf("connection %d: resumed %v, want %v", i+1, got, want)
		}
	}
}

// lateReads is a client connection slow to read the hub's answer: a
// client short of CPU.
type lateReads struct {
	net.Conn
	delay time.Duration
	once  sync.Once
}

func (c *lateReads) Read(b []byte) (int, error) {
	c.once.Do(func() { time.Sleep(c.delay) })
	return c.Conn.Read(b)
}

// TestHandshakeSlowClientNotCut: a client that takes longer than the
// hub's handshake timeout to answer the hub's part (but less than the
// client timeout) completes its handshake: the hub's part was computed
// and cutting it would throw that away.
func TestHandshakeSlowClientNotCut(t *testing.T) {
	const timeout = 200 * time.Millisecond
	l, cfg := handshakeServer(t, timeout, time.Minute, 1)
	errc := make(chan error, 1)
	go func() {
		raw, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			errc <- err
			return
		}
		c := tls.Client(&lateReads{Conn: raw, delay: 3 * timeout}, cfg)
		err = c.Handshake()
		c.Close()
		errc <- err
	}()
	c := acceptWithin(t, l)
	c.Close()
	if err := <-errc; err != nil {
		t.Fatalf("a client %s late with its answer: %v", 3*timeout, err)
	}
}

// TestHandshakeClientAnswerLateCounted: a client that never answers the
// hub's part is cut after the client timeout and counted as late with its
// answer, not as a handshake that ran out of time computing the hub's part
// (the log tells a client short of CPU from a hub short of it).
func TestHandshakeClientAnswerLateCounted(t *testing.T) {
	l, cfg := handshakeServer(t, time.Minute, 100*time.Millisecond, 1)
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	unblock := make(chan struct{})
	defer close(unblock)
	go tls.Client(blockedReads{raw, unblock}, cfg).Handshake()
	for deadline := time.Now().Add(time.Minute); l.stats.failed.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a client that never answered was not cut in a minute")
		}
	}
	if a, to := l.stats.answerLate.Load(), l.stats.timedOut.Load(); a != 1 || to != 0 {
		t.Errorf("a client that never answered: counted %d late with its answer, %d timed out with a slot; want 1 and 0", a, to)
	}
	if p := l.stats.lastErr.Load(); p == nil || !strings.Contains(*p, "did not answer the hub's part") {
		t.Errorf("last error %v: want it to say the client did not answer", p)
	}
}
