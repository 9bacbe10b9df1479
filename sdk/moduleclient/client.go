// Package moduleclient is a Go module's client of the outpost daemon: it
// reads and reports the module's twin and follows its desired properties
// over the daemon's module broker (MQTT 3.1.1 over TLS, with IoT Hub's twin
// topics), online and offline.
//
// A module the daemon runs connects with NewFromEnvironment: the daemon
// hands it the IOTEDGE_* variables, and the client signs its SAS tokens
// through the workload API, so the module never sees its key. New takes
// explicit settings instead, such as a module connection string.
//
// The client reconnects by itself, with back-off, renews its token before it
// expires, and re-sends a request whose connection went before it was
// answered. Every call takes a context; a call whose context ends returns
// its error. A Client is safe for concurrent use.
//
// This package imports no outpost internals: only the standard library and
// the Eclipse Paho MQTT client.
package moduleclient

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Twin topics (IoT Hub's, as the broker serves them).
const (
	topicGet       = "$iothub/twin/GET/"
	topicReported  = "$iothub/twin/PATCH/properties/reported/"
	topicResponses = "$iothub/twin/res/#"
	topicDesired   = "$iothub/twin/PATCH/properties/desired/#"
	prefixResponse = "$iothub/twin/res/"
)

// Back-off between connection attempts.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// connectTimeout bounds one connection attempt (TLS, CONNECT, the
	// subscriptions and the twin read).
	connectTimeout = 30 * time.Second
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("moduleclient: the client is closed")

// Error is a twin request the broker answered with an error status, such as
// 400 for a reported patch that is too large or has a bad key.
type Error struct {
	Op      string // "get twin", "update reported"
	Status  int
	Message string // the broker's message
	Path    string // the JSON path at fault, when the broker names one
}

func (e *Error) Error() string {
	s := fmt.Sprintf("moduleclient: %s: status %d", e.Op, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Path != "" && !strings.Contains(e.Message, e.Path) {
		s += " (at " + e.Path + ")"
	}
	return s
}

// Properties is one side of a twin: its properties and $version.
type Properties struct {
	Version int64
	Values  map[string]any // without "$version"
}

// Twin is a module twin's properties as the broker keeps them.
type Twin struct {
	Desired  Properties
	Reported Properties
}

// Client is a connected module client.
type Client struct {
	cfg       Config
	log       *slog.Logger
	tls       *tls.Config
	clientID  string
	username  string
	ridPrefix string
	id        identity
	ridSeq    atomic.Uint64
	done      chan struct{} // closed by Close
	stopped   chan struct{} // closed when the connection loop ends

	mu      sync.Mutex
	conn    mqtt.Client   // nil while disconnected
	up      chan struct{} // closed once connected
	gone    chan struct{} // closed when conn goes
	expiry  time.Time     // conn's token's
	pending map[string]chan response
	closed  bool

	// desired properties as the module last knew them, to deliver what
	// changed after a gap exactly once
	desired        map[string]any
	desiredVersion int64
	desiredKnown   bool
	handlers       []func(map[string]any, int64)
	connHandlers   []func(bool, error)
	queue          []desiredPatch
	queued         *sync.Cond     // on mu
	inputs         []inputHandler // OnInput's (messages.go)

	methods methods // direct method handlers (methods.go)
}

type response struct {
	status int
	query  url.Values
	body   []byte
}

type desiredPatch struct {
	patch   map[string]any
	version int64
}

// New connects with cfg. It returns once connected, or when ctx ends with
// the error of the last attempt; a refusal that trying again will not fix
// (a bad token or key, an unknown module, a certificate that does not
// verify) is returned at once.
func New(ctx context.Context, cfg Config) (*Client, error) { return connectAs(ctx, cfg, asModule) }

// NewDevice connects as a device, not a module: a leaf device whose
// connection string names its gateway (HostName=…;DeviceId=…;
// SharedAccessKey=…;GatewayHostName=…), reaching the daemon's broker as
// IoT Hub's device endpoint (client id {device}, topics devices/{device}/…)
// with SAS tokens for {hub}/devices/{device}, signed with its own key.
// Twins, desired patches, methods and SendOutput with no output (telemetry)
// work as for a module; a device has no inputs or outputs. sdk/deviceclient
// is the device-shaped API over it.
func NewDevice(ctx context.Context, cfg Config) (*Client, error) {
	return connectAs(ctx, cfg, asDevice)
}

func connectAs(ctx context.Context, cfg Config, id identity) (*Client, error) {
	cfg, err := cfg.resolve(id)
	var ce *ConfigError
	if errors.As(err, &ce) && id == asDevice {
		ce.pkg = "deviceclient" // its users call sdk/deviceclient
	}
	if err != nil {
		return nil, err
	}
	var b [6]byte
	_, _ = crand.Read(b[:])
	c := &Client{
		cfg: cfg, log: cfg.Logger.With(id.String(), cfg.clientID()),
		clientID:  cfg.clientID(),
		username:  cfg.HubHostName + "/" + cfg.clientID() + "/?api-version=" + MQTTAPIVersion,
		id:        id,
		ridPrefix: hex.EncodeToString(b[:]) + "-",
		done:      make(chan struct{}), stopped: make(chan struct{}),
		up: make(chan struct{}), pending: map[string]chan response{},
	}
	c.queued = sync.NewCond(&c.mu)
	c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(cfg.CAPEM)
		c.tls.RootCAs = pool
	}
	host, _, _ := net.SplitHostPort(cfg.BrokerAddress)
	c.tls.ServerName = host
	if cfg.GatewayHostName != "" {
		c.tls.ServerName = cfg.GatewayHostName
	}

	backoff := minBackoff
	for {
		err = c.connect(ctx)
		if err == nil {
			break
		}
		if permanent(err) {
			return nil, err
		}
		c.log.Debug("connect failed; trying again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-time.After(jitter(backoff)):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	go c.deliver()
	go c.run()
	return c, nil
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// permanent reports whether err is a refusal that retrying with the same
// configuration will not fix.
func permanent(err error) bool {
	for _, e := range []error{packets.ErrorRefusedBadProtocolVersion, packets.ErrorRefusedIDRejected,
		packets.ErrorRefusedBadUsernameOrPassword, packets.ErrorRefusedNotAuthorised} {
		if errors.Is(err, e) {
			return true
		}
	}
	var we *WorkloadError
	if errors.As(err, &we) {
		return we.Status/100 == 4
	}
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he)
}

// connect makes one connection: TLS, CONNECT with a new token, the
// response subscription, a twin read to catch up on desired changes, and
// the desired subscription; then makes it the client's.
func (c *Client) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	expiry := time.Now().Add(c.cfg.TokenTTL)
	token, err := c.cfg.token(ctx, expiry)
	if err != nil {
		return err
	}
	lost := make(chan struct{})
	var lostOnce sync.Once
	opts := mqtt.NewClientOptions().
		AddBroker("tls://" + c.cfg.BrokerAddress).
		SetClientID(c.clientID).SetUsername(c.username).SetPassword(token).
		SetTLSConfig(c.tls).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).SetConnectTimeout(connectTimeout).SetWriteTimeout(10 * time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			lostOnce.Do(func() {
				c.log.Warn("connection to the broker lost", "err", err)
				close(lost)
			})
		})
	cl := mqtt.NewClient(opts)
	fail := func(what string, err error) error {
		cl.Disconnect(0)
		return fmt.Errorf("moduleclient: %s (broker %s, client id %s): %w", what, c.cfg.BrokerAddress, c.clientID, err)
	}
	if err := wait(ctx, cl.Connect()); err != nil {
		return fail("connect", err)
	}
	if err := c.subscribe(ctx, cl, topicResponses, c.onResponse); err != nil {
		return fail("subscribe to the twin responses", err)
	}
	r, err := c.roundTrip(ctx, cl, lost, topicGet, nil)
	if err != nil {
		return fail("read the twin", err)
	}
	tw, err := parseTwin(r)
	if err != nil {
		return fail("read the twin", err)
	}
	c.catchUp(tw.Desired)
	if err := c.subscribe(ctx, cl, topicDesired, c.onDesired); err != nil {
		return fail("subscribe to the desired properties", err)
	}
	if c.wantsMethods() {
		if err := c.subscribe(ctx, cl, topicMethods, c.onMethodCall); err != nil {
			return fail("subscribe to direct methods", err)
		}
	}
	if err := c.subscribeInputs(ctx, cl); err != nil {
		return fail("subscribe to the inputs", err)
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cl.Disconnect(0)
		return ErrClosed
	}
	c.conn, c.expiry = cl, expiry
	c.gone = lost
	close(c.up)
	hs := c.connHandlers
	c.mu.Unlock()
	c.log.Info("connected to the broker", "broker", c.cfg.BrokerAddress, "tokenExpiry", expiry.UTC().Format(time.RFC3339))
	for _, h := range hs {
		h(true, nil)
	}
	return nil
}

func (c *Client) subscribe(ctx context.Context, cl mqtt.Client, filter string, h mqtt.MessageHandler) error {
	t := cl.Subscribe(filter, 0, h)
	if err := wait(ctx, t); err != nil {
		return err
	}
	st, ok := t.(*mqtt.SubscribeToken)
	if ok {
		if code, ok := st.Result()[filter]; ok && code == 0x80 {
			return fmt.Errorf("the broker refused the subscription to %s (SUBACK 0x80)", filter)
		}
	}
	return nil
}

// wait waits for t or ctx.
func wait(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run keeps the client connected until Close: it reconnects when the
// connection goes, with back-off, and before the token expires.
func (c *Client) run() {
	defer close(c.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.done
		cancel()
	}()
	for {
		c.mu.Lock()
		gone, expiry, cl := c.gone, c.expiry, c.conn
		c.mu.Unlock()
		ttl := c.cfg.TokenTTL
		renew := time.NewTimer(time.Until(expiry.Add(-ttl / 5)))
		var why error
		select {
		case <-c.done:
		case <-gone:
			why = errors.New("connection lost")
		case <-renew.C:
			why = errors.New("renewing the SAS token")
			c.log.Info("renewing the SAS token", "expiry", expiry.UTC().Format(time.RFC3339))
		}
		renew.Stop()
		c.down()
		cl.Disconnect(100)
		for _, h := range c.connHandlersCopy() {
			h(false, why)
		}
		backoff := minBackoff
		for {
			select {
			case <-c.done:
				return
			default:
			}
			err := c.connect(ctx)
			if err == nil {
				break
			}
			c.log.Warn("reconnect failed; trying again", "err", err, "in", backoff)
			select {
			case <-c.done:
				return
			case <-time.After(jitter(backoff)):
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

func (c *Client) connHandlersCopy() []func(bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connHandlers
}

// down marks the client disconnected: requests wait for the next
// connection and are sent again on it.
func (c *Client) down() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return
	}
	c.conn = nil
	c.up = make(chan struct{})
	select {
	case <-c.gone:
	default:
		close(c.gone)
	}
}

// OnConnectionChange calls f (from the client's connection loop: it must
// not block) each time the client connects (true, nil) or loses its
// connection (false, why), including to renew its token.
func (c *Client) OnConnectionChange(f func(connected bool, why error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connHandlers = append(c.connHandlers, f)
}

// Close disconnects and stops the client. Calls waiting for an answer
// return ErrClosed; desired patches not yet delivered are dropped.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.stopMethods()
	c.queued.Broadcast()
	c.mu.Unlock()
	<-c.stopped
	return nil
}

// newRID is a request id unique to this client (and, by its random
// prefix, to this process).
func (c *Client) newRID() string {
	return c.ridPrefix + strconv.FormatUint(c.ridSeq.Add(1), 10)
}

// roundTrip publishes one request on cl and waits for its answer.
func (c *Client) roundTrip(ctx context.Context, cl mqtt.Client, gone <-chan struct{}, topic string, body []byte) (response, error) {
	rid, ch := c.register()
	defer c.unregister(rid)
	if err := wait(ctx, cl.Publish(topic+"?$rid="+rid, 0, false, body)); err != nil {
		return response{}, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-gone:
		return response{}, errors.New("connection lost")
	case <-ctx.Done():
		return response{}, ctx.Err()
	}
}

func (c *Client) register() (string, chan response) {
	rid, ch := c.newRID(), make(chan response, 1)
	c.mu.Lock()
	c.pending[rid] = ch
	c.mu.Unlock()
	return rid, ch
}

func (c *Client) unregister(rid string) {
	c.mu.Lock()
	delete(c.pending, rid)
	c.mu.Unlock()
}

// request sends a request and waits for its answer, across reconnects:
// a request whose connection goes before it is answered is sent again on
// the next one.
func (c *Client) request(ctx context.Context, topic string, body []byte) (response, error) {
	rid, ch := c.register()
	defer c.unregister(rid)
	for {
		c.mu.Lock()
		cl, up, gone, closed := c.conn, c.up, c.gone, c.closed
		c.mu.Unlock()
		if closed {
			return response{}, ErrClosed
		}
		if cl == nil {
			select {
			case <-up:
				continue
			case <-c.done:
				return response{}, ErrClosed
			case <-ctx.Done():
				return response{}, ctx.Err()
			}
		}
		t := cl.Publish(topic+"?$rid="+rid, 0, false, body)
		select {
		case <-t.Done():
			if t.Error() != nil {
				// the connection is going: wait for the next one
				select {
				case <-gone:
				case <-c.done:
				case <-ctx.Done():
				}
				continue
			}
		case <-ctx.Done():
			return response{}, ctx.Err()
		}
		select {
		case r := <-ch:
			return r, nil
		case <-gone:
		case <-c.done:
			return response{}, ErrClosed
		case <-ctx.Done():
			return response{}, ctx.Err()
		}
	}
}

// onResponse routes $iothub/twin/res/{status}/?$rid={rid}[&$version={n}]
// to the request waiting for it.
func (c *Client) onResponse(_ mqtt.Client, m mqtt.Message) {
	status, q, err := parseResponseTopic(m.Topic())
	if err != nil {
		c.log.Warn("ignored a message on the response topic", "topic", m.Topic(), "err", err)
		return
	}
	rid := q.Get("$rid")
	c.mu.Lock()
	ch := c.pending[rid]
	c.mu.Unlock()
	if ch == nil {
		return // its caller gave up
	}
	select {
	case ch <- response{status: status, query: q, body: append([]byte(nil), m.Payload()...)}:
	default:
	}
}

// parseResponseTopic splits $iothub/twin/res/{status}/?{properties}.
func parseResponseTopic(topic string) (int, url.Values, error) {
	rest, ok := strings.CutPrefix(topic, prefixResponse)
	if !ok {
		return 0, nil, fmt.Errorf("not under %s", prefixResponse)
	}
	code, props, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, nil, errors.New("no property bag")
	}
	status, err := strconv.Atoi(code)
	if err != nil || status < 100 || status > 999 {
		return 0, nil, fmt.Errorf("status %q is not a number", code)
	}
	q, err := url.ParseQuery(strings.TrimPrefix(props, "?"))
	if err != nil {
		return 0, nil, fmt.Errorf("property bag: %w", err)
	}
	return status, q, nil
}

// errorOf turns a response with an error status into an *Error.
func errorOf(op string, r response) error {
	e := &Error{Op: op, Status: r.status}
	var body struct {
		Message string `json:"message"`
		Path    string `json:"path"`
	}
	if json.Unmarshal(r.body, &body) == nil {
		e.Message, e.Path = body.Message, body.Path
	} else {
		e.Message = strings.TrimSpace(string(r.body))
	}
	return e
}

// Twin reads the module's twin from the broker (the device's copy, so it
// answers offline too).
func (c *Client) Twin(ctx context.Context) (Twin, error) {
	r, err := c.request(ctx, topicGet, nil)
	if err != nil {
		return Twin{}, fmt.Errorf("moduleclient: get twin: %w", err)
	}
	tw, err := parseTwin(r)
	if err != nil {
		return Twin{}, err
	}
	// The broker now counts this version as seen by the module: deliver
	// what changed since the last patch here, as it will not send it.
	c.catchUp(tw.Desired)
	return tw, nil
}

func parseTwin(r response) (Twin, error) {
	if r.status != 200 {
		return Twin{}, errorOf("get twin", r)
	}
	var raw struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil {
		return Twin{}, fmt.Errorf("moduleclient: get twin: the answer is not a twin: %w", err)
	}
	return Twin{Desired: properties(raw.Desired), Reported: properties(raw.Reported)}, nil
}

// properties splits $version from the properties.
func properties(m map[string]any) Properties {
	if m == nil {
		m = map[string]any{}
	}
	p := Properties{Values: m}
	if v, ok := m["$version"].(float64); ok {
		p.Version = int64(v)
	}
	delete(m, "$version")
	return p
}

// UpdateReported merges patch (anything that marshals to a JSON object;
// null removes a property) into the module's reported properties and
// returns their new $version. It returns once the daemon has made the
// patch durable: the daemon sends it to the hub, in order, when the hub is
// reachable. A patch the broker refuses is an *Error (status 400, with the
// broker's message naming what is wrong). When the connection goes before
// the answer, the patch is sent again on the next connection (merging the
// same patch twice leaves the same properties).
func (c *Client) UpdateReported(ctx context.Context, patch any) (int64, error) {
	body, err := json.Marshal(patch)
	if err != nil {
		return 0, fmt.Errorf("moduleclient: update reported: the patch does not marshal to JSON: %w", err)
	}
	if len(body) == 0 || body[0] != '{' {
		return 0, fmt.Errorf("moduleclient: update reported: the patch must be a JSON object (a map or a struct), not %.40s", body)
	}
	r, err := c.request(ctx, topicReported, body)
	if err != nil {
		return 0, fmt.Errorf("moduleclient: update reported: %w", err)
	}
	if r.status != 204 && r.status != 200 {
		return 0, errorOf("update reported", r)
	}
	v, err := strconv.ParseInt(r.query.Get("$version"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("moduleclient: update reported: the answer has no $version (%q)", r.query.Get("$version"))
	}
	return v, nil
}
