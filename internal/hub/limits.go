package hub

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// Limits bound what one client can hold of the hub: how long it may take to
// send a request and to take an answer, how long an idle connection stays
// open, and how many connections one remote address may have open at once.
// Zero fields take the defaults (DefaultLimits).
type Limits struct {
	// ReadHeaderTimeout bounds the request headers, and the hub's part of
	// a TLS handshake, from its turn (a handshake waiting its turn in a
	// storm of connections is not cut; handshake.go).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a request body, counted from the end of
	// the headers, and each wait for the client in a TLS handshake: its
	// ClientHello, from the accept, and its answer to the hub's part.
	ReadTimeout time.Duration
	// WriteTimeout bounds handling a request and writing its answer. A sync
	// long poll gets its wait (up to hubapi.MaxWait) on top.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle that long.
	IdleTimeout time.Duration
	// MaxConnsPerIP is how many connections one remote IP address may have
	// open; more are closed as soon as they are accepted. -1: no limit.
	MaxConnsPerIP int
}

// DefaultLimits are the limits of a hub whose Config leaves them zero. A
// device keeps one connection (its sync long poll) and a CLI a few, so 1024
// connections per address leave room for a large fleet behind one NAT.
var DefaultLimits = Limits{
	ReadHeaderTimeout: 10 * time.Second,
	ReadTimeout:       30 * time.Second,
	WriteTimeout:      30 * time.Second,
	IdleTimeout:       90 * time.Second,
	MaxConnsPerIP:     1024,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	for _, f := range []struct{ v, def *time.Duration }{
		{&l.ReadHeaderTimeout, &d.ReadHeaderTimeout},
		{&l.ReadTimeout, &d.ReadTimeout},
		{&l.WriteTimeout, &d.WriteTimeout},
		{&l.IdleTimeout, &d.IdleTimeout},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if l.MaxConnsPerIP == 0 {
		l.MaxConnsPerIP = d.MaxConnsPerIP
	}
	return l
}

// Validate reports a limit that makes no sense, naming it by its flag of
// `outpost hub serve`.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"read-header-timeout", l.ReadHeaderTimeout},
		{"read-timeout", l.ReadTimeout},
		{"write-timeout", l.WriteTimeout},
		{"idle-timeout", l.IdleTimeout},
	} {
		if f.v < 0 {
			return fmt.Errorf("--%s %s is negative: give a duration such as 30s (0 for the default)", f.name, f.v)
		}
	}
	if l.MaxConnsPerIP < -1 {
		return fmt.Errorf("--max-conns-per-ip %d: give a positive number (-1 for no limit, 0 for the default %d)", l.MaxConnsPerIP, DefaultLimits.MaxConnsPerIP)
	}
	return nil
}

// perIPListener closes connections over the per-address limit as soon as
// it accepts them, before any TLS handshake.
type perIPListener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open map[string]int
}

func limitPerIP(ln net.Listener, max int) net.Listener {
	if max < 0 {
		return ln
	}
	return &perIPListener{Listener: ln, max: max, open: map[string]int{}}
}

func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		l.mu.Lock()
		ok := l.open[ip] < l.max
		if ok {
			l.open[ip]++
		}
		l.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *perIPListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// countedConn gives its slot back when it is closed, once.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// hasBody reports whether r may carry a body (a Content-Length above 0, or
// chunked).
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// guard sets a request's first deadlines: ReadTimeout to read its body and
// that plus WriteTimeout to answer. No server-wide ReadTimeout or
// WriteTimeout is set, as those would also cut sync long polls; wrap sets the
// deadline of the answer again once the body is read (a long poll's with its
// wait on top) and lifts the read deadline.
func (h *Hub) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		if hasBody(r) {
			rc.SetReadDeadline(now.Add(h.limits.ReadTimeout))
			now = now.Add(h.limits.ReadTimeout)
		}
		rc.SetWriteDeadline(now.Add(h.limits.WriteTimeout))
		next.ServeHTTP(w, r)
	})
}

// refuse answers e on a connection it then closes, without reading the
// request's body: a client refused (say, for a bad token) cannot hold the
// connection by trickling a body the hub would otherwise drain.
func refuse(w http.ResponseWriter, r *http.Request, e *apiError) {
	w.Header().Set("Connection", "close")
	writeError(w, e)
	if hasBody(r) {
		http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

// readBodyWithin reads the whole body of r (at most MaxBodySize) under the
// read deadline guard set, then lifts that deadline, so that the connection's
// background read does not end the request's context while it is handled.
func (h *Hub) readBodyWithin(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	b, err := hubapi.ReadBody(http.MaxBytesReader(w, r.Body, bodyLimit(r)), r.ContentLength, MaxBodySize)
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(h.limits.WriteTimeout)) // for the answer, whatever it is
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, toAPIError(err, "")
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, errorf(http.StatusRequestTimeout, "RequestTimeout", "the request body did not arrive within %s (the hub's --read-timeout)", h.limits.ReadTimeout)
		}
		return nil, errorf(http.StatusBadRequest, "ArgumentInvalid", "reading the request body: %v", err)
	}
	rc.SetReadDeadline(time.Time{})
	return b, nil
}
