// Package hub is outpost's hub: the upstream registry of device and module
// identities, twins and deployments, served over IoT Hub's service REST API
// and outpost's device sync endpoints. It stores everything in a store.Store
// through the registry package.
package hub

import (
	"bytes"
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
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/keylock"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
)

// MaxBodySize is the largest request body the hub reads; larger ones get 413.
const MaxBodySize = 256 << 10

// CredentialsFile holds the owner connection string and the CA path, 0600.
const CredentialsFile = "credentials.json"

// Config configures a hub.
type Config struct {
	DataDir string
	// Listen is the address to serve HTTPS on (default DefaultListen, :443),
	// e.g. "127.0.0.1:8443" or "127.0.0.1:0".
	Listen string
	// Listener, when set, is used instead of listening on Listen.
	Listener net.Listener
	// FallbackListen, when set, is listened on when Listen cannot be bound;
	// Hub.Fallback says why. Without it, Open fails.
	FallbackListen string
	// AMQPListen is where the hub answers AMQP clients (over TLS) with AMQP's
	// own refusal, so that they fail at once instead of retrying; "" for
	// nowhere (but see AMQPBeside).
	AMQPListen string
	// AMQPListener, when set, is used instead of listening on AMQPListen.
	AMQPListener net.Listener
	// AMQPBeside, with no AMQPListen, refuses AMQP at port 5671 (IoT Hub's
	// AMQPS) of the host the hub listens on, when the hub listens on port
	// 443: where Microsoft's SDKs can reach it. A port 5671 that cannot be
	// bound is then a warning (Hub.AMQPSkipped), not an error.
	AMQPBeside   bool
	HostName     string   // host[:port] clients use; default from Listen (localhost, with :PORT unless 443)
	SANs         []string // extra names for the server certificate
	InsecureHTTP bool     // serve plain HTTP (local development only)
	Limits       Limits   // per-client limits; zero fields take DefaultLimits
	Logger       *slog.Logger
	Now          func() time.Time
	// PresenceGrace is how long a device shows connected after its last
	// request ended (default 10 s).
	PresenceGrace time.Duration
	// Reinit makes new state for what a data dir set up before lacks (an
	// empty registry, a new owner key, a new CA) instead of refusing to start.
	Reinit bool
	// Store, when set, holds the hub's records instead of DataDir/store: etcd,
	// shared by replicas (backend.go). The hub closes it. DataDir then holds
	// only this replica's copies of the TLS files and credentials.json.
	Store store.Store
	// TLSCertFile and TLSKeyFile, when set, are the server certificate and key
	// to serve, instead of ones the hub issues from its CA.
	TLSCertFile, TLSKeyFile string
}

// Credentials are what a first client needs: the owner connection string
// and the CA to trust.
type Credentials struct {
	ConnectionString string `json:"connectionString"`
	CAFile           string `json:"caFile,omitempty"`
}

// Hub is a running hub.
type Hub struct {
	cfg       Config
	st        store.Store
	txnLimit  int       // ops in one store Txn at most (etcd's --max-txn-ops); 0: any number
	syncSlots *slotPool // syncs that answer at once take turns (admit.go)
	reg       *registry.Registry
	log       *slog.Logger
	now       func() time.Time
	hostName  string
	tls       *tls.Config
	ln        net.Listener
	fallback  *ListenFallback
	amqpLn    net.Listener // nil: AMQP is not answered
	amqpSkip  *ListenError // the AMQP address that could not be bound, with AMQPBeside
	notify    *notifier
	changes   *changeLog // the operators' change stream (changes.go)
	limits    Limits

	// autodeploy applies automatic deployments (configurations.go).
	autodeploy *registry.AutoDeployer

	index    *twinIndex    // every twin, decoded, for queries (empty on etcd)
	uploads  keylock.Locks // a device's uploads, one at a time
	order    *writeOrder   // the store writes under way; nil on etcd (syncorder.go)
	echoes   sync.Map      // twin record key → the version its device's upload wrote; see echoed
	nEchoes  atomic.Int64  // entries in echoes, about (see remember)
	presence *presence
	// longPolls counts the sync long polls waiting now (status.go).
	longPolls atomic.Int64
	// readiness is what the store probes found (ready.go).
	readiness readiness

	methodsOnce sync.Once
	methods     methodTable // pending direct method calls (methods.go)

	ckMu sync.Mutex
	ck   []byte // the cursor key, once read

	mu             sync.RWMutex
	policies       map[string]*Policy
	verified       tokenCache       // policy SAS tokens whose signature was checked
	policyVersions map[string]int64 // store version of each of policies
}

// Open listens and opens the hub's data dir, setting it up if it is missing or
// empty, but does not serve yet. A data dir set up before that lacks part of
// its state is refused with a *MissingStateError (see Config.Reinit). A hub
// that cannot listen, or fails on its first start, leaves no data dir behind.
// showCredentials reports an owner connection string never shown: the caller
// prints it, then calls CredentialsShown.
func Open(cfg Config) (h *Hub, showCredentials bool, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, false, fmt.Errorf("hub limits: %w", err)
	}
	ln, fallback := cfg.Listener, (*ListenFallback)(nil)
	if ln == nil {
		if ln, fallback, err = listen("hub", "--listen", cfg.Listen, cfg.FallbackListen); err != nil {
			return nil, false, err
		}
	}
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()
	amqpLn, amqpSkip, err := listenAMQP(cfg, ln.Addr())
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if err != nil && amqpLn != nil {
			amqpLn.Close()
		}
	}()
	fresh, err := isFresh(cfg.DataDir)
	if err != nil {
		return nil, false, err
	}
	if fresh {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, false, fmt.Errorf("hub data dir: %w", err)
		}
	}
	h = &Hub{cfg: cfg, log: cfg.Logger, now: cfg.Now, policies: map[string]*Policy{}, ln: ln, fallback: fallback,
		amqpLn: amqpLn, amqpSkip: amqpSkip, limits: cfg.Limits.withDefaults(), syncSlots: &slotPool{free: syncSlots}}
	if err := h.openStore(fresh); err != nil {
		if fresh && !errors.Is(err, store.ErrLocked) { // not another hub's: ours to remove
			removeContents(cfg.DataDir)
		}
		return nil, false, err
	}
	h.st, h.order = orderWrites(h.st) // before anything writes through it
	h.txnLimit = store.TxnLimit(h.st)
	st := h.st // h is nil by the time a deferred call sees an error
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if fresh {
		defer func() {
			if err != nil { // while the store's lock is held: the data dir is ours
				removeContents(cfg.DataDir)
			}
		}()
	}
	// System modules first ($agent records become $edgeAgent), then the query
	// index over what the store then holds.
	if err := h.migrateSystemModules(); err != nil {
		return nil, false, err
	}
	h.index = newTwinIndex(h.now)
	if cfg.Store != nil { // a replica: queries read pages of the store (querypaged.go)
		h.index.paged = h.st
		h.reg = registry.New(h.st)
	} else {
		h.reg = registry.New(indexingStore{h.st, h.index})
	}
	h.reg.OwnDeviceData(func(id string) ([]string, []string) {
		// Method calls a dead replica left in the store (methodshared.go) go
		// with their device too.
		return []string{telemetryStateKey(id)}, []string{telemetryPrefix(id), methodCallKey(id, ""), methodResultKey(id, "")}
	})
	if h.index.paged == nil {
		if err := h.index.load(context.Background(), h.st); err != nil { // its watches end when the store closes
			return nil, false, fmt.Errorf("hub: index twins: %w", err)
		}
	} else { // direct method calls cross replicas through the store (methodshared.go)
		sm, err := newStoreMethods(context.Background(), h.st, h.now) // its watches end when the store closes
		if err != nil {
			return nil, false, fmt.Errorf("hub: read pending method calls: %w", err)
		}
		h.methods = sm
	}
	h.autodeploy = h.reg.NewAutoDeployer(h.log)
	if err := h.loadPolicies(); err != nil {
		return nil, false, err
	}
	h.hostName = cfg.HostName
	if h.hostName == "" {
		h.hostName = defaultHostName(ln.Addr())
	}
	if !cfg.InsecureHTTP {
		names := certNames(h.hostName, cfg.SANs)
		cert, err := h.serverCert(names)
		if err != nil {
			return nil, false, err
		}
		h.recordCA()
		h.tls = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	}
	if err := h.writeCredentials(); err != nil {
		if fresh {
			return nil, false, err
		}
		// Not fatal: the hub serves; `hub credentials` may show a stale file meanwhile.
		h.log.Warn("hub: could not update "+CredentialsFile, "err", err)
	}
	h.notify = newNotifier()
	h.changes = newChangeLog()
	h.presence = newPresence(cfg.Now, cfg.PresenceGrace)
	h.presence.changed = h.changes.add // a connection state is live in the fleet view
	h.index.connState = h.connectionState
	return h, !h.credentialsShown(), nil
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

// Fallback says why the hub listens on Config.FallbackListen instead of
// Config.Listen; nil when it listens where it was asked to.
func (h *Hub) Fallback() *ListenFallback { return h.fallback }

// AMQPAddr is the address where the hub refuses AMQP; nil for none.
func (h *Hub) AMQPAddr() net.Addr {
	if h.amqpLn == nil {
		return nil
	}
	return h.amqpLn.Addr()
}

// AMQPSkipped is why the AMQP address of Config.AMQPBeside could not be
// bound; nil when it was, or none was asked for.
func (h *Hub) AMQPSkipped() *ListenError { return h.amqpSkip }

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

// writeCredentials writes credentials.json if it does not hold the
// credentials already.
func (h *Hub) writeCredentials() error {
	b, err := json.MarshalIndent(h.Credentials(), "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	path := filepath.Join(h.cfg.DataDir, CredentialsFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// credentialsWait is how long ReadCredentials waits for a hub that is
// starting on an existing data dir to write its credentials.
const credentialsWait = 5 * time.Second

// ReadCredentials reads the credentials a hub wrote in its data dir. A hub
// takes its port before it writes them (so `hub serve &` and a wait for the
// port is not enough): when the data dir exists but the file does not yet,
// it waits a few seconds for a hub starting there.
func ReadCredentials(dataDir string) (Credentials, error) {
	var c Credentials
	path := filepath.Join(dataDir, CredentialsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, statErr := os.Stat(dataDir); statErr == nil {
			for deadline := time.Now().Add(credentialsWait); errors.Is(err, os.ErrNotExist) && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				b, err = os.ReadFile(path)
			}
		}
	}
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
// rights) when there is none: on first start or with Config.Reinit, as
// openStore made sure.
func (h *Hub) loadPolicies() error {
	recs, err := h.st.List("policies/")
	if err != nil {
		return err
	}
	for _, rec := range recs {
		var p Policy
		if err := json.Unmarshal(rec.Value, &p); err != nil {
			return fmt.Errorf("policy record %s: %w", rec.Key, err)
		}
		h.policies[p.KeyName] = &p
	}
	if _, ok := h.policies["owner"]; ok {
		return nil
	}
	p := &Policy{KeyName: "owner", Rights: []string{RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect}}
	if p.PrimaryKey, err = identity.NewKey(); err != nil {
		return err
	}
	if p.SecondaryKey, err = identity.NewKey(); err != nil {
		return err
	}
	b, _ := json.Marshal(p)
	// A new owner key was never shown, whatever the store says.
	if _, err := h.st.Txn(store.PutOp(ownerPolicyKey, b, 0), store.DeleteOp(shownKey, store.Any)); errors.Is(err, store.ErrConflict) {
		return h.loadPolicies() // another replica on the same store made it meanwhile
	} else if err != nil {
		return fmt.Errorf("create the owner policy: %w", err)
	}
	h.policies["owner"] = p
	return nil
}

// Serve serves until ctx is done, then drains requests in flight (up to
// 10 s) and returns nil.
func (h *Hub) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go h.notify.run(ctx, h.st)
	go h.changes.run(ctx, h.st)
	// The store probes (ready.go) start with the first /readyz or status:
	// a hub no load balancer asks does not write a file a second.
	stopAutoDeploy := h.startAutoDeploy(ctx)
	defer stopAutoDeploy()
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
		// Handshakes a few at a time, each with its own deadline (handshake.go).
		hl := newHandshakeListener(ln, h.tls, h.limits.ReadHeaderTimeout, h.limits.ReadTimeout, 0, h.log)
		srv.ConnState = hl.connState // counts connections closed before their first request
		ln = hl
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if h.amqpLn != nil {
		aln := limitPerIP(h.amqpLn, h.limits.MaxConnsPerIP)
		if h.tls != nil {
			aln = tls.NewListener(aln, h.tls)
		}
		go h.refuseAMQP(ctx, aln)
	}
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
	h.readiness.stopProbes()
	h.ln.Close()
	if h.amqpLn != nil {
		h.amqpLn.Close()
	}
	return h.st.Close()
}
