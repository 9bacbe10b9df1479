package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// traceKey is the context key of a request's reqTrace.
type traceKey struct{}

// reqTrace is what happened to one request, to say where an error came
// from: while connecting (TCP, TLS), or on a connection the request reused,
// before or after the request was written, and after how long.
type reqTrace struct {
	mu        sync.Mutex
	start     time.Time
	local     string // the connection's local address (to find it in HAProxy's log)
	dialed    bool
	tlsStart  time.Time
	tlsDone   time.Time
	tlsErr    error
	gotConn   time.Time
	reused    bool
	idle      time.Duration // how long a reused connection was idle
	wrote     time.Time
	firstByte time.Time
}

// traced is ctx with a new reqTrace on the request made with it.
func traced(ctx context.Context) (context.Context, *reqTrace) {
	t := &reqTrace{start: time.Now()}
	set := func(f func()) { t.mu.Lock(); f(); t.mu.Unlock() }
	ct := &httptrace.ClientTrace{
		ConnectStart:      func(string, string) { set(func() { t.dialed = true }) },
		TLSHandshakeStart: func() { set(func() { t.tlsStart = time.Now() }) },
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			set(func() { t.tlsDone, t.tlsErr = time.Now(), err })
		},
		GotConn: func(i httptrace.GotConnInfo) {
			set(func() {
				t.gotConn, t.reused, t.idle = time.Now(), i.Reused, i.IdleTime
				if t.local == "" && i.Conn != nil {
					t.local = i.Conn.LocalAddr().String()
				}
			})
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { set(func() { t.wrote = time.Now() }) },
		GotFirstResponseByte: func() { set(func() { t.firstByte = time.Now() }) },
	}
	return httptrace.WithClientTrace(context.WithValue(ctx, traceKey{}, t), ct), t
}

// stage says where the request was when it failed, and when (ms from the
// request's start) it got there: connected, TLS handshake started and done,
// connection in hand (reused, idle how long), request written, first byte.
func (t *reqTrace) stage() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ms := func(a time.Time) string {
		if a.IsZero() {
			return "-"
		}
		return fmt.Sprint(a.Sub(t.start).Milliseconds())
	}
	var where string
	switch {
	case !t.tlsStart.IsZero() && (t.tlsDone.IsZero() || t.tlsErr != nil):
		where = "in the TLS handshake"
	case t.gotConn.IsZero():
		where = "before a connection"
	case t.wrote.IsZero():
		where = "before the request was written"
	case t.firstByte.IsZero():
		where = "waiting for the answer"
	default:
		where = "reading the answer"
	}
	return fmt.Sprintf("%s (reused %v, idle %s; ms: tls %s-%s conn %s wrote %s byte %s failed %s)", where, t.reused, t.idle.Round(time.Millisecond),
		ms(t.tlsStart), ms(t.tlsDone), ms(t.gotConn), ms(t.wrote), ms(t.firstByte), ms(time.Now()))
}

// readTimeout is the hub's --read-timeout (its default), the longest it
// waits for a client's answer to its part of the TLS handshake.
const readTimeout = 30 * time.Second

// cut names err when it is the hub closing a new connection before
// answering, at one of its limits on a slow client: "" for other errors.
// On a machine where 10,000 simulated devices share 2 cores with the hub,
// a device's goroutine may take longer than the hub waits: more than
// --read-timeout (30 s) to answer the hub's part of the TLS handshake (the
// hub counts it client_answer_late), or, its handshake done, more than
// --read-header-timeout (10 s) to send its request (the hub counts it
// closed_before_first_request). The device gets EOF and retries.
func (t *reqTrace) cut(err error) string {
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && !strings.HasSuffix(err.Error(), "EOF") &&
		!strings.Contains(err.Error(), "server closed idle connection") {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reused || !t.firstByte.IsZero() || t.tlsStart.IsZero() {
		return ""
	}
	end := t.tlsDone
	if end.IsZero() || t.tlsErr != nil {
		end = time.Now()
	}
	if end.Sub(t.tlsStart) >= readTimeout {
		return "cut by the hub: the device took more than --read-timeout (30 s) to answer its part of the TLS handshake (the replicas' client_answer_late)"
	}
	if time.Since(t.start) >= readTimeout && (t.tlsDone.IsZero() || t.tlsErr != nil) {
		return "cut by the hub: the device's TLS handshake not done within --read-timeout (30 s) of its connection (the replicas' no_client_hello or client_answer_late)"
	}
	if t.tlsErr == nil && !t.tlsDone.IsZero() {
		return "cut by the hub: TLS done, the device's request not in within --read-header-timeout (10 s) (the replicas' closed_before_first_request)"
	}
	return ""
}

// cpuSlots, when not nil, bounds the devices' TLS handshakes computing at
// once in this process (-device-cpu). 10,000 simulated devices share this
// machine's cores: with all their handshakes at once, Go's scheduler shares
// the time among all of them, and each takes as long as all together — 30 s
// and more, past the hub's --read-timeout for the device's answer, or past
// --read-header-timeout between its handshake and its request: the hub cuts
// the connection and the device gets EOF. Real devices have a CPU each. A
// slot is taken when the device reads the hub's part of the handshake and
// given back when it has sent its answer; the others wait at no cost, in
// turn (a channel's waiters are served first come, first served).
var cpuSlots chan struct{}

// slotted is a device's connection whose TLS answer takes a cpuSlot.
type slotted struct {
	net.Conn
	state atomic.Int32 // 0: no slot yet, 1: holds one, 2: gave it back
}

func (c *slotted) Read(b []byte) (int, error) {
	if c.state.CompareAndSwap(0, 1) {
		cpuSlots <- struct{}{}
	}
	return c.Conn.Read(b)
}

func (c *slotted) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if c.state.CompareAndSwap(1, 2) {
		<-cpuSlots
	}
	return n, err
}

func (c *slotted) Close() error {
	if c.state.CompareAndSwap(1, 2) {
		<-cpuSlots
	}
	return c.Conn.Close()
}
