package workload_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/syncer"
	"github.com/outpost-edge/outpost/internal/workload"
)

const apiVersion = "2018-06-28" // what azure-iot-device sends

// fixture is a hub with device "dev" and modules "m1" and "m2", a syncer
// following it, and each module's workload socket served as the daemon
// serves it.
type fixture struct {
	hub     *hubtest.Hub
	owner   *hubclient.Client
	sy      *syncer.Syncer
	ca      *deviceca.CA
	sockets map[string]string       // by module
	clients map[string]*http.Client // by module: over its socket
}

func setup(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{sockets: map[string]string{}, clients: map[string]*http.Client{}}
	f.hub = hubtest.Start(t, hubtest.Options{})
	f.owner = f.hub.Client(t)
	ctx := t.Context()
	d, err := f.owner.CreateDevice(ctx, hubapi.Device{DeviceID: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"m1", "m2"} {
		if _, err := f.owner.CreateModule(ctx, hubapi.Module{DeviceID: "dev", ModuleID: m}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.sy, err = syncer.New(f.hub.ClientFor(t, f.hub.DeviceConnectionString("dev", "", d.Authentication.SymmetricKey.PrimaryKey)), st, "dev")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.sy.Run(sctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the first sync", func() bool { return f.sy.Synced() })

	f.ca, err = deviceca.Create(t.TempDir(), "test device CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := workload.New(workload.Config{Modules: f.sy.Modules, CA: f.ca})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "wl") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, m := range []string{"m1", "m2"} {
		sock := filepath.Join(dir, m+".sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: srv.Handler(m)}
		go hs.Serve(l)
		t.Cleanup(func() { hs.Close() })
		f.sockets[m] = sock
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
		t.Cleanup(tr.CloseIdleConnections)
		f.clients[m] = &http.Client{Transport: tr}
	}
	return f
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// module returns a module's identity at the hub.
func (f *fixture) module(t testing.TB, id string) hubapi.Module {
	t.Helper()
	m, err := f.owner.GetModule(t.Context(), "dev", id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// call makes a request on module's socket, as an SDK does, and decodes the
// JSON answer into out; it returns the status and the raw body.
func (f *fixture) call(t testing.TB, module, method, path string, body any, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://workload"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.clients[module].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: content type %q", method, path, ct)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, string(raw)
}

// pythonHMAC computes base64(HMAC-SHA256(base64-decoded key, data)) with
// python3's hmac module, not with our code.
func pythonHMAC(t *testing.T, key string, data []byte) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	cmd := exec.Command(py, "-c", `import base64, hashlib, hmac, sys
key = base64.b64decode(sys.argv[1])
print(base64.b64encode(hmac.new(key, sys.stdin.buffer.read(), hashlib.sha256).digest()).decode())`, key)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// sasToken signs a SAS token for module through its workload socket, the
// way azure-iot-device does: sign "<url-encoded resource>\n<expiry>" and
// put the digest in the token.
func (f *fixture) sasToken(t *testing.T, module, genID string, expiry time.Time) (token, signed, digest string) {
	t.Helper()
	sr := url.QueryEscape(f.hub.HostName() + "/devices/dev/modules/" + module)
	se := strconv.FormatInt(expiry.Unix(), 10)
	signed = sr + "\n" + se
	var resp struct{ Digest string }
	code, raw := f.call(t, module, "POST", "/modules/"+module+"/genid/"+genID+"/sign?api-version="+apiVersion,
		map[string]string{"keyId": "primary", "algo": "HMACSHA256", "data": base64.StdEncoding.EncodeToString([]byte(signed))}, &resp)
	if code != http.StatusOK {
		t.Fatalf("sign: %d %s", code, raw)
	}
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(resp.Digest) + "&se=" + se, signed, resp.Digest
}

// hubGetTwin returns the status the hub answers a read of module's twin
// with token.
func (f *fixture) hubGetTwin(t *testing.T, module, token string) int {
	t.Helper()
	return f.hub.GetStatus(t, "/twins/dev/modules/"+module+"?api-version="+hubclient.APIVersion, token)
}

func TestSignMakesTokensTheHubAccepts(t *testing.T) {
	f := setup(t)
	m1 := f.module(t, "m1")
	token, signed, digest := f.sasToken(t, "m1", m1.GenerationID, time.Now().Add(time.Hour))
	if want := pythonHMAC(t, m1.Authentication.SymmetricKey.PrimaryKey, []byte(signed)); digest != want {
		t.Fatalf("digest %s, python3's hmac says %s", digest, want)
	}
	if code := f.hubGetTwin(t, "m1", token); code != http.StatusOK {
		t.Fatalf("the hub answers the module's own token with %d", code)
	}
	// The secondary key signs with the secondary key.
	var resp struct{ Digest string }
	data := []byte("some bytes\x00\xff")
	code, raw := f.call(t, "m1", "POST", "/modules/m1/genid/"+m1.GenerationID+"/sign?api-version=2019-01-30",
		map[string]string{"keyId": "secondary", "algo": "HMACSHA256", "data": base64.StdEncoding.EncodeToString(data)}, &resp)
	if code != http.StatusOK || resp.Digest != pythonHMAC(t, m1.Authentication.SymmetricKey.SecondaryKey, data) {
		t.Errorf("secondary: %d %s", code, raw)
	}

	// Offline: the hub stopped, signing goes on from the cache.
	f.hub.Stop()
	_, signed, digest = f.sasToken(t, "m1", m1.GenerationID, time.Now().Add(2*time.Hour))
	if want := pythonHMAC(t, m1.Authentication.SymmetricKey.PrimaryKey, []byte(signed)); digest != want {
		t.Fatalf("offline digest %s, python3's hmac says %s", digest, want)
	}
}

func TestTrustBundleAndServerCertificate(t *testing.T) {
	f := setup(t)
	var tb struct{ Certificate string }
	if code, raw := f.call(t, "m1", "GET", "/trust-bundle?api-version="+apiVersion, nil, &tb); code != http.StatusOK {
		t.Fatalf("trust bundle: %d %s", code, raw)
	}
	file, err := os.ReadFile(f.ca.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	if tb.Certificate != string(file) {
		t.Fatalf("trust bundle %q is not the CA file %q", tb.Certificate, file)
	}

	m2 := f.module(t, "m2")
	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	var cr struct {
		PrivateKey  struct{ Type, Bytes string }
		Certificate string
		Expiration  string
	}
	code, raw := f.call(t, "m2", "POST", "/modules/m2/genid/"+m2.GenerationID+"/certificate/server?api-version="+apiVersion,
		map[string]string{"commonName": "m2.local", "expiration": exp.Format(time.RFC3339)}, &cr)
	if code != http.StatusCreated {
		t.Fatalf("server certificate: %d %s", code, raw)
	}
	if cr.PrivateKey.Type != "key" || cr.Expiration != exp.Format(time.RFC3339) {
		t.Errorf("answer %s", raw)
	}
	pair, err := tls.X509KeyPair([]byte(cr.Certificate), []byte(cr.PrivateKey.Bytes))
	if err != nil {
		t.Fatalf("the certificate and the key do not go together: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(tb.Certificate)) {
		t.Fatal("the trust bundle holds no certificate")
	}
	for _, host := range []string{"m2.local", "m2"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the server certificate does not chain to the trust bundle for %s: %v", host, err)
		}
	}
	if !leaf.NotAfter.Equal(exp) {
		t.Errorf("not after %v, asked %v", leaf.NotAfter, exp)
	}
	// A TLS server with it is trusted by a client holding only the bundle.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "m2.local"})
	if err != nil {
		t.Fatalf("TLS with the module's certificate: %v", err)
	}
	c.Close()

	// Far expirations are capped; the key is PEM.
	code, raw = f.call(t, "m2", "POST", "/modules/m2/genid/"+m2.GenerationID+"/certificate/server?api-version="+apiVersion,
		map[string]string{"commonName": "m2.local", "expiration": time.Now().Add(10 * 365 * 24 * time.Hour).Format(time.RFC3339)}, &cr)
	if code != http.StatusCreated {
		t.Fatalf("far expiration: %d %s", code, raw)
	}
	got, _ := time.Parse(time.RFC3339, cr.Expiration)
	if got.After(time.Now().Add(deviceca.ServerLifetime + time.Minute)) {
		t.Errorf("expiration %s is not capped", cr.Expiration)
	}
	if b, _ := pem.Decode([]byte(cr.PrivateKey.Bytes)); b == nil {
		t.Errorf("private key is not PEM: %q", cr.PrivateKey.Bytes)
	}
}

func TestRefusals(t *testing.T) {
	f := setup(t)
	m1, m2 := f.module(t, "m1"), f.module(t, "m2")
	sign := func(keyID, algo, data string) map[string]string {
		return map[string]string{"keyId": keyID, "algo": algo, "data": data}
	}
	ok := sign("primary", "HMACSHA256", "aGVsbG8=")
	signPath := func(m, g string) string { return "/modules/" + m + "/genid/" + g + "/sign?api-version=" + apiVersion }
	for _, c := range []struct {
		name         string
		module       string // the socket
		method, path string
		body         any
		status       int
		want         string
	}{
		{"another module", "m1", "POST", signPath("m2", m2.GenerationID), ok, http.StatusForbidden, `may not act for module \"m2\"`},
		{"another module's certificate", "m2", "POST", "/modules/m1/genid/" + m1.GenerationID + "/certificate/server?api-version=" + apiVersion,
			map[string]string{"commonName": "x"}, http.StatusForbidden, "serves \\\"m2\\\" only"},
		{"stale generation", "m1", "POST", signPath("m1", "638000000000000000"), ok, http.StatusNotFound, "IOTEDGE_MODULEGENERATIONID"},
		{"unknown keyId", "m1", "POST", signPath("m1", m1.GenerationID), sign("tertiary", "HMACSHA256", "aGVsbG8="), http.StatusBadRequest, `keyId \"tertiary\" is unknown`},
		{"no keyId", "m1", "POST", signPath("m1", m1.GenerationID), sign("", "HMACSHA256", "aGVsbG8="), http.StatusBadRequest, "keyId is missing"},
		{"unknown algo", "m1", "POST", signPath("m1", m1.GenerationID), sign("primary", "HMACSHA1", "aGVsbG8="), http.StatusBadRequest, `algo \"HMACSHA1\" is not supported`},
		{"bad base64", "m1", "POST", signPath("m1", m1.GenerationID), sign("primary", "HMACSHA256", "not base64!"), http.StatusBadRequest, "data is not valid base64"},
		{"bad JSON", "m1", "POST", signPath("m1", m1.GenerationID), `{"keyId": "primary",`, http.StatusBadRequest, "not valid JSON"},
		{"wrong type", "m1", "POST", signPath("m1", m1.GenerationID), `{"keyId": 1}`, http.StatusBadRequest, "field keyId must be a string"},
		{"no api-version", "m1", "POST", "/modules/m1/genid/" + m1.GenerationID + "/sign", ok, http.StatusBadRequest, "api-version is missing"},
		{"old api-version", "m1", "GET", "/trust-bundle?api-version=2017-11-14", nil, http.StatusBadRequest, "older than the oldest supported"},
		{"bad api-version", "m1", "GET", "/trust-bundle?api-version=latest", nil, http.StatusBadRequest, `api-version \"latest\" is not a date`},
		{"no commonName", "m1", "POST", "/modules/m1/genid/" + m1.GenerationID + "/certificate/server?api-version=" + apiVersion,
			map[string]string{"expiration": time.Now().Add(time.Hour).Format(time.RFC3339)}, http.StatusBadRequest, "commonName is missing"},
		{"bad expiration", "m1", "POST", "/modules/m1/genid/" + m1.GenerationID + "/certificate/server?api-version=" + apiVersion,
			map[string]string{"commonName": "x", "expiration": "tomorrow"}, http.StatusBadRequest, `expiration \"tomorrow\" is not an RFC 3339 time`},
		{"past expiration", "m1", "POST", "/modules/m1/genid/" + m1.GenerationID + "/certificate/server?api-version=" + apiVersion,
			map[string]string{"commonName": "x", "expiration": "2001-01-01T00:00:00Z"}, http.StatusBadRequest, "not in the future"},
		{"unknown route", "m1", "GET", "/modules?api-version=" + apiVersion, nil, http.StatusNotFound, "no such route"},
		{"decrypt", "m1", "POST", "/modules/m1/genid/" + m1.GenerationID + "/decrypt?api-version=" + apiVersion, "{}", http.StatusNotImplemented, "does not implement"},
	} {
		code, raw := f.call(t, c.module, c.method, c.path, c.body, nil)
		var e struct{ Message string }
		if err := json.Unmarshal([]byte(raw), &e); err != nil || e.Message == "" {
			t.Errorf("%s: the body is not IoT Edge's error shape {\"message\": …}: %s", c.name, raw)
		}
		if code != c.status || !strings.Contains(raw, c.want) {
			t.Errorf("%s: %d %s, want %d and %q", c.name, code, raw, c.status, c.want)
		}
	}

	// A module made again at the hub gets a new generation: the old one is
	// refused once the device has synced it, the new one signs.
	if err := f.owner.DeleteModule(t.Context(), "dev", "m1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.owner.CreateModule(t.Context(), hubapi.Module{DeviceID: "dev", ModuleID: "m1"}); err != nil {
		t.Fatal(err)
	}
	m1b := f.module(t, "m1")
	if m1b.GenerationID == m1.GenerationID {
		t.Fatal("the module made again has the same generation id")
	}
	eventually(t, "the new generation on the device", func() bool {
		code, _ := f.call(t, "m1", "POST", signPath("m1", m1b.GenerationID), ok, nil)
		return code == http.StatusOK
	})
	if code, raw := f.call(t, "m1", "POST", signPath("m1", m1.GenerationID), ok, nil); code != http.StatusNotFound {
		t.Errorf("the old generation: %d %s", code, raw)
	}
	// A token signed for m1 is not m2's: the hub refuses it for m2's twin.
	token, _, _ := f.sasToken(t, "m1", m1b.GenerationID, time.Now().Add(time.Hour))
	if code := f.hubGetTwin(t, "m2", token); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("m1's token on m2's twin: %d", code)
	}
}

func TestNotSyncedYet(t *testing.T) {
	ca, err := deviceca.Create(t.TempDir(), "ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := workload.New(workload.Config{CA: ca, Modules: func() ([]hubapi.SyncModule, error) { return nil, syncer.ErrNotSynced }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/modules/m/genid/1/sign?api-version="+apiVersion, strings.NewReader(`{}`))
	srv.Handler("m").ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "has not synced") {
		t.Errorf("%d %s", rec.Code, rec.Body.String())
	}
	if _, err := workload.New(workload.Config{}); err == nil {
		t.Error("a server without CA and modules")
	}
}

// BenchmarkSign signs over a module's socket, one keep-alive connection, as
// an SDK renewing its token does (each sign reads the module's keys from the
// syncer's cache).
func BenchmarkSign(b *testing.B) {
	f := setup(b)
	m1 := f.module(b, "m1")
	path := "/modules/m1/genid/" + m1.GenerationID + "/sign?api-version=" + apiVersion
	body := map[string]string{"keyId": "primary", "algo": "HMACSHA256", "data": base64.StdEncoding.EncodeToString([]byte("localhost%3A443%2Fdevices%2Fdev%2Fmodules%2Fm1\n1700000000"))}
	b.ResetTimer()
	for b.Loop() {
		if code, raw := f.call(b, "m1", "POST", path, body, nil); code != http.StatusOK {
			b.Fatalf("%d %s", code, raw)
		}
	}
}
