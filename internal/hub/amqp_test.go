package hub_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// amqpHub is a hub refusing AMQP on a free loopback port; it returns the hub,
// its log and a dialer of its AMQP port.
func amqpHub(t *testing.T) (*hub.Hub, *hubtest.LogBuffer, func() *tls.Conn) {
	t.Helper()
	logs := &hubtest.LogBuffer{}
	h, _, err := hub.Open(hub.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", AMQPListen: "127.0.0.1:0",
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
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", h.AMQPAddr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("dial the AMQP port: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a hung exchange fails, not hangs
		return c
	}
	return h, logs, dial
}

// readFrame reads one AMQP frame and returns its type and body.
func readFrame(t *testing.T, r io.Reader) (typ byte, body []byte) {
	t.Helper()
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatalf("read a frame header: %v", err)
	}
	size := binary.BigEndian.Uint32(hdr[:4])
	body = make([]byte, size-8)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("read a frame body: %v", err)
	}
	return hdr[5], body
}

func expectHeader(t *testing.T, r io.Reader, want []byte) {
	t.Helper()
	got := make([]byte, 8)
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("protocol header %q (%v), want %q", got, err, want)
	}
}

// TestAMQPRefusal speaks AMQP 1.0 by hand to the hub's AMQP port: with SASL
// (as device clients start) the hub accepts any mechanism, then answers the
// AMQP header with open and a close whose error is amqp:not-implemented
// with what to use instead; a header that is not AMQP's gets AMQP's own.
func TestAMQPRefusal(t *testing.T) {
	_, logs, dial := amqpHub(t)
	amqpHeader := []byte("AMQP\x00\x01\x00\x00")
	saslHeader := []byte("AMQP\x03\x01\x00\x00")

	c := dial()
	if _, err := c.Write(saslHeader); err != nil {
		t.Fatal(err)
	}
	expectHeader(t, c, saslHeader)
	if typ, body := readFrame(t, c); typ != 1 || !bytes.HasPrefix(body, []byte{0x00, 0x53, 0x40}) || !bytes.Contains(body, []byte("ANONYMOUS")) {
		t.Fatalf("sasl-mechanisms: type %d, body %q", typ, body)
	}
	// sasl-init, ANONYMOUS: described 0x41, list [sym "ANONYMOUS"].
	init := append([]byte{0x00, 0x53, 0x41, 0xc0, 11, 1, 0xa3, 9}, "ANONYMOUS"...)
	frame := binary.BigEndian.AppendUint32(nil, uint32(8+len(init)))
	frame = append(append(frame, 2, 1, 0, 0), init...)
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	if typ, body := readFrame(t, c); typ != 1 || !bytes.Equal(body, []byte{0x00, 0x53, 0x44, 0xd0, 0, 0, 0, 6, 0, 0, 0, 1, 0x50, 0}) {
		t.Fatalf("sasl-outcome: type %d, body % x; want code ok", typ, body)
	}
	if _, err := c.Write(amqpHeader); err != nil {
		t.Fatal(err)
	}
	expectHeader(t, c, amqpHeader)
	if typ, body := readFrame(t, c); typ != 0 || !bytes.HasPrefix(body, []byte{0x00, 0x53, 0x10}) {
		t.Fatalf("open: type %d, body %q", typ, body)
	}
	typ, body := readFrame(t, c)
	if typ != 0 || !bytes.HasPrefix(body, []byte{0x00, 0x53, 0x18}) ||
		!bytes.Contains(body, []byte("amqp:not-implemented")) ||
		!bytes.Contains(body, []byte("outpost hub does not speak AMQP: use IoT Hub's REST API over HTTPS on port 443")) {
		t.Fatalf("close: type %d, body %q", typ, body)
	}
	c.Close()

	// Not AMQP: AMQP's answer is the header it speaks, then the end.
	c = dial()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	expectHeader(t, c, amqpHeader)
	if rest, err := io.ReadAll(c); len(rest) != 0 {
		t.Fatalf("after the header: %q (%v)", rest, err)
	}
	c.Close()

	// Each is logged, with what went wrong on the way, if anything.
	eventually(t, "two log lines", func() bool { return logs.Count("refused an AMQP connection") == 2 })
	if logs.Count("refused an AMQP connection", "transport=AMQPS", "err=<nil>") != 1 || logs.Count("is not AMQP 1.0") != 1 {
		t.Fatalf("hub log:\n%s", logs)
	}
}

// eventually waits up to a minute for cond (the machine is shared: no tighter
// bound).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
	}
}
