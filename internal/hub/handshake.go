package hub

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Thousands of devices connect at once after a hub restart, or when a
// replica dies and its devices move to the others. With every connection's
// TLS handshake running at once, two cores share their time among all of
// them: each takes as long as all of them together, and the http.Server's
// handshake deadline (ReadHeaderTimeout, counted from the accept) cut them
// mid-way, the devices reconnected and paid for the handshake again
// (docs/benchmarks.md, "A storm of connections, before and after").
//
// handshakeListener instead accepts connections as fast as they come (the
// kernel's accept queue stays short), waits for each client's ClientHello
// holding no slot, then runs the handshake's costly part (key exchange,
// signature) for at most slots connections at a time, the others waiting
// their turn at no cost, the newest first (slotPool). The deadline of the
// handshake starts when it gets its slot, so a connection that waited in
// the queue is not cut mid-way; a client that sends nothing is closed
// after the timeout, counted from the accept, and never holds a slot. A slot is given back as soon as the hub
// has sent its part of the handshake and waits for the client's, so a slow
// client does not hold it either.

// handshakeSlotsPerCPU is how many handshakes may compute at once for each
// P (GOMAXPROCS): a few, so that a slot freed while its owner waits for the
// scheduler is taken at once.
const handshakeSlotsPerCPU = 4

// handshakeLogEvery is how often the listener logs the handshakes that
// failed, when some did, or how many waited, when at least
// handshakeLogQueue did.
const (
	handshakeLogEvery = 10 * time.Second
	handshakeLogQueue = 100
)

type handshakeListener struct {
	inner   net.Listener
	cfg     *tls.Config
	timeout time.Duration // for the hub's part of a handshake, from its turn
	// clientTimeout bounds each wait for the client: its ClientHello, from
	// the accept, and its answer to the hub's part. Waiting costs the hub
	// nothing, and cutting a handshake after its part was computed throws
	// the computation away; a storm on slow clients (or, in fanout.sh, on
	// the same cores) takes its time there.
	clientTimeout time.Duration
	slots         *slotPool
	ready         chan net.Conn
	log           *slog.Logger

	done      chan struct{} // closed by Close, or when the inner listener fails
	closeOnce sync.Once
	err       error // why Accept fails once done is closed

	stats handshakeStats
	fresh sync.Map // net.Conn → when it was handed to the HTTP server, no request yet (connState)
}

// handshakeStats count the listener's handshakes.
type handshakeStats struct {
	completed  atomic.Int64
	failed     atomic.Int64 // failed or cut, the silent ones included
	silent     atomic.Int64 // no ClientHello within the timeout
	timedOut   atomic.Int64 // had a slot and ran out of time computing the hub's part
	answerLate atomic.Int64 // the client's answer to the hub's part did not come within clientTimeout
	noRequest  atomic.Int64 // handshake done, closed by the HTTP server before any request (ReadHeaderTimeout)
	abandoned  atomic.Int64 // closed by the client while waiting for a slot
	waiting    atomic.Int64 // waiting for a slot now
	maxWaiting atomic.Int64 // most waiting at once since the last log
	lastErr    atomic.Pointer[string]
}

// newHandshakeListener serves TLS with cfg on the connections of inner.
// slots <= 0 means handshakeSlotsPerCPU for each P.
func newHandshakeListener(inner net.Listener, cfg *tls.Config, timeout, clientTimeout time.Duration, slots int, log *slog.Logger) *handshakeListener {
	if slots <= 0 {
		slots = handshakeSlotsPerCPU * runtime.GOMAXPROCS(0)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &handshakeListener{inner: inner, cfg: cfg, timeout: timeout, clientTimeout: clientTimeout, slots: &slotPool{free: slots},
		ready: make(chan net.Conn), log: log, done: make(chan struct{})}
	go l.acceptLoop()
	go l.report()
	return l
}

// Accept returns the next connection whose handshake is complete.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *handshakeListener) Addr() net.Addr { return l.inner.Addr() }

func (l *handshakeListener) Close() error {
	err := l.inner.Close()
	l.stop(net.ErrClosed)
	return err
}

func (l *handshakeListener) stop(err error) {
	l.closeOnce.Do(func() {
		l.err = err
		close(l.done)
	})
}

// acceptLoop accepts connections and starts a handshake for each. Like
// http.Server it waits a little and tries again on a temporary error (out
// of file descriptors).
func (l *handshakeListener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.log.Warn("hub: accepting a connection failed; trying again", "err", err, "in", delay)
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					return
				}
			}
			l.stop(err)
			return
		}
		delay = 0
		go l.handshake(c)
	}
}

// handshake runs c's TLS handshake and hands the connection to Accept.
func (l *handshakeListener) handshake(c net.Conn) {
	// The client's first flight, holding no slot.
	c.SetDeadline(time.Now().Add(l.clientTimeout))
	hello, err := readRecord(c)
	if err != nil {
		l.fail(err, errors.Is(err, os.ErrDeadlineExceeded), false)
		c.Close()
		return
	}
	// Wait for a slot at no cost: no deadline, nothing computed.
	c.SetDeadline(time.Time{})
	n := l.stats.waiting.Add(1)
	for m := l.stats.maxWaiting.Load(); n > m && !l.stats.maxWaiting.CompareAndSwap(m, n); m = l.stats.maxWaiting.Load() {
	}
	ok := l.slots.acquire(l.done)
	l.stats.waiting.Add(-1)
	if !ok {
		c.Close()
		return
	}
	var once sync.Once
	var released atomic.Bool
	release := func() {
		once.Do(func() {
			l.slots.release()
			c.SetDeadline(time.Now().Add(l.clientTimeout)) // the client's turn
			released.Store(true)
		})
	}
	if clientGone(c) { // gave up while it waited: nothing to compute
		release()
		l.stats.abandoned.Add(1)
		l.fail(errors.New("the client closed its connection while its handshake waited for its turn"), false, false)
		c.Close()
		return
	}
	c.SetDeadline(time.Now().Add(l.timeout))
	tc := tls.Server(&slotConn{Conn: c, pre: hello, release: release}, l.cfg)
	err = tc.Handshake()
	answering := released.Load() // the hub's part was sent: the client's turn
	release()
	if err != nil {
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
			// What http.Server answers plain HTTP on an HTTPS port.
			io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		timedOut := errors.Is(err, os.ErrDeadlineExceeded)
		if timedOut && answering {
			l.stats.answerLate.Add(1)
			err = fmt.Errorf("the client did not answer the hub's part of the TLS handshake within %s (--read-timeout): %w", l.clientTimeout, err)
			timedOut = false
		}
		l.fail(err, false, timedOut)
		tc.Close()
		return
	}
	c.SetDeadline(time.Time{})
	l.stats.completed.Add(1)
	select {
	case l.ready <- tc:
	case <-l.done:
		tc.Close()
	}
}

func (l *handshakeListener) fail(err error, silent, timedOut bool) {
	l.stats.failed.Add(1)
	if silent {
		l.stats.silent.Add(1)
	}
	if timedOut {
		l.stats.timedOut.Add(1)
	}
	s := err.Error()
	l.stats.lastErr.Store(&s)
	l.log.Debug("hub: TLS handshake failed", "err", err)
}

// report logs, every handshakeLogEvery, how many handshakes failed and how
// many waited for a slot at most, when some failed.
func (l *handshakeListener) report() {
	t := time.NewTicker(handshakeLogEvery)
	defer t.Stop()
	var failed, silent, timedOut, abandoned, completed, answerLate, noRequest int64
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		f, s, to, a, c := l.stats.failed.Load(), l.stats.silent.Load(), l.stats.timedOut.Load(), l.stats.abandoned.Load(), l.stats.completed.Load()
		al, nr := l.stats.answerLate.Load(), l.stats.noRequest.Load()
		maxw := l.stats.maxWaiting.Swap(l.stats.waiting.Load())
		switch {
		case f > failed:
			last := ""
			if p := l.stats.lastErr.Load(); p != nil {
				last = *p
			}
			l.log.Warn("hub: TLS handshakes failed", "failed", f-failed, "completed", c-completed,
				"no_client_hello", s-silent, "timed_out_with_slot", to-timedOut, "client_answer_late", al-answerLate,
				"given_up_waiting", a-abandoned, "max_waiting_for_slot", maxw, "timeout", l.timeout, "client_timeout", l.clientTimeout,
				"closed_before_first_request", nr-noRequest, "last_error", last)
		case nr > noRequest:
			l.log.Warn("hub: connections closed before their first request", "closed_before_first_request", nr-noRequest,
				"completed", c-completed, "max_waiting_for_slot", maxw)
		case maxw >= handshakeLogQueue:
			l.log.Info("hub: TLS handshakes queued", "completed", c-completed, "max_waiting_for_slot", maxw)
		}
		failed, silent, timedOut, abandoned, completed, answerLate, noRequest = f, s, to, a, c, al, nr
	}
}

// connState, the http.Server's ConnState hook, counts the connections
// whose handshake completed and that the server closed before any request
// came, as the client sent none within --read-header-timeout (l.timeout). A
// client gets EOF for these and no handshake failed, so the periodic log
// names them (closed_before_first_request). A client that closes its
// connection sooner (say, a load balancer's TLS check) is not counted.
func (l *handshakeListener) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		l.fresh.Store(c, time.Now())
	case http.StateActive, http.StateHijacked:
		l.fresh.Delete(c)
	case http.StateClosed:
		if t, ok := l.fresh.LoadAndDelete(c); ok && time.Since(t.(time.Time)) >= l.timeout {
			l.stats.noRequest.Add(1)
		}
	}
}

// readRecord reads the client's first TLS record (its ClientHello) whole;
// whatever is not a TLS handshake record is returned as read, for
// crypto/tls to refuse.
func readRecord(c net.Conn) ([]byte, error) {
	hdr := make([]byte, 5, 5+2048)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if hdr[0] != 22 || n > 1<<14+2048 { // not a handshake record: no more to wait for
		return hdr, nil
	}
	b := append(hdr, make([]byte, n)...)
	if _, err := io.ReadFull(c, b[5:]); err != nil {
		return nil, err
	}
	return b, nil
}

// looksLikeHTTP is http.Server's test of a TLS record header that is the
// start of a plain HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// slotConn is the connection under a handshake: it first returns what was
// read before (pre), and gives the slot back on the first read after a
// write, when the hub has sent its part and waits for the client.
type slotConn struct {
	net.Conn
	pre     []byte
	release func()
	wrote   atomic.Bool
	freed   atomic.Bool
}

func (c *slotConn) Read(b []byte) (int, error) {
	if !c.freed.Load() && c.wrote.Load() {
		c.freed.Store(true)
		c.release()
	}
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *slotConn) Write(b []byte) (int, error) {
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	return c.Conn.Write(b)
}

// slotPool hands out a fixed number of slots; when none is free, the
// newest waiter gets the next one (LIFO). Under a storm the connections
// that waited longest are the likeliest to have been given up by their
// client (hubclient gives a handshake 10 s, waiting included) and retried
// as new ones: serving the newest first spends the hub's time on
// handshakes still wanted, and a load balancer's check, always new, is
// answered within a few handshakes instead of after the whole queue.
type slotPool struct {
	mu      sync.Mutex
	free    int
	waiters []chan struct{}
}

// acquire takes a slot, waiting for one; false if done was closed first.
func (p *slotPool) acquire(done <-chan struct{}) bool {
	p.mu.Lock()
	if p.free > 0 {
		p.free--
		p.mu.Unlock()
		return true
	}
	ch := make(chan struct{}, 1)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-done:
	}
	p.mu.Lock()
	if i := slices.Index(p.waiters, ch); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.mu.Unlock()
		return false
	}
	p.mu.Unlock()
	p.release() // given meanwhile
	return false
}

// release gives a slot back: to the newest waiter, if any.
func (p *slotPool) release() {
	p.mu.Lock()
	if n := len(p.waiters); n > 0 {
		ch := p.waiters[n-1]
		p.waiters = p.waiters[:n-1]
		p.mu.Unlock()
		ch <- struct{}{}
		return
	}
	p.free++
	p.mu.Unlock()
}

// freeSlots is how many slots are free now.
func (p *slotPool) freeSlots() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.free
}
