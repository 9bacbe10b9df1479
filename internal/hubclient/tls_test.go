package hubclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubclient"
)

// caOf writes the certificate of a test server (self-signed: its own CA)
// to a PEM file.
func caOf(t *testing.T, s *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ownerOf returns a client of the test server s with an owner's
// connection string naming it by address, trusting its certificate.
func ownerOf(t *testing.T, s *httptest.Server) *hubclient.Client {
	t.Helper()
	port := s.URL[strings.LastIndex(s.URL, ":")+1:]
	c, err := hubclient.New("HostName=127.0.0.1:"+port+";SharedAccessKeyName=owner;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", caOf(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestHubCA: with --ca, the hub's certificate is verified against that CA
// (the system's roots are read only when the CA did not sign it): the
// right CA and name pass; another CA, or a name the certificate is not
// for, fail with the hint that names what to fix.
func TestHubCA(t *testing.T) {
	hub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("[]")) }))
	defer hub.Close()
	other := otherCA(t)
	port := hub.URL[strings.LastIndex(hub.URL, ":")+1:]
	const key = "SharedAccessKeyName=owner;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
	for _, tc := range []struct {
		name, host, ca, hint string
	}{
		{"its CA", "127.0.0.1", caOf(t, hub), ""},
		{"another CA", "127.0.0.1", other, "not trusted"},
		{"another name", "localhost", caOf(t, hub), "is not for localhost:" + port},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := hubclient.New("HostName="+tc.host+":"+port+";"+key, tc.ca)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			_, _, err = c.ListDevicesPage(context.Background(), "", 10)
			var he *hubclient.Error
			switch {
			case tc.hint == "" && err != nil:
				t.Fatalf("with the hub's CA: %v", err)
			case tc.hint == "":
			case !errors.As(err, &he) || !strings.Contains(he.Hint(), tc.hint):
				t.Fatalf("error %v (hint %q), want a certificate error with a hint saying %q", err, hintOf(he), tc.hint)
			}
		})
	}
}

// otherCA writes a self-signed certificate for 127.0.0.1 (not the test
// servers') to a PEM file.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func hintOf(e *hubclient.Error) string {
	if e == nil {
		return ""
	}
	return e.Hint()
}

// TestHubTLSResumes: a new connection to the hub resumes the session of an
// earlier one (no certificate sent, no key exchange signed).
func TestHubTLSResumes(t *testing.T) {
	resumed := make(chan bool, 2)
	hub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resumed <- r.TLS.DidResume
		w.Write([]byte("[]"))
	}))
	defer hub.Close()
	c := ownerOf(t, hub)
	for i, want := range []bool{false, true} {
		if _, _, err := c.ListDevicesPage(context.Background(), "", 10); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if got := <-resumed; got != want {
			t.Fatalf("request %d: resumed %v, want %v", i+1, got, want)
		}
		c.CloseIdleConnections() // the next request opens a new connection
	}
}
