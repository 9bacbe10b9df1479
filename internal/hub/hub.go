// Package hub is outpost's hub: the upstream registry of device and module
// identities, twins and deployments, served over IoT Hub's service REST API
// and outpost's device sync endpoints. It stores everything in a store.Store
// through the registry package.
package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
)

// MaxBodySize is the largest request body the hub reads; larger ones get 413.
const MaxBodySize = 256 << 10

// CredentialsFile holds the owner connection string and the CA path, 0600.
const CredentialsFile = "credentials.json"

// Config configures a hub.
type Config struct {
	DataDir      string
	Listen       string   // address to listen on, e.g. ":8443" or "127.0.0.1:0"
	HostName     string   // host[:port] clients use; default from Listen (localhost:PORT)
	SANs         []string // extra names for the server certificate
	InsecureHTTP bool     // serve plain HTTP (local development only)
	Limits       Limits   // per-client limits; zero fields take DefaultLimits
	Logger       *slog.Logger
	Now          func() time.Time
}

// Credentials are what a first client needs: the owner connection string
// and the CA to trust.
type Credentials struct {
	ConnectionString string `json:"connectionString"`
	CAFile           string `json:"caFile,omitempty"`
}

// Hub is a running hub.
type Hub struct {
	cfg      Config
	st       *store.FileStore
	reg      *registry.Registry
	log      *slog.Logger
	now      func() time.Time
	hostName string
	tls      *tls.Config
	ln       net.Listener
	notify   *notifier
	limits   Limits

	uploads sync.Map // device id → *sync.Mutex

	mu             sync.RWMutex
	policies       map[string]*Policy
	policyVersions map[string]int64 // store version of each of policies
}

// Open opens (or creates) the hub's data dir and listens, but does not serve
// yet. firstStart reports a data dir that was new: the caller prints the
// credentials then.
func Open(cfg Config) (h *Hub, firstStart bool, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Listen == "" {
		cfg.Listen = ":8443"
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, false, fmt.Errorf("hub limits: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("hub data dir: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "store"))
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	h = &Hub{cfg: cfg, st: st, reg: registry.New(st), log: cfg.Logger, now: cfg.Now, policies: map[string]*Policy{}, limits: cfg.Limits.withDefaults()}
	if firstStart, err = h.loadPolicies(); err != nil {
		return nil, false, err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, false, fmt.Errorf("hub: listen on %s: %w", cfg.Listen, err)
	}
	h.ln = ln
	h.hostName = cfg.HostName
	if h.hostName == "" {
		h.hostName = defaultHostName(ln.Addr())
	}
	if !cfg.InsecureHTTP {
		names := certNames(h.hostName, cfg.SANs)
		cert, err := ensureTLS(cfg.DataDir, names, h.now())
		if err != nil {
			ln.Close()
			return nil, false, err
		}
		h.tls = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	}
	if err := h.writeCredentials(); err != nil {
		ln.Close()
		return nil, false, err
	}
	h.notify = newNotifier()
	return h, firstStart, nil
}

// defaultHostName is localhost with the listening port (none for 443).
func defaultHostName(addr net.Addr) string {
	host, port := "localhost", ""
	if ta, ok := addr.(*net.TCPAddr); ok {
		if !ta.IP.IsUnspecified() && !ta.IP.IsLoopback() {
			host = ta.IP.String()
		}
		port = strconv.Itoa(ta.Port)
	}
	if port == "443" || port == "" {
		return host
	}
	return net.JoinHostPort(host, port)
}

func certNames(hostName string, sans []string) []string {
	host := hostName
	if h, _, err := net.SplitHostPort(hostName); err == nil {
		host = h
	}
	names := []string{host, "localhost", "127.0.0.1", "::1"}
	if hn, err := os.Hostname(); err == nil {
		names = append(names, hn)
	}
	names = append(names, sans...)
	seen := map[string]bool{}
	out := names[:0]
	for _, n := range names {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// Addr is the address the hub listens on.
func (h *Hub) Addr() net.Addr { return h.ln.Addr() }

// HostName is the host[:port] in the hub's connection strings.
func (h *Hub) HostName() string { return h.hostName }

// Registry gives in-process access to the hub's registry (quickstart, tests).
func (h *Hub) Registry() *registry.Registry { return h.reg }

// Credentials returns the owner connection string and the CA file.
func (h *Hub) Credentials() Credentials {
	h.mu.RLock()
	owner := h.policies["owner"]
	h.mu.RUnlock()
	cs := &identity.ConnectionString{HostName: h.hostName, SharedAccessKeyName: owner.KeyName, SharedAccessKey: owner.PrimaryKey, UseInsecureHTTP: h.cfg.InsecureHTTP}
	c := Credentials{ConnectionString: cs.String()}
	if !h.cfg.InsecureHTTP {
		c.CAFile = filepath.Join(h.cfg.DataDir, CAFile)
	}
	return c
}

func (h *Hub) writeCredentials() error {
	b, err := json.MarshalIndent(h.Credentials(), "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(h.cfg.DataDir, CredentialsFile), append(b, '\n'))
}

// ReadCredentials reads the credentials a hub wrote in its data dir.
func ReadCredentials(dataDir string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(filepath.Join(dataDir, CredentialsFile))
	if errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("no hub credentials in %s: start the hub once with `outpost hub serve --data %s`", dataDir, dataDir)
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", filepath.Join(dataDir, CredentialsFile), err)
	}
	return c, nil
}

// loadPolicies reads the shared access policies, creating `owner` (all
// rights) on first start.
func (h *Hub) loadPolicies() (created bool, err error) {
	recs, err := h.st.List("policies/")
	if err != nil {
		return false, err
	}
	for _, rec := range recs {
		var p Policy
		if err := json.Unmarshal(rec.Value, &p); err != nil {
			return false, fmt.Errorf("policy record %s: %w", rec.Key, err)
		}
		h.policies[p.KeyName] = &p
	}
	if _, ok := h.policies["owner"]; ok {
		return false, nil
	}
	p := &Policy{KeyName: "owner", Rights: []string{RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect}}
	if p.PrimaryKey, err = identity.NewKey(); err != nil {
		return false, err
	}
	if p.SecondaryKey, err = identity.NewKey(); err != nil {
		return false, err
	}
	b, _ := json.Marshal(p)
	if _, err := h.st.Put("policies/owner", b, 0); err != nil {
		return false, fmt.Errorf("create the owner policy: %w", err)
	}
	h.policies["owner"] = p
	return true, nil
}

// Serve serves until ctx is done, then drains requests in flight (up to
// 10 s) and returns nil.
func (h *Hub) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go h.notify.run(ctx, h.st)
	// No ReadTimeout or WriteTimeout: they would cut sync long polls. The
	// handler sets deadlines per request instead (guard, wrap).
	srv := &http.Server{
		Handler:           h.Handler(),
		ReadHeaderTimeout: h.limits.ReadHeaderTimeout,
		IdleTimeout:       h.limits.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ln := limitPerIP(h.ln, h.limits.MaxConnsPerIP)
	if h.tls != nil {
		ln = tls.NewListener(ln, h.tls)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Long polls end with the base context; other requests get 10 s.
	drain, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := srv.Shutdown(drain); err != nil {
		return fmt.Errorf("hub: drain: %w", err)
	}
	return nil
}

// Close releases the store. Call it after Serve returns.
func (h *Hub) Close() error {
	h.ln.Close()
	return h.st.Close()
}

// writeFileAtomic writes data to path with mode 0600: temp file, fsync, rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
