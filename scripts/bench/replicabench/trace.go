package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http/httptrace"
	"sync"
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
