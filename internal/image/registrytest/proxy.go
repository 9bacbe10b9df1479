package registrytest

import (
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Request is one request a Proxy saw.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Status   int       // what the client was answered
	Faulted  bool      // answered by an injected fault, not the registry
	Start    time.Time // when it arrived
	End      time.Time // when its answer was written (for a fault: begun)
}

func (r Request) String() string {
	s := r.Method + " " + r.Path
	if r.RawQuery != "" {
		s += "?" + r.RawQuery
	}
	return s
}

// Fault is an answer a Proxy gives instead of the registry's.
type Fault struct {
	Status     int
	RetryAfter string // the Retry-After header, if any
}

// Proxy is a reverse proxy in front of a registry, on 127.0.0.1. It logs
// every request, answers with injected faults when told to, and can die in
// the middle of an upload.
type Proxy struct {
	// Addr is host:port of the proxy: push here.
	Addr string

	srv   *httptest.Server
	proxy *httputil.ReverseProxy

	mu     sync.Mutex
	log    []*Request
	faults []pendingFault

	killAt   int64 // kill once this many upload bytes went through; 0: never
	onKill   func()
	uploaded atomic.Int64
	killed   atomic.Bool
	killOnce sync.Once
}

type pendingFault struct {
	match func(*http.Request) bool
	fault Fault
}

// NewProxy starts a proxy in front of the registry at backend (host:port,
// plain HTTP). It stops at the test's end.
func NewProxy(t testing.TB, backend string) *Proxy {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: backend}
	p := &Proxy{}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the client's Host: registries build upload Locations from it.
			pr.Out.Host = pr.In.Host
		},
		ErrorLog: log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
		FlushInterval: -1,
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.Addr = strings.TrimPrefix(p.srv.URL, "http://")
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	return p
}

// NewInProcessProxy starts go-containerregistry's registry behind a proxy.
func NewInProcessProxy(t testing.TB) *Proxy {
	t.Helper()
	return NewProxy(t, InProcess(t).Addr)
}

// Ref returns a reference to repo on the proxy.
func (p *Proxy) Ref(repo string) string { return p.Addr + "/" + repo }

// Fail makes the proxy answer the next requests that match with faults,
// one fault per request, in order.
func (p *Proxy) Fail(match func(*http.Request) bool, faults ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range faults {
		p.faults = append(p.faults, pendingFault{match: match, fault: f})
	}
}

// KillAfter makes the proxy die once n bytes of blob uploads went through
// it: it stops listening and drops every connection, in the middle of the
// upload. then, if not nil, runs at that moment (to kill the registry
// behind it too).
func (p *Proxy) KillAfter(n int64, then func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killAt, p.onKill = n, then
}

// Kill stops the proxy at once: no more connections, open ones dropped.
func (p *Proxy) Kill() {
	p.killOnce.Do(func() {
		p.killed.Store(true)
		p.srv.Listener.Close()
		p.srv.CloseClientConnections()
		p.mu.Lock()
		then := p.onKill
		p.mu.Unlock()
		if then != nil {
			then()
		}
	})
}

// Requests returns what the proxy has seen so far, in order of arrival.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Request, len(p.log))
	for i, r := range p.log {
		out[i] = *r
	}
	return out
}

// Reset forgets the requests seen so far.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = nil
}

// Uploaded returns how many bytes of blob uploads went through.
func (p *Proxy) Uploaded() int64 { return p.uploaded.Load() }

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	rec := &Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Start: time.Now()}
	p.mu.Lock()
	p.log = append(p.log, rec)
	var fault *Fault
	for i, f := range p.faults {
		if f.match == nil || f.match(r) {
			fault = &f.fault
			p.faults = append(p.faults[:i:i], p.faults[i+1:]...)
			break
		}
	}
	killAt := p.killAt
	p.mu.Unlock()

	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	var end time.Time
	if fault != nil {
		io.Copy(io.Discard, r.Body)
		// The client cannot have the answer before this.
		end = time.Now()
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		sw.WriteHeader(fault.Status)
		io.WriteString(sw, `{"errors":[{"code":"UNKNOWN","message":"injected by registrytest"}]}`)
	} else {
		if r.Body != nil && (r.Method == http.MethodPatch || r.Method == http.MethodPut) {
			r.Body = &countingBody{ReadCloser: r.Body, p: p, killAt: killAt}
		}
		p.proxy.ServeHTTP(sw, r)
	}

	if end.IsZero() {
		end = time.Now()
	}
	p.mu.Lock()
	rec.Status, rec.Faulted, rec.End = sw.status, fault != nil, end
	p.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type countingBody struct {
	io.ReadCloser
	p      *Proxy
	killAt int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	if c.p.killed.Load() {
		return 0, errKilled
	}
	n, err := c.ReadCloser.Read(b)
	total := c.p.uploaded.Add(int64(n))
	if c.killAt > 0 && total >= c.killAt {
		c.p.Kill()
		return 0, errKilled
	}
	return n, err
}

// Match returns a matcher for requests with method (any if "") whose path
// contains part (any if "").
func Match(method, part string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return (method == "" || r.Method == method) && strings.Contains(r.URL.Path, part)
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
