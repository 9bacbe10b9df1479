// Package broker is the device's module broker: MQTT 3.1.1 over TLS, with
// IoT Hub's twin topics, so that modules written with the Azure IoT SDKs
// read their twins, report and follow desired changes against the device
// instead of the hub, online and offline.
//
// Who may connect: a module of this device, client id {deviceId}/{moduleId},
// username {hubHost}/{deviceId}/{moduleId}/?api-version=…, password a SAS
// token for {hubHost}/devices/{deviceId}/modules/{moduleId} signed with the
// module's primary or secondary key as the device last synced them (so it
// works offline). A second connection with the same client id takes over
// the first, as at IoT Hub. A connection is closed when its token expires
// (plus identity.ClockSkew), as IoT Hub closes it; the SDKs connect again
// with a new token.
//
// What a module may do: publish twin requests on
// $iothub/twin/GET/?$rid={rid} and
// $iothub/twin/PATCH/properties/reported/?$rid={rid}, and subscribe to
// $iothub/twin/res/# (the answers, for it alone) and
// $iothub/twin/PATCH/properties/desired/# (its desired changes). Any other
// subscription gets SUBACK 0x80; a PUBLISH to any other topic closes the
// connection (MQTT 3.1.1 has no way to refuse one PUBLISH). Both are
// logged with who and why. Nothing a module publishes is routed to another
// client: the broker answers every request itself, to the module that made
// it.
//
// Child devices (leaf devices whose parent is this edge device, as the
// device last synced them) connect as at IoT Hub's device endpoint: client
// id {deviceId}, username {hubHost}/{deviceId}/?api-version=…, password a
// SAS token for {hubHost}/devices/{deviceId} signed with the child's own
// key. A child has the same twin topics as a module, on its device twin;
// see children.go.
//
// Desired changes: the broker remembers, per module, the desired $version
// and properties it last gave the module (in a twin GET answer or a desired
// patch). When the device's twin moves past it, the module gets one patch
// from that version to the new one, with the new $version; so after a
// reconnect, or an outage of the hub, it gets what changed since what it
// saw. When the broker knows nothing of the module (the daemon restarted,
// or the module subscribed before its first GET), the patch is the full
// desired properties with $version.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/msgqueue"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/syncer"
	"github.com/outpost-edge/outpost/internal/twin"
)

// Twins is where the broker finds module and child device identities and
// twins: the device's *syncer.Syncer.
type Twins interface {
	Modules() ([]hubapi.SyncModule, error)
	Twin(moduleID string) (*twin.Twin, error)
	PatchReported(moduleID string, patch []byte) (*twin.Twin, error)
	Watch(ctx context.Context) <-chan syncer.Change

	// Children, Child, ChildTwin and PatchChildReported are the same for
	// the device's children (their device twins); an unknown child is an
	// error wrapping syncer.ErrUnknownChild.
	Children() ([]hubapi.SyncChild, error)
	Child(deviceID string) (hubapi.SyncChild, error)
	ChildTwin(deviceID string) (*twin.Twin, error)
	PatchChildReported(deviceID string, patch []byte) (*twin.Twin, error)
}

var _ Twins = (*syncer.Syncer)(nil)

// Defaults of Config.
const (
	// DefaultMaxKeepAlive is the keep-alive the broker enforces on a client
	// that asks for none (0) or for more: IoT Hub's 1767 s.
	DefaultMaxKeepAlive = 1767 * time.Second
	// DefaultHandshakeTimeout bounds the TLS handshake and CONNECT.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds each write to a module: one that reads
	// nothing for that long is closed.
	DefaultWriteTimeout = 10 * time.Second
)

// Limits.
const (
	// MaxPatchSize is the largest reported patch accepted: IoT Hub's limit
	// on a twin's reported properties.
	MaxPatchSize = twin.MaxReportedSize
	// maxPacketSize bounds any MQTT packet a client may send (IoT Hub's
	// largest message is 256 KiB); a larger one closes the connection.
	maxPacketSize = 256*1024 + 4096
	// sendQueue is how many packets may wait for a module that does not
	// read; one more closes its connection.
	sendQueue = 256
	// sweepEvery is how often every connected module's desired version is
	// checked against its twin, in case a change notice was missed.
	sweepEvery = 5 * time.Second
)

// Config configures a Broker.
type Config struct {
	DeviceID    string
	HubHostName string // as in the modules' connection strings and tokens
	Twins       Twins
	TLS         *tls.Config // the server certificate, issued by the device CA
	Logger      *slog.Logger
	// Store, when set, keeps each module's persistent subscriptions and
	// the desired version it last got across restarts (the daemon's store).
	Store store.Store
	// Messages, when set, is the durable message queue: module messages
	// are routed (routes from the $edgeHub twin) and queued there, and
	// module inputs are served from it. Without it messages are refused.
	Messages *msgqueue.Log

	MaxKeepAlive     time.Duration    // default DefaultMaxKeepAlive
	HandshakeTimeout time.Duration    // default DefaultHandshakeTimeout
	WriteTimeout     time.Duration    // default DefaultWriteTimeout
	Now              func() time.Time // default time.Now
}

// Broker is the module broker. Make one with New and run it with Serve.
type Broker struct {
	cfg Config
	log *slog.Logger
	srv *mqtt.Server

	mu       sync.Mutex
	modules  map[string]*moduleState // the modules' clients, by module id
	children map[string]*moduleState // the child devices' clients, by device id
	sessions map[*mqtt.Client]*session
	wg       sync.WaitGroup // session senders

	mc         methodCalls                 // direct method calls waiting for a module's answer (methods.go)
	msg        messaging                   // routes in force (messages.go)
	deliverers map[*mqtt.Client]*deliverer // input senders by connection, guarded by mu
	activity   *activity                   // when each client was last heard (childstatus.go)
}

// moduleState is what the broker knows of one client across connections:
// a module of this device (child false, id its module id, in b.modules) or
// a child device (child true, id its device id, in b.children). The two
// kinds have the same twin topics; every other difference tests child.
type moduleState struct {
	id    string
	child bool

	mu      sync.Mutex // orders the module's twin answers and desired patches
	sess    *session   // the current connection, nil when there is none
	since   time.Time  // when sess last changed
	known   bool       // version and desired are what the module last got
	version int64
	desired []byte

	gone       bool     // the device no longer has it
	loaded     bool     // what was saved of it has been read
	persistent bool     // its current session is persistent (clean session 0)
	subs       []string // the filters of its persistent session, sorted

	unanswered []sentAnswer // twin answers for its next connection (twins.go)
}

// session is one authenticated connection.
type session struct {
	m       *moduleState
	cl      *mqtt.Client
	remote  string
	token   string
	out     chan *packets.Packet // pointers: a Packet is 800 bytes, a queue of them 200 KiB a module
	done    chan struct{}
	expiry  *time.Timer
	stop    sync.Once
	sent    []sentDesired // guarded by m.mu: desired properties sent lately
	acks    *pubacks      // PUBACKs of messages waiting for their group commit (messages.go)
	answers []sentAnswer  // guarded by m.mu: twin answers sent lately (twins.go)
}

// unreadWindow is how long before a connection ends a desired patch the
// broker sent may not have reached the module: still queued, in a socket
// buffer, or read by a client already on its way out (the Azure SDKs
// disconnect to renew their tokens). After the connection ends the broker
// takes the module to have what it had before those sends, so the next
// connection gets them again: once more rather than never. (A twin GET
// whose answer was lost the module asks again itself.)
const unreadWindow = 3 * time.Second

// sentDesired is a module's desired state before the broker sent it a
// newer one, and when.
type sentDesired struct {
	at      time.Time
	known   bool
	version int64
	desired []byte
}

// sentTo records the module's desired state before s sends it a newer one
// (the caller holds m.mu, and then sets the newer state).
func (b *Broker) sentTo(s *session, m *moduleState) {
	now := b.now()
	i := 0
	for i < len(s.sent) && now.Sub(s.sent[i].at) > unreadWindow {
		i++
	}
	s.sent = append(s.sent[i:], sentDesired{at: now, known: m.known, version: m.version, desired: m.desired})
}

// unsend takes back what s sent within unreadWindow of its end (the caller
// holds m.mu).
func (b *Broker) unsend(s *session, m *moduleState) {
	cutoff := b.now().Add(-unreadWindow)
	for _, e := range s.sent {
		if e.at.After(cutoff) {
			m.known, m.version, m.desired = e.known, e.version, e.desired
			break
		}
	}
	s.sent = nil
	b.keepAnswers(s)
}

// ModuleStatus is a module's state at the broker.
type ModuleStatus struct {
	ModuleID  string    `json:"moduleId"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	// DesiredVersion is the desired $version the module last got from the
	// broker (in a twin GET answer or a desired patch); 0 when unknown.
	DesiredVersion int64 `json:"desiredVersion"`
}

// New returns a broker; it does not listen until Serve.
func New(cfg Config) (*Broker, error) {
	switch {
	case cfg.DeviceID == "":
		return nil, errors.New("broker: no device id")
	case cfg.HubHostName == "":
		return nil, errors.New("broker: no hub host name (the HostName of the modules' connection strings)")
	case cfg.Twins == nil:
		return nil, errors.New("broker: no source of module identities and twins")
	case cfg.TLS == nil || (len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil):
		return nil, errors.New("broker: no TLS server certificate")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxKeepAlive <= 0 {
		cfg.MaxKeepAlive = DefaultMaxKeepAlive
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Broker{
		cfg:      cfg,
		log:      cfg.Logger,
		modules:  map[string]*moduleState{},
		children: map[string]*moduleState{},
		sessions: map[*mqtt.Client]*session{},

		deliverers: map[*mqtt.Client]*deliverer{},
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.RetainAvailable = 0
	caps.SharedSubAvailable = 0
	caps.SubIDAvailable = 0
	caps.TopicAliasMaximum = 0
	caps.MaximumPacketSize = maxPacketSize
	caps.MaximumClientWritesPending = sendQueue
	caps.MaximumInflight = sendQueue
	caps.MaximumSessionExpiryInterval = 0
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(quietHandler{cfg.Logger.Handler()}),
		SysTopicResendInterval: math.MaxInt32,
	})
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.activity = &activity{now: b.now}
	if err := b.srv.AddHook(b.activity, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return b, nil
}

func (b *Broker) now() time.Time { return b.cfg.Now() }

// Serve accepts modules on ln (TLS is added here) until ctx is done, then
// closes every connection and returns nil.
func (b *Broker) Serve(ctx context.Context, ln net.Listener) error {
	tl := newTLSListener(ln, b.cfg.TLS, b.cfg.HandshakeTimeout, b.cfg.WriteTimeout)
	if err := b.srv.AddListener(listeners.NewNet("modules", tl)); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.log.Info("broker: listening for modules", "addr", ln.Addr().String(), "device", b.cfg.DeviceID, "hub", b.cfg.HubHostName)
	// Watch before the routes are read, so that a change of them in between
	// is not missed.
	changes := b.cfg.Twins.Watch(ctx)
	b.loadRoutes()
	b.follow(ctx, changes)
	tl.shut()
	_ = b.srv.Close()
	b.srv.Listeners.ClientsWg.Wait()
	b.wg.Wait()
	b.log.Info("broker: stopped")
	return nil
}

// follow delivers desired changes until ctx is done.
func (b *Broker) follow(ctx context.Context, changes <-chan syncer.Change) {
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			if c.Children || c.DeviceID != "" {
				b.childChanged(c)
				continue
			}
			if c.ModuleID == HubModuleID || c.ModuleID == "" {
				b.loadRoutes()
			}
			if c.ModuleID == "" {
				b.recheckIdentities()
				continue
			}
			b.mu.Lock()
			m := b.modules[c.ModuleID]
			b.mu.Unlock()
			if m != nil {
				b.catchUp(m, c.DesiredVersion)
			}
		case <-sweep.C:
			for _, m := range append(b.allModules(), b.allChildren()...) {
				b.catchUp(m, 0)
			}
		}
	}
}

func (b *Broker) allModules() []*moduleState {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*moduleState, 0, len(b.modules))
	for _, m := range b.modules {
		out = append(out, m)
	}
	return out
}

// recheckIdentities closes the connections of modules that the device no
// longer has, or whose token no longer verifies (keys rotated), and
// forgets modules that are gone.
func (b *Broker) recheckIdentities() {
	mods, err := b.cfg.Twins.Modules()
	if err != nil {
		b.log.Warn("broker: read the module identities", "err", err)
		return
	}
	byID := make(map[string]hubapi.SyncModule, len(mods))
	for _, m := range mods {
		byID[m.ModuleID] = m
	}
	b.forgetGone(savedPrefix, false, func(id string) bool { _, ok := byID[id]; return ok })
	b.recheck(b.allModules(), func(m *moduleState, token string) (bool, error) {
		mod, ok := byID[m.id]
		if !ok {
			return true, refuse(connackNotAuthorized, "the device no longer has module %q", m.id)
		}
		_, err := b.verifyToken(token, m.id, mod)
		return false, err
	})
}

// recheck checks each client of clients (all modules, or all children)
// with check, which says whether the device no longer has it and why its
// token (token "" for a client not connected) is no longer good: a client
// that fails is disconnected, and one that is gone is forgotten once it is
// not connected.
func (b *Broker) recheck(clients []*moduleState, check func(m *moduleState, token string) (gone bool, err error)) {
	for _, m := range clients {
		m.mu.Lock()
		s := m.sess
		m.mu.Unlock()
		token := ""
		if s != nil {
			token = s.token
		}
		gone, err := check(m, token)
		m.mu.Lock()
		m.gone = gone
		m.mu.Unlock()
		if gone && s == nil {
			b.mu.Lock()
			m.mu.Lock()
			if all := b.clients(m.child); m.sess == nil && all[m.id] == m {
				delete(all, m.id)
				b.forget(m)
			}
			m.mu.Unlock()
			b.mu.Unlock()
			continue
		}
		if s != nil && err != nil {
			b.log.Warn("broker: closing a "+m.kind()+"'s connection: its identity changed", m.kind(), m.id, "remote", s.remote, "reason", err.Error())
			s.cl.Stop(fmt.Errorf("identity changed: %w", err))
		}
	}
}

// Status returns every module that has connected since the broker started,
// sorted by module id.
func (b *Broker) Status() []ModuleStatus {
	mods := b.allModules()
	out := make([]ModuleStatus, 0, len(mods))
	for _, m := range mods {
		m.mu.Lock()
		st := ModuleStatus{ModuleID: m.id, Connected: m.sess != nil, Since: m.since.UTC()}
		if m.known {
			st.DesiredVersion = m.version
		}
		m.mu.Unlock()
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ModuleStatus) int { return strings.Compare(a.ModuleID, b.ModuleID) })
	return out
}

// clients returns the map of m's kind (b.modules or b.children); the
// caller holds b.mu.
func (b *Broker) clients(child bool) map[string]*moduleState {
	if child {
		return b.children
	}
	return b.modules
}

// open registers an authenticated connection of a module (or a child
// device) and starts its sender; a connection it had before is taken over.
func (b *Broker) open(cl *mqtt.Client, moduleID string, child bool, token string) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := b.clients(child)
	m := all[moduleID]
	if m == nil {
		m = &moduleState{id: moduleID, child: child}
		all[moduleID] = m
	}
	s := &session{
		m: m, cl: cl, token: token,
		remote: cl.Net.Remote,
		out:    make(chan *packets.Packet, sendQueue),
		done:   make(chan struct{}),
	}
	if sas, err := identity.ParseSAS(token); err == nil {
		left := sas.Expiry.Add(identity.ClockSkew).Sub(b.now())
		s.expiry = time.AfterFunc(max(left, 0), func() {
			b.log.Info("broker: a module's SAS token expired: closing its connection (it connects again with a new token)", "module", moduleID, "remote", s.remote, "expiry", sas.Expiry)
			cl.Stop(errors.New("sas token expired"))
		})
	}
	b.sessions[cl] = s
	b.wg.Go(s.send)

	m.mu.Lock()
	old := m.sess
	if old != nil {
		b.unsend(old, m)
	}
	m.sess, m.since = s, b.now()
	m.mu.Unlock()
	if old != nil {
		b.log.Info("broker: a new connection took over the module's client id", "module", moduleID, "remote", s.remote, "old_remote", old.remote)
		old.close()
	}
	return s
}

// closed unregisters a connection.
func (b *Broker) closed(cl *mqtt.Client, err error) {
	b.mu.Lock()
	s := b.sessions[cl]
	delete(b.sessions, cl)
	b.mu.Unlock()
	if s == nil {
		return
	}
	s.close()
	m := s.m
	m.mu.Lock()
	current, gone := m.sess == s, m.gone
	if current {
		b.unsend(s, m)
		m.sess, m.since = nil, b.now()
		if !gone {
			b.save(m)
		}
	}
	m.mu.Unlock()
	if current && gone {
		b.mu.Lock()
		if all := b.clients(m.child); all[m.id] == m {
			delete(all, m.id)
			b.forget(m)
		}
		b.mu.Unlock()
	}
	if current {
		reason := "the module disconnected"
		if cause := cl.StopCause(); cause != nil {
			err = cause // why the broker closed it, rather than what the read then saw
		}
		if err != nil {
			reason = err.Error()
		}
		b.log.Info("broker: "+m.kind()+" disconnected", m.kind(), m.id, "remote", s.remote, "reason", reason)
	}
}

func (b *Broker) session(cl *mqtt.Client) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[cl]
}

func (s *session) close() {
	s.stop.Do(func() {
		if s.expiry != nil {
			s.expiry.Stop()
		}
		close(s.done)
	})
}

// send writes the session's queued packets to the module, so that a module
// that does not read holds up no one but itself.
func (s *session) send() {
	for {
		select {
		case <-s.done:
			return
		case pk := <-s.out:
			if err := s.cl.WritePacket(*pk); err != nil {
				s.cl.Stop(fmt.Errorf("write to the module: %w", err))
				return
			}
		}
	}
}

// publish queues a QoS 0 PUBLISH for the module. A module whose queue is
// full is not reading: its connection is closed.
func (b *Broker) publish(s *session, topic string, payload []byte) {
	pk := &packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
	}
	select {
	case s.out <- pk:
	case <-s.done:
	default:
		b.log.Warn("broker: closing a module's connection: it does not read what the broker sends", "module", s.m.id, "remote", s.remote, "queued", sendQueue)
		s.cl.Stop(errors.New("the module does not read: its send queue is full"))
	}
}

// tlsListener adds TLS to accepted connections and bounds the handshake
// and CONNECT by a deadline, which mochi replaces with the keep-alive once
// the module has connected. It also counts the connections mochi has not
// started on yet, so that Serve can wait for them before closing mochi
// (whose Close would otherwise race with a connection's start).
type tlsListener struct {
	net.Listener
	cfg          *tls.Config
	timeout      time.Duration
	writeTimeout time.Duration

	mu      sync.Mutex
	cond    *sync.Cond
	closed  bool
	pending int
}

func newTLSListener(ln net.Listener, cfg *tls.Config, timeout, writeTimeout time.Duration) *tlsListener {
	l := &tlsListener{Listener: ln, cfg: cfg, timeout: timeout, writeTimeout: writeTimeout}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	l.pending++
	l.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	wc := &writeTimeoutConn{Conn: c, timeout: l.writeTimeout, started: l.started}
	return tls.Server(wc, l.cfg), nil
}

// started counts off a connection mochi has begun to read (or closed).
func (l *tlsListener) started() {
	l.mu.Lock()
	l.pending--
	l.cond.Broadcast()
	l.mu.Unlock()
}

// shut stops accepting and waits until mochi has started on every
// connection already accepted.
func (l *tlsListener) shut() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	_ = l.Listener.Close()
	l.mu.Lock()
	for l.pending > 0 {
		l.cond.Wait()
	}
	l.mu.Unlock()
}

// writeTimeoutConn gives every write its own deadline, so that a module
// that stops reading is closed after timeout rather than after mochi's
// keep-alive deadline, which every packet read pushes back.
type writeTimeoutConn struct {
	net.Conn
	timeout time.Duration
	started func()
	once    sync.Once
}

func (c *writeTimeoutConn) Read(p []byte) (int, error) {
	c.once.Do(c.started)
	return c.Conn.Read(p)
}

func (c *writeTimeoutConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

func (c *writeTimeoutConn) Close() error {
	c.once.Do(c.started)
	return c.Conn.Close()
}

// quietHandler passes on only mochi's errors: the broker logs connections
// and refusals itself, with who and why.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(a)}
}

func (h quietHandler) WithGroup(n string) slog.Handler { return quietHandler{h.Handler.WithGroup(n)} }
