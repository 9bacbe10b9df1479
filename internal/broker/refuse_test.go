package broker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestRefusedConnects(t *testing.T) {
	f := setup(t, fixtureOptions{})
	otherKey := "c2VjcmV0IGtleSBvZiBhbm90aGVyIG1vZHVsZSEhISE=" // base64, not a's key
	for _, c := range []struct {
		name, clientID, username, password string
		want                               error
		log                                string
	}{
		{"no password", "d/a", f.username("a"), "", pahopackets.ErrorRefusedBadUsernameOrPassword, "no password"},
		{"device token", "d/a", f.username("a"), f.token(t, "", f.keys[""], time.Hour), pahopackets.ErrorRefusedNotAuthorised, "not this module"},
		{"another module's token", "d/a", f.username("a"), f.token(t, "b", f.keys["b"], time.Hour), pahopackets.ErrorRefusedNotAuthorised, "not this module"},
		{"bad signature", "d/a", f.username("a"), f.token(t, "a", otherKey, time.Hour), pahopackets.ErrorRefusedBadUsernameOrPassword, "matches neither key"},
		{"expired", "d/a", f.username("a"), f.token(t, "a", f.keys["a"], -10*time.Minute), pahopackets.ErrorRefusedBadUsernameOrPassword, "expired"},
		{"not a token", "d/a", f.username("a"), "hunter2", pahopackets.ErrorRefusedBadUsernameOrPassword, "not a SAS token"},
		{"wrong username", "d/a", f.username("b"), f.token(t, "a", f.keys["a"], time.Hour), pahopackets.ErrorRefusedBadUsernameOrPassword, "username"},
		{"client id without module", "d", f.username("a"), f.token(t, "a", f.keys["a"], time.Hour), pahopackets.ErrorRefusedIDRejected, "is not {deviceId}/{moduleId}"},
		{"the device itself", "d", f.deviceUsername("d"), f.token(t, "", f.keys[""], time.Hour), pahopackets.ErrorRefusedNotAuthorised, `this edge device, \"d\", connected as a device`},
		{"a device that is not a child", "leaf", f.deviceUsername("leaf"), "x", pahopackets.ErrorRefusedNotAuthorised, `device \"leaf\" is not a child of this edge device \"d\"`},
		{"another device", "e/a", f.username("a"), f.token(t, "a", f.keys["a"], time.Hour), pahopackets.ErrorRefusedIDRejected, "names device"},
		{"unknown module", "d/zz", f.username("zz"), f.token(t, "zz", f.keys["a"], time.Hour), pahopackets.ErrorRefusedNotAuthorised, "no module"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.connect(t, c.clientID, c.username, c.password)
			if !errors.Is(err, c.want) {
				t.Fatalf("connect: %v, want %v", err, c.want)
			}
			f.waitLog(t, "refused a connection", "client_id="+c.clientID, c.log)
		})
	}
	// The broker still serves the others.
	b := f.connectModule(t, "b")
	if d, _ := b.get(t); d["$version"] != 1.0 {
		t.Fatalf("GET after the refusals: %v", d)
	}
	if strings.Contains(f.logs.String(), "sig=") {
		t.Fatal("the log holds a token")
	}
}

// deviceUsername is the username of a device's own CONNECT, as the Azure
// IoT SDKs' device clients send it.
func (f *fixture) deviceUsername(device string) string {
	return f.hub.HostName() + "/" + device + "/?api-version=2021-04-12"
}

// rawConn is a TLS connection to the broker that speaks MQTT by hand.
type rawConn struct {
	*tls.Conn
}

func (f *fixture) dialRaw(t testing.TB) *rawConn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", f.addr, f.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{c}
}

// dialRawSlowReader dials with a small receive buffer, so that what the
// client leaves unread soon stops the broker's writes.
func (f *fixture) dialRawSlowReader(t testing.TB) *rawConn {
	t.Helper()
	tc, err := net.DialTimeout("tcp", f.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.(*net.TCPConn).SetReadBuffer(8 << 10); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(tc, f.tlsConfig())
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{c}
}

// connect sends a CONNECT at protocol level version (3: MQTT 3.1, 4: 3.1.1,
// 5) and returns the CONNACK's return (or reason) code.
func (c *rawConn) connect(t testing.TB, version byte, clientID, username, password string, keepalive uint16) byte {
	t.Helper()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: keepalive,
			ClientIdentifier: clientID,
			UsernameFlag:     true, Username: []byte(username),
			PasswordFlag: password != "", Password: []byte(password),
		},
	}
	if version == 3 {
		pk.Connect.ProtocolName = []byte("MQIsdp")
	}
	c.write(t, func(b *bytes.Buffer) error { return pk.ConnectEncode(b) })
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	head := make([]byte, 2)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if head[0] != 0x20 {
		t.Fatalf("got packet type %#x, not CONNACK", head[0])
	}
	rest := make([]byte, head[1])
	if _, err := io.ReadFull(c, rest); err != nil || len(rest) < 2 {
		t.Fatalf("read CONNACK: %v", err)
	}
	return rest[1]
}

func (c *rawConn) write(t testing.TB, encode func(*bytes.Buffer) error) {
	t.Helper()
	var b bytes.Buffer
	if err := encode(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// waitClosed reads (and drops) until the broker closes the connection.
func (c *rawConn) waitClosed(t testing.TB, why string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the broker did not close the connection within 20 s (%s)", why)
	}
}

func TestRefusedProtocols(t *testing.T) {
	f := setup(t, fixtureOptions{})
	tok := f.token(t, "a", f.keys["a"], time.Hour)
	if code := f.dialRaw(t).connect(t, 3, "d/a", f.username("a"), tok, 30); code != connackBadProtocol {
		t.Fatalf("MQTT 3.1: CONNACK %#x, want %#x", code, connackBadProtocol)
	}
	f.waitLog(t, "only MQTT 3.1.1", "protocol=\"MQTT 3.1\"")
	if code := f.dialRaw(t).connect(t, 5, "d/a", f.username("a"), tok, 30); code != packets.ErrUnsupportedProtocolVersion.Code {
		t.Fatalf("MQTT 5: CONNACK reason %#x, want %#x", code, packets.ErrUnsupportedProtocolVersion.Code)
	}
	f.waitLog(t, "only MQTT 3.1.1", "protocol=\"MQTT 5\"")
	if code := f.dialRaw(t).connect(t, 4, "d/a", f.username("a"), tok, 30); code != 0 {
		t.Fatalf("MQTT 3.1.1: CONNACK %#x", code)
	}
}

// TestOnlyOwnTopics: subscriptions other than the module's twin topics get
// SUBACK 0x80, a PUBLISH elsewhere closes the connection, and the other
// modules are not affected.
func TestOnlyOwnTopics(t *testing.T) {
	f := setup(t, fixtureOptions{})
	a := f.connectModule(t, "a")
	b := f.connectModule(t, "b")
	refused := []string{
		"devices/d/modules/a/messages/events/#", "devices/d/modules/a/inputs/#", "$iothub/methods/res/#",
		"#", "$iothub/#", "$iothub/twin/#", "$SYS/#", "$iothub/twin/res/+",
	}
	for i, code := range a.subscribe(t, refused...) {
		if code != 0x80 {
			t.Errorf("subscribe %s: SUBACK %#x, want 0x80", refused[i], code)
		}
	}
	f.waitLog(t, "refused a subscription", "module=a", `filter=$iothub/methods/res/#`)

	for _, topic := range []string{
		"devices/d/modules/a/messages/events/",
		"$iothub/methods/res/2xx/?$rid=1", // an answer without a status code
		"$iothub/methods/res/200/",        // or without a $rid
		"$iothub/twin/res/200/?$rid=1",
		"$iothub/twin/GET/",
		"$iothub/twin/PATCH/properties/desired/?$rid=1",
	} {
		m := f.connectModule(t, "a")
		m.c.Publish(topic, 0, false, []byte(`{}`))
		m.waitLost(t, "publish to "+topic)
		f.waitLog(t, "refused publish", "module=a", topic)
	}
	// b was not affected and saw none of it.
	if d, _ := b.get(t); d["$version"] != 1.0 {
		t.Fatalf("b's GET: %v", d)
	}
	select {
	case msg := <-b.msgs:
		t.Fatalf("b got %s", msg.Topic())
	default:
	}
}

// TestKeepAliveEnforced: a client that asks for no keep-alive and never
// pings is closed after 1.5 times the broker's maximum.
func TestKeepAliveEnforced(t *testing.T) {
	f := setup(t, fixtureOptions{config: func(c *Config) { c.MaxKeepAlive = time.Second }})
	c := f.dialRaw(t)
	if code := c.connect(t, 4, "d/a", f.username("a"), f.token(t, "a", f.keys["a"], time.Hour), 0); code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	c.waitClosed(t, "no PINGREQ")
	f.waitLog(t, "module disconnected", "module=a")
}

// TestSilentHandshake: a client that opens TCP and says nothing (no TLS
// ClientHello, or no CONNECT) is closed after the handshake timeout, and
// clients that leave halfway through do not disturb the broker.
func TestSilentHandshake(t *testing.T) {
	f := setup(t, fixtureOptions{config: func(c *Config) { c.HandshakeTimeout = time.Second }})
	tcp, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	_ = tcp.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, tcp); err != nil {
		t.Fatalf("silent TCP: %v (the broker did not close it)", err)
	}
	c := f.dialRaw(t) // TLS, then no CONNECT
	c.waitClosed(t, "no CONNECT")
	// Modules that go away halfway through the TLS handshake, or through
	// a CONNECT.
	for range 20 {
		half, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = half.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
		half.Close()
		h := f.dialRaw(t)
		_, _ = h.Write([]byte{0x10, 0x40, 0x00, 0x04, 'M', 'Q'})
		h.Close()
	}
	a := f.connectModule(t, "a")
	if d, _ := a.get(t); d["$version"] != 1.0 {
		t.Fatalf("GET: %v", d)
	}
}

// TestFloods: 10,000 QoS 1 requests from a client that reads nothing, and
// a stream of malformed packets: each ends that connection only.
func TestFloods(t *testing.T) {
	f := setup(t, fixtureOptions{config: func(c *Config) { c.WriteTimeout = time.Second }})
	// Answers of 28 KB, so that what a leaves unread outgrows any socket
	// buffer and the broker's queue for it.
	big := make([]string, 7)
	for i := range big {
		big[i] = fmt.Sprintf(`"k%d":"%s"`, i, strings.Repeat("x", 4000))
	}
	f.desiredAtDevice(t, "a", "{"+strings.Join(big, ",")+"}")
	b := f.connectModule(t, "b")

	c := f.dialRawSlowReader(t)
	if code := c.connect(t, 4, "d/a", f.username("a"), f.token(t, "a", f.keys["a"], time.Hour), 30); code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: filterResponses}}, ProtocolVersion: 4}
	c.write(t, sub.SubscribeEncode)
	written := make(chan error, 1)
	go func() {
		var buf bytes.Buffer
		for i := range 10000 {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
				PacketID: uint16(i%60000 + 2), TopicName: topicGet + "?$rid=1"}
			if err := pk.PublishEncode(&buf); err != nil {
				written <- err
				return
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := c.Write(buf.Bytes())
		written <- err
	}()
	f.waitLog(t, "module disconnected", "module=a")
	if log := f.logs.String(); !strings.Contains(log, "i/o timeout") && !strings.Contains(log, "does not read") {
		t.Fatalf("a was disconnected, but not because it does not read:\n%s", log)
	}
	<-written // done, or failed because the broker closed the connection
	if d, _ := b.get(t); d["$version"] != 1.0 {
		t.Fatalf("b's GET during a's flood: %v", d)
	}

	g := f.dialRaw(t)
	if code := g.connect(t, 4, "d/a", f.username("a"), f.token(t, "a", f.keys["a"], time.Hour), 30); code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	junk := bytes.Repeat([]byte{0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, 1000)
	_, _ = g.Write(junk)
	g.waitClosed(t, "malformed packets")
	if d, _ := b.get(t); d["$version"] != 1.0 {
		t.Fatalf("b's GET after the malformed packets: %v", d)
	}
}
