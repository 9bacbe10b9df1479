// Package mgmt is the device daemon's management API: JSON over HTTP on a
// unix socket that only the daemon's user may open (mode 0600). The wire
// types are internal/mgmtclient's.
//
//	GET  /modules                 the modules and how they run
//	GET  /modules/{m}/logs        ?follow=true&tail=N&since=RFC3339|duration, streamed;
//	                              &timestamps=true starts each line with its RFC 3339 time
//	POST /modules/{m}/restart     restart a module's instance now
//	GET  /status                  the link to the hub, the outbox, the runtime,
//	                              the modules' links to the broker
//	GET  /events                  NDJSON: a snapshot (modules, link, outbox),
//	                              then each change of them, as it happens
//
// Errors are JSON {"message": "…"} with a fitting status code.
package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// Server serves the management API for one agent.
type Server struct {
	agent   *agent.Agent
	hubHost string
	log     *slog.Logger
	now     func() time.Time
	broker  func() []mgmtclient.BrokerModule
	msgs    func() mgmtclient.MessageQueue
	ca      func() *mgmtclient.DeviceCA
	kids    func() []mgmtclient.Child

	ev       *Events
	stopping <-chan struct{} // Serve's ctx: closed when the daemon stops
}

// WithBroker makes /status show the modules' links to the module broker,
// as modules returns them (sorted by module id; their ReportedVersion is
// filled in from the cached twins).
func (s *Server) WithBroker(modules func() []mgmtclient.BrokerModule) *Server {
	s.broker = modules
	return s
}

// WithMessages makes /status show the message queue, as msgs returns it.
func (s *Server) WithMessages(msgs func() mgmtclient.MessageQueue) *Server {
	s.msgs = msgs
	return s
}

// WithChildren makes /status list the child devices, as kids returns them.
func (s *Server) WithChildren(kids func() []mgmtclient.Child) *Server {
	s.kids = kids
	return s
}

// WithDeviceCA makes /status show the device CA, as ca returns it.
func (s *Server) WithDeviceCA(ca func() *mgmtclient.DeviceCA) *Server {
	s.ca = ca
	return s
}

// New returns the API of a. hubHost is shown by /status.
func New(a *agent.Agent, hubHost string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{agent: a, hubHost: hubHost, log: log, now: time.Now, ev: NewEvents(EventBuffer, time.Now)}
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /modules", s.modules)
	mux.HandleFunc("GET /modules/{module}/logs", s.logs)
	mux.HandleFunc("POST /modules/{module}/restart", s.restart)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// Errors of Listen, for errors.Is.
var (
	// ErrInUse: a daemon answers on the socket.
	ErrInUse = errors.New("a daemon answers on it")
	// ErrNotSocket: something other than a socket is at the path.
	ErrNotSocket = errors.New("not a socket")
)

// Listen makes the socket at path, mode 0600, in a directory it creates
// (0755) if needed. A socket left by a daemon that is gone is replaced; one a
// live daemon answers on is an error (ErrInUse), and so is anything at path
// that is not a socket (ErrNotSocket), which is left alone.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("management socket: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// Made under a temporary name and renamed once it is 0600, so that it is
	// never open to others, whatever the umask.
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := removeStale(tmp); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("management socket: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("management socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("management socket: %w", err)
	}
	return l, nil
}

// removeStale removes the socket at path if nobody answers on it. Nothing
// there is fine; a live socket or a file of another type is an error that
// names path.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("management socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("management socket %s: %w but %s; outpost replaces only a socket a daemon left: move it away, or pass another --mgmt-socket", path, ErrNotSocket, fileKind(fi.Mode()))
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("management socket %s: %w", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("management socket: remove the stale %s: %w", path, err)
	}
	return nil
}

// fileKind names the type of a file that is not a socket.
func fileKind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link"
	case fs.ModeNamedPipe:
		return "a named pipe"
	}
	return "a device or other special file"
}

// Serve serves the API on l until ctx is done.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.stopping = ctx.Done()
	tctx, stopTracking := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopTracking()
	s.track(tctx, &wg)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
		return nil
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, mgmtclient.ErrorBody{Message: msg})
}

// Module converts the agent's status of a module to the wire type.
func Module(m agent.ModuleStatus) mgmtclient.Module {
	var hc *mgmtclient.HealthCheck
	if h := m.LastHealthCheck; h != nil {
		hc = &mgmtclient.HealthCheck{At: h.At, OK: h.OK, Output: h.Output}
	}
	return mgmtclient.Module{
		LastHealthCheck: hc,
		Name:            m.Name, Status: m.RuntimeStatus, DesiredStatus: m.DesiredStatus, Image: m.Image,
		ImageDigest: m.ImageDigest, Version: m.Version, RestartPolicy: m.RestartPolicy,
		StartupOrder: m.StartupOrder, Restarts: m.RestartCount, StartedAt: m.StartedAt,
		ExitedAt: m.ExitedAt, NextRestartAt: m.NextRestartAt, ExitCode: m.ExitCode, Pid: m.Pid,
		Description: m.Description,
	}
}

func (s *Server) modules(w http.ResponseWriter, _ *http.Request) {
	out := []mgmtclient.Module{}
	for _, m := range s.agent.Modules() {
		out = append(out, Module(m))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	st, err := s.agent.Syncer().Status()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "read the sync status: "+err.Error())
		return
	}
	rt := s.agent.Runtime()
	out := mgmtclient.Status{
		DeviceID: s.agent.DeviceID(), HubHost: s.hubHost, Runtime: rt.Name(), Isolated: rt.Isolated(),
		Connected: st.Connected, Since: st.Since, LastSync: st.LastSync,
		LastError: st.LastError, LastErrorAt: st.LastErrorAt,
		Outbox:   mgmtclient.Outbox{Patches: st.Outbox.Patches, Bytes: st.Outbox.Bytes, Oldest: st.Outbox.Oldest},
		Twins:    []mgmtclient.TwinVersions{},
		Broker:   mgmtclient.BrokerStatus{Modules: []mgmtclient.BrokerModule{}},
		Children: []mgmtclient.Child{},
	}
	reported := map[string]int64{}
	for _, tv := range st.Twins {
		out.Twins = append(out.Twins, mgmtclient.TwinVersions{ModuleID: tv.ModuleID, DesiredVersion: tv.DesiredVersion, ReportedVersion: tv.ReportedVersion,
			HubDesiredVersion: tv.HubDesiredVersion, HubReportedVersion: tv.HubReportedVersion, HubSeenAt: tv.HubSeenAt, QueuedReports: tv.QueuedReports})
		reported[tv.ModuleID] = tv.ReportedVersion
	}
	if s.broker != nil {
		for _, m := range s.broker() {
			m.ReportedVersion = reported[m.ModuleID]
			out.Broker.Modules = append(out.Broker.Modules, m)
		}
	}
	if s.msgs != nil {
		q := s.msgs()
		out.Messages = &q
	}
	if s.ca != nil {
		out.DeviceCA = s.ca()
	}
	if s.kids != nil {
		out.Children = append(out.Children, s.kids()...)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	m := r.PathValue("module")
	if err := s.agent.Restart(r.Context(), m); err != nil {
		writeError(w, codeFor(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"restarted": m})
}

func codeFor(err error) int {
	switch {
	case errors.Is(err, agent.ErrUnknownModule), errors.Is(err, runtime.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusInternalServerError
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	m := r.PathValue("module")
	q := r.URL.Query()
	var opts runtime.LogOptions
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "follow: want true or false")
			return
		}
		opts.Follow = b
	}
	if v := q.Get("timestamps"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "timestamps: want true or false")
			return
		}
		opts.Timestamps = b
	}
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "tail: want a number of lines")
			return
		}
		opts.Tail = n
	}
	if v := q.Get("since"); v != "" {
		t, err := ParseSince(v, s.now())
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: "+err.Error())
			return
		}
		opts.Since = t
	}
	rc, err := s.agent.Logs(r.Context(), m, opts)
	if err != nil {
		code := codeFor(err)
		if code == http.StatusNotFound && !errors.Is(err, agent.ErrUnknownModule) {
			writeError(w, code, fmt.Sprintf("module %s has no instance yet (no logs)", m))
			return
		}
		writeError(w, code, err.Error())
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			if err != io.EOF && r.Context().Err() == nil {
				s.log.Error("logs", "module", m, "err", err)
			}
			return
		}
	}
}

// ParseSince reads a time (RFC 3339) or a duration before now ("10m").
func ParseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("want a time (RFC 3339) or a duration such as 10m, got %q", v)
	}
	return now.Add(-d), nil
}
