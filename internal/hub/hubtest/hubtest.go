// Package hubtest starts a real hub for tests: in this process, on a free
// loopback port, with HTTPS and its own data dir.
package hubtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/store"
)

// Hub is a hub started for a test.
type Hub struct {
	*hub.Hub
	DataDir          string
	ConnectionString string // the owner's
	CAFile           string // "" with InsecureHTTP
	stop             func()
}

// Options change how the hub starts; the zero value is HTTPS on 127.0.0.1:0.
type Options struct {
	DataDir      string // default t.TempDir()
	Listen       string // default 127.0.0.1:0
	InsecureHTTP bool
	HostName     string   // default localhost:PORT
	SANs         []string // extra names of the hub (certificate and tokens)
	Limits       hub.Limits
	// PresenceGrace is hub.Config.PresenceGrace.
	PresenceGrace time.Duration
	// Store is hub.Config.Store (the hub closes it). Without it, the hub is on
	// its data dir's file store, or with OUTPOST_TEST_STORE=etcd on a prefix of
	// its own in an etcd member embedded in the test process (etcd.go).
	Store store.Store
}

// Start starts a hub and stops it when the test ends.
func Start(t testing.TB, opts Options) *Hub {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Store == nil {
		opts.Store = testStore(t, opts.DataDir)
	}
	h, _, err := hub.Open(hub.Config{DataDir: opts.DataDir, Listen: opts.Listen, InsecureHTTP: opts.InsecureHTTP, HostName: opts.HostName, SANs: opts.SANs, Limits: opts.Limits, PresenceGrace: opts.PresenceGrace,
		Store: opts.Store})
	if err != nil {
		t.Fatalf("start hub: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx) }()
	creds := h.Credentials()
	th := &Hub{Hub: h, DataDir: opts.DataDir, ConnectionString: creds.ConnectionString, CAFile: creds.CAFile}
	var once bool
	th.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("hub serve: %v", err)
		}
		if err := h.Close(); err != nil {
			t.Errorf("hub close: %v", err)
		}
	}
	t.Cleanup(th.stop)
	return th
}

// Stop stops the hub now (it is also stopped when the test ends).
func (h *Hub) Stop() { h.stop() }

// Client returns a client with the owner's credentials.
func (h *Hub) Client(t testing.TB) *hubclient.Client {
	t.Helper()
	return h.ClientFor(t, h.ConnectionString)
}

// ClientFor returns a client for connectionString, trusting the hub's CA.
func (h *Hub) ClientFor(t testing.TB, connectionString string) *hubclient.Client {
	t.Helper()
	c, err := hubclient.New(connectionString, h.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// DeviceConnectionString returns the connection string of a device (or of a
// module when moduleID is not "") with key, on this hub.
func (h *Hub) DeviceConnectionString(deviceID, moduleID, key string) string {
	cs := &identity.ConnectionString{HostName: h.HostName(), DeviceID: deviceID, ModuleID: moduleID, SharedAccessKey: key}
	cs.UseInsecureHTTP = strings.HasSuffix(h.ConnectionString, "UseInsecureHttp=true")
	return cs.String()
}

// Request sends method path to the hub with the Authorization header auth
// (none when "") and the Host header host (the hub's host name when ""),
// built by hand rather than by hubclient, and returns the status and body.
func (h *Hub) Request(t testing.TB, method, path, auth, host string, body []byte) (int, string) {
	t.Helper()
	header := http.Header{}
	if auth != "" {
		header.Set("Authorization", auth)
	}
	return h.RequestHeader(t, method, path, host, header, body)
}

// RequestHeader is Request with any request headers (If-Match, …).
func (h *Hub) RequestHeader(t testing.TB, method, path, host string, header http.Header, body []byte) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 60 * time.Second}
	// Each call has its own client: close its connection when done, or a
	// test polling the hub keeps one open per call until the hub's limit
	// of connections per address (1024) refuses the next.
	defer hc.CloseIdleConnections()
	scheme := "http"
	if h.CAFile != "" {
		b, err := os.ReadFile(h.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(b)
		// The certificate always names localhost; dialing the listener's
		// address needs no name to resolve.
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
		scheme = "https"
	}
	req, err := http.NewRequest(method, scheme+"://"+h.Addr().String()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = h.HostName()
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// GetStatus sends GET path with the Authorization header authorization and
// returns the status.
func (h *Hub) GetStatus(t testing.TB, path, authorization string) int {
	t.Helper()
	code, _ := h.Request(t, http.MethodGet, path, authorization, "", nil)
	return code
}
