package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// testCA is a CA made for one test and a server certificate it issued for
// localhost and the loopback addresses.
type testCA struct {
	pool   *x509.CertPool
	pem    []byte // the CA certificate
	server tls.Certificate
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testCA{
		pool:   pool,
		pem:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

// fixture is a hub with device d (modules a and b), the device's syncer on
// a temp store following it, and a broker on 127.0.0.1.
type fixture struct {
	hub     *hubtest.Hub
	hubData string
	owner   *hubclient.Client
	device  *hubclient.Client
	st      *store.FileStore
	syncer  *syncer.Syncer
	keys    map[string]string // module → primary key
	ca      *testCA
	cfg     Config
	broker  *Broker
	stop    func() error
	addr    string
	logs    *logBuffer
}

type fixtureOptions struct {
	listener net.Listener // default 127.0.0.1:0
	modules  []string     // default a, b
	config   func(*Config)
}

func setup(t testing.TB, opts fixtureOptions) *fixture {
	t.Helper()
	if opts.modules == nil {
		opts.modules = []string{"a", "b"}
	}
	f := &fixture{hubData: t.TempDir(), keys: map[string]string{}, logs: &logBuffer{}}
	f.hub = hubtest.Start(t, hubtest.Options{DataDir: f.hubData})
	f.owner = f.hub.Client(t)
	d, err := f.owner.CreateDevice(context.Background(), hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range opts.modules {
		mod, err := f.owner.CreateModule(context.Background(), hubapi.Module{DeviceID: "d", ModuleID: m})
		if err != nil {
			t.Fatal(err)
		}
		f.keys[m] = mod.Authentication.SymmetricKey.PrimaryKey
	}
	f.keys[""] = d.Authentication.SymmetricKey.PrimaryKey
	f.device = f.hub.ClientFor(t, f.hub.DeviceConnectionString("d", "", f.keys[""]))
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.st = st
	f.syncer, err = syncer.New(f.device, st, "d")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan struct{})
	go func() { f.syncer.Run(ctx); close(synced) }()
	t.Cleanup(func() { cancel(); <-synced })
	eventually(t, "the first sync", f.syncer.Synced)

	f.ca = newTestCA(t)
	cfg := Config{
		DeviceID: "d", HubHostName: f.hub.HostName(), Twins: f.syncer, Store: st,
		TLS:    &tls.Config{Certificates: []tls.Certificate{f.ca.server}, MinVersion: tls.VersionTLS12},
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	ln := opts.listener
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	f.addr = ln.Addr().String()
	f.cfg = cfg
	f.startBroker(t, ln)
	t.Cleanup(func() {
		f.stopBroker(t)
		if t.Failed() {
			t.Logf("broker log:\n%s", f.logs)
		}
	})
	return f
}

// startBroker starts a new broker with the fixture's config on ln.
func (f *fixture) startBroker(t testing.TB, ln net.Listener) {
	t.Helper()
	var err error
	f.broker, err = New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.broker.Serve(ctx, ln) }()
	f.stop = func() error {
		cancel()
		select {
		case err := <-served:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("the broker did not stop within 20 s")
		}
	}
}

// stopBroker stops the broker, if it runs.
func (f *fixture) stopBroker(t testing.TB) {
	t.Helper()
	if f.stop == nil {
		return
	}
	if err := f.stop(); err != nil {
		t.Errorf("broker serve: %v", err)
	}
	f.stop = nil
}

// restartBroker stops the broker and starts a new one on the same address,
// as a daemon restart would.
func (f *fixture) restartBroker(t testing.TB) {
	t.Helper()
	f.stopBroker(t)
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", f.addr, err)
	}
	f.startBroker(t, ln)
}

// logBuffer collects the broker's log for a test.
type logBuffer = hubtest.LogBuffer

// waitLog waits for a log line holding every one of parts.
func (f *fixture) waitLog(t testing.TB, parts ...string) {
	t.Helper()
	eventually(t, fmt.Sprintf("a log line with %q", parts), func() bool {
		for line := range strings.SplitSeq(f.logs.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return true
			}
		}
		return false
	})
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // generous: the machine is shared, tests run under -race
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// token returns a SAS token for a module (or the device, with "") signed
// with key, valid for ttl.
func (f *fixture) token(t testing.TB, module, key string, ttl time.Duration) string {
	t.Helper()
	resource := f.hub.HostName() + "/devices/d"
	if module != "" {
		resource += "/modules/" + module
	}
	tok, err := identity.NewSAS(resource, key, time.Now().Add(ttl), "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fixture) username(module string) string {
	return f.hub.HostName() + "/d/" + module + "/?api-version=2021-04-12"
}

func (f *fixture) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: f.ca.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// module is a paho client connected as a module, collecting what it gets.
type module struct {
	c    paho.Client
	msgs chan paho.Message
	lost chan error
	rid  int
}

// connect connects a paho client as module with password; it fails the
// test unless the CONNACK code is what want says (nil: accepted).
func (f *fixture) connect(t testing.TB, clientID, username, password string) (*module, error) {
	t.Helper()
	m := &module{msgs: make(chan paho.Message, 4096), lost: make(chan error, 1)}
	opts := paho.NewClientOptions().AddBroker("ssl://" + f.addr).
		SetClientID(clientID).SetUsername(username).SetPassword(password).
		SetTLSConfig(f.tlsConfig()).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(30 * time.Second).
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) { m.msgs <- msg }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { m.lost <- err })
	m.c = paho.NewClient(opts)
	tok := m.c.Connect()
	if !tok.WaitTimeout(20 * time.Second) {
		t.Fatal("connect: no CONNACK within 20 s")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { m.c.Disconnect(100) })
	return m, nil
}

// connectModule connects module with a valid token and subscribes to the
// twin answers and desired changes.
func (f *fixture) connectModule(t testing.TB, id string) *module {
	t.Helper()
	m, err := f.connect(t, "d/"+id, f.username(id), f.token(t, id, f.keys[id], time.Hour))
	if err != nil {
		t.Fatalf("connect module %s: %v", id, err)
	}
	m.subscribe(t, filterResponses, filterDesired)
	return m
}

// subscribe subscribes and returns the SUBACK codes.
func (m *module) subscribe(t testing.TB, filters ...string) []byte {
	t.Helper()
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 0
	}
	tok := m.c.SubscribeMultiple(subs, nil)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %v: %v", filters, tok.Error())
	}
	res := tok.(*paho.SubscribeToken).Result()
	codes := make([]byte, len(filters))
	for i, f := range filters {
		codes[i] = res[f]
	}
	return codes
}

// request publishes a twin request and returns the response topic and body.
func (m *module) request(t testing.TB, topicPrefix string, body []byte) (string, []byte) {
	t.Helper()
	m.rid++
	rid := fmt.Sprint(m.rid)
	tok := m.c.Publish(topicPrefix+"?$rid="+rid, 1, false, body)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topicPrefix, tok.Error())
	}
	for {
		msg := m.next(t)
		if strings.HasPrefix(msg.Topic(), topicResponse) && strings.Contains(msg.Topic(), "$rid="+rid) {
			return msg.Topic(), msg.Payload()
		}
	}
}

// next returns the next message the module gets.
func (m *module) next(t testing.TB) paho.Message {
	t.Helper()
	select {
	case msg := <-m.msgs:
		return msg
	case <-time.After(20 * time.Second):
		t.Fatal("no message within 20 s")
		return nil
	}
}

// nextDesired returns the next desired patch the module gets.
func (m *module) nextDesired(t testing.TB) (string, map[string]any) {
	t.Helper()
	for {
		msg := m.next(t)
		if strings.HasPrefix(msg.Topic(), topicDesired) {
			var body map[string]any
			if err := json.Unmarshal(msg.Payload(), &body); err != nil {
				t.Fatalf("desired patch body %q: %v", msg.Payload(), err)
			}
			return msg.Topic(), body
		}
	}
}

// get returns the module's twin as the broker answers a GET.
func (m *module) get(t testing.TB) (desired, reported map[string]any) {
	t.Helper()
	topic, body := m.request(t, topicGet, nil)
	if !strings.HasPrefix(topic, topicResponse+"200/") {
		t.Fatalf("GET answered on %s: %s", topic, body)
	}
	var tw struct{ Desired, Reported map[string]any }
	if err := json.Unmarshal(body, &tw); err != nil {
		t.Fatalf("GET body %s: %v", body, err)
	}
	return tw.Desired, tw.Reported
}

// waitLost waits for the module's connection to be closed.
func (m *module) waitLost(t testing.TB, why string) {
	t.Helper()
	select {
	case <-m.lost:
	case <-time.After(20 * time.Second):
		t.Fatalf("the connection was not closed within 20 s (%s)", why)
	}
}

// hubDesired patches a module's desired properties at the hub and returns
// the new desired $version.
func (f *fixture) hubDesired(t testing.TB, module, desired string) int64 {
	t.Helper()
	tw, err := f.owner.PatchTwin(context.Background(), "d", module, []byte(`{"properties":{"desired":`+desired+`}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	return tw.DesiredVersion()
}

// desiredAtDevice patches a module's desired properties at the hub and
// waits until the device has the change.
func (f *fixture) desiredAtDevice(t testing.TB, module, desired string) {
	t.Helper()
	v := f.hubDesired(t, module, desired)
	eventually(t, "the desired change at the device", func() bool {
		local, err := f.syncer.Twin(module)
		return err == nil && local.DesiredVersion() >= v
	})
}
