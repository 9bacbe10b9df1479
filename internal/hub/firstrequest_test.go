package hub_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// TestClosedBeforeFirstRequestLogged: a client that completes its TLS
// handshake and sends no request within --read-header-timeout gets EOF
// (http.Server closes the connection without an answer); no handshake
// failed, so the hub's periodic handshake log names these connections
// (closed_before_first_request) — with 10,000 devices behind HAProxy they
// were the devices' unexplained EOFs (docs/benchmarks.md). A client that
// sends its request, or closes its connection itself, is not counted.
func TestClosedBeforeFirstRequestLogged(t *testing.T) {
	t.Parallel()
	logs := &hubtest.LogBuffer{}
	h, _, err := hub.Open(hub.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Limits: hub.Limits{ReadHeaderTimeout: 300 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, h)
	ca, err := os.ReadFile(h.Credentials().CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}

	// One that answers: a request on its connection.
	busy, err := tls.Dial("tcp", h.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := io.WriteString(busy, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	busy.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := busy.Read(make([]byte, 1)); err != nil {
		t.Fatalf("a client that sent its request: %v", err)
	}

	// One that closes its connection after its handshake (a load
	// balancer's TLS check): not counted.
	check, err := tls.Dial("tcp", h.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	check.Close()

	// One that says nothing after its handshake.
	c, err := tls.Dial("tcp", h.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a client silent after its handshake: read %d bytes, %v; want EOF (closed by the hub)", n, err)
	}
	// The log comes every 10 s.
	for deadline := time.Now().Add(time.Minute); logs.Count("connections closed before their first request", "closed_before_first_request=1 ") == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no log of the connection closed before its first request in a minute; the hub's log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
