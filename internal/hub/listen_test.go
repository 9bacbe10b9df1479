package hub_test

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// occupy listens on a free loopback port for the rest of the test and
// returns its address: an address "in use".
func occupy(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestListenFallback: a hub whose address is taken listens on its fallback
// address, says why, and its connection strings carry the port it got.
func TestListenFallback(t *testing.T) {
	taken := occupy(t)
	h, _, err := hub.Open(hub.Config{DataDir: t.TempDir(), Listen: taken, FallbackListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("open with a fallback: %v", err)
	}
	defer h.Close()
	fb := h.Fallback()
	if fb == nil {
		t.Fatalf("no fallback reported; listening on %s", h.Addr())
	}
	if fb.Wanted != taken || fb.Got != h.Addr().String() || !errors.Is(fb.Err, syscall.EADDRINUSE) {
		t.Fatalf("fallback %+v, hub on %s", fb, h.Addr())
	}
	port := h.Addr().(*net.TCPAddr).Port
	cs, err := identity.ParseConnectionString(h.Credentials().ConnectionString)
	if err != nil || cs.HostName != net.JoinHostPort("localhost", strconv.Itoa(port)) {
		t.Fatalf("connection string %q (%v): want HostName localhost:%d", h.Credentials().ConnectionString, err, port)
	}
	_, takenPort, _ := net.SplitHostPort(taken)
	msg := fb.Message()
	for _, want := range []string{
		"cannot listen on " + taken + " (address already in use",
		"listening on " + fb.Got + " instead",
		"Microsoft's Azure IoT SDKs connect to port 443 only",
		"cannot\nreach this hub",
		"ss -ltnp 'sport = " + takenPort + "'",
		"--listen ADDR",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("fallback message lacks %q:\n%s", want, msg)
		}
	}
}

// TestListenNoFallback: without a fallback, an address that cannot be bound
// fails the start with an error that says what to do, and leaves no data dir.
func TestListenNoFallback(t *testing.T) {
	taken := occupy(t)
	dir := t.TempDir()
	_, _, err := hub.Open(hub.Config{DataDir: dir, Listen: taken})
	var le *hub.ListenError
	if !errors.As(err, &le) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("open on a taken address: %v, want a *hub.ListenError for EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), taken) || !strings.Contains(le.Hint(), "ss -ltnp") || !strings.Contains(le.Hint(), "--listen ADDR") {
		t.Fatalf("error %q, hint %q", err, le.Hint())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed start left %d entries in the data dir", len(ents))
	}
	// The AMQP address likewise.
	_, _, err = hub.Open(hub.Config{DataDir: dir, Listen: "127.0.0.1:0", AMQPListen: taken})
	if !errors.As(err, &le) || le.Flag != "--amqp-listen" || !strings.Contains(le.Hint(), "--amqp-listen ADDR") {
		t.Fatalf("open on a taken AMQP address: %v", err)
	}
}

// TestAMQPBeside: by default (AMQPBeside) the hub refuses AMQP at port 5671
// of its host when it listens on 443, and not at all elsewhere; a port 5671
// that is taken is a warning, not an error.
func TestAMQPBeside(t *testing.T) {
	h, _, err := hub.Open(hub.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", AMQPBeside: true})
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if h.AMQPAddr() != nil || h.AMQPSkipped() != nil {
		t.Fatalf("a hub on port %s refuses AMQP on %v (skipped: %v): the SDKs cannot reach it anyway", h.Addr(), h.AMQPAddr(), h.AMQPSkipped())
	}

	ln := sdktest.Listen(t, "127.0.0.1:443")
	amqp := sdktest.Listen(t, "127.0.0.1:5671")
	h, _, err = hub.Open(hub.Config{DataDir: t.TempDir(), Listener: ln, AMQPBeside: true})
	if err != nil {
		t.Fatalf("open with 127.0.0.1:5671 taken: %v", err)
	}
	if h.AMQPAddr() != nil || !errors.Is(h.AMQPSkipped(), syscall.EADDRINUSE) || h.AMQPSkipped().Addr != "127.0.0.1:5671" {
		t.Fatalf("AMQP on %v, skipped %v", h.AMQPAddr(), h.AMQPSkipped())
	}
	h.Close()
	amqp.Close()
	// This test holds the ports' locks: listen again without them.
	h, _, err = hub.Open(hub.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:443", AMQPBeside: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if a := h.AMQPAddr(); a == nil || a.String() != "127.0.0.1:5671" {
		t.Fatalf("AMQP on %v (skipped: %v), want 127.0.0.1:5671", a, h.AMQPSkipped())
	}
}

// TestListenFallbackPermission: the message for a port the hub may not bind
// (not root) gives the exact fixes. (Tests run as root here, where 443
// binds: the error is made, not met.)
func TestListenFallbackPermission(t *testing.T) {
	eacces := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	fb := &hub.ListenFallback{Wanted: hub.DefaultListen, Got: hub.FallbackListen, Err: eacces}
	msg := fb.Message()
	for _, want := range []string{
		"cannot listen on :443 (permission denied: a port below 1024 needs root or the capability CAP_NET_BIND_SERVICE): listening on :8443 instead",
		"Microsoft's Azure IoT SDKs connect to port 443 only (they take no port in HostName)",
		`sudo setcap cap_net_bind_service=+ep "$(command -v outpost)"`,
		"run it as root",
		"--listen ADDR",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	le := &hub.ListenError{What: "hub", Flag: "--listen", Addr: "127.0.0.1:443", Err: eacces}
	if !strings.Contains(le.Error(), "permission denied") || !strings.Contains(le.Hint(), "sudo setcap cap_net_bind_service=+ep") {
		t.Fatalf("error %q, hint %q", le, le.Hint())
	}
}
