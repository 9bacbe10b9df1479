package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/websocket"
)

// The hub does not speak AMQP, nor MQTT: it answers the Azure IoT SDKs'
// AMQP transports (AMQPS on 5671, AMQP over WebSocket at /$iothub/websocket)
// with AMQP's own refusal, an open frame followed at once by a close frame
// whose error is amqp:not-implemented, as AMQP 1.0 (2.4.1) has a peer refuse
// a connection. The SDKs turn that condition into a NotImplementedError,
// which their retry policies never retry: the call fails at once, carrying
// the description below, instead of retrying for four minutes.

// amqpRefusal is the description of the hub's AMQP refusal.
const amqpRefusal = "outpost hub does not speak AMQP: use IoT Hub's REST API over HTTPS on port 443 " +
	"(azure-iothub's Registry, outpost's CLI) for identities, twins, deployments and direct methods " +
	"(Client.invokeDeviceMethod is not AMQP in azure-iothub: it works); cloud-to-device messages and feedback " +
	"are not served, and devices sync through `outpost daemon` over HTTPS " +
	"(devices speaking AMQP or MQTT themselves, as leaf devices, are issue 16)"

// amqpNotImplemented is AMQP's error condition for a refused feature.
const amqpNotImplemented = "amqp:not-implemented"

// amqpRefuseTimeout bounds one refused connection: the handshake, the
// refusal and the client's close.
const amqpRefuseTimeout = 10 * time.Second

// amqpsPort is IoT Hub's AMQPS port, where the SDKs' AMQP transports connect.
const amqpsPort = "5671"

// wsAMQP is the WebSocket subprotocol of AMQP (AMQP WebSocket Binding 1.0).
const wsAMQP = "AMQPWSB10"

// AMQP 1.0 protocol headers: "AMQP", a protocol id, version 1.0.0.
var (
	amqpHeader = []byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}
	saslHeader = []byte{'A', 'M', 'Q', 'P', 3, 1, 0, 0}
)

// listenAMQP listens where cfg says to refuse AMQP, beside a hub listening
// on httpsAddr. An address that cannot be bound is an error, or with
// AMQPBeside a *ListenError to warn of.
func listenAMQP(cfg Config, httpsAddr net.Addr) (net.Listener, *ListenError, error) {
	if cfg.AMQPListener != nil {
		return cfg.AMQPListener, nil, nil
	}
	addr, optional := cfg.AMQPListen, false
	if addr == "" && cfg.AMQPBeside {
		ta, ok := httpsAddr.(*net.TCPAddr)
		if !ok || ta.Port != 443 {
			return nil, nil, nil // the SDKs cannot reach this hub at all
		}
		host := ""
		if !ta.IP.IsUnspecified() {
			host = ta.IP.String()
		}
		addr, optional = net.JoinHostPort(host, amqpsPort), true
	}
	if addr == "" {
		return nil, nil, nil
	}
	ln, _, err := listen("AMQP refusal", "--amqp-listen", addr, "")
	var le *ListenError
	if err != nil && optional && errors.As(err, &le) {
		return nil, le, nil
	}
	return ln, nil, err
}

// refuseAMQP answers every connection of ln with the AMQP refusal until ctx
// is done.
func (h *Hub) refuseAMQP(ctx context.Context, ln net.Listener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go func() {
			defer c.Close()
			h.refuseAMQPConn(c, c.RemoteAddr().String(), "AMQPS")
		}()
	}
}

// deadlineConn is a connection with a deadline: a net.Conn, or a WebSocket.
type deadlineConn interface {
	io.ReadWriter
	SetDeadline(time.Time) error
}

// refuseAMQPConn speaks AMQP on c just far enough to refuse the
// connection with amqpRefusal: the protocol header (after a SASL exchange
// that accepts anything, if the client starts one), then open and close
// frames. It then reads what the client sends until it closes (or the
// deadline), so that the refusal is not lost to a reset.
func (h *Hub) refuseAMQPConn(c deadlineConn, remote, transport string) {
	_ = c.SetDeadline(time.Now().Add(amqpRefuseTimeout))
	err := sendAMQPRefusal(c)
	h.log.Warn("hub: refused an AMQP connection: outpost hub does not speak AMQP (clients: use the REST API over HTTPS)",
		"remote", remote, "transport", transport, "err", err)
	if cw, ok := c.(interface{ CloseWrite() error }); ok && err != nil {
		_ = cw.CloseWrite() // no refusal coming: the client sees the end at once
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
}

// sendAMQPRefusal is the exchange of refuseAMQPConn. Its error says what went
// wrong on the way, if anything (nil: the refusal was sent).
func sendAMQPRefusal(c io.ReadWriter) error {
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return fmt.Errorf("read the protocol header: %w", err)
	}
	if bytes.Equal(hdr, saslHeader) {
		// SASL: offer the mechanisms the SDKs use, accept whichever comes.
		mechs := amqpFrame(1, described(0x40, list(symbolArray("ANONYMOUS", "PLAIN", "EXTERNAL", "MSSBCBS"))))
		if _, err := c.Write(append(slices.Clone(saslHeader), mechs...)); err != nil {
			return err
		}
		if err := skipFrame(c); err != nil {
			return fmt.Errorf("read sasl-init: %w", err)
		}
		if _, err := c.Write(amqpFrame(1, described(0x44, list(ubyte(0))))); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, hdr); err != nil {
			return fmt.Errorf("read the protocol header after SASL: %w", err)
		}
	}
	if !bytes.Equal(hdr, amqpHeader) {
		// Not AMQP 1.0 as the SDKs speak it: answer with the header we
		// speak, which is how AMQP refuses a protocol header.
		_, _ = c.Write(amqpHeader)
		return fmt.Errorf("protocol header %q is not AMQP 1.0's", hdr)
	}
	var out []byte
	out = append(out, amqpHeader...)
	out = append(out, amqpFrame(0, described(0x10, list(str("outpost-hub"))))...) // open
	amqpErr := described(0x1d, list(symbol(amqpNotImplemented), str(amqpRefusal)))
	out = append(out, amqpFrame(0, described(0x18, list(amqpErr)))...) // close
	_, err := c.Write(out)
	return err
}

// skipFrame reads one AMQP frame and drops it.
func skipFrame(r io.Reader) error {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 8 || n > 1<<16 {
		return fmt.Errorf("frame size %d", n)
	}
	_, err := io.CopyN(io.Discard, r, int64(n)-4)
	return err
}

// amqpFrame is a frame of type typ (0 AMQP, 1 SASL) on channel 0.
func amqpFrame(typ byte, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = append(b, 2, typ, 0, 0) // data offset 2 words, type, channel 0
	return append(b, body...)
}

// described is a performative or error: a described list with a
// small-ulong descriptor code.
func described(code byte, value []byte) []byte {
	return append([]byte{0x00, 0x53, code}, value...)
}

// list is a list32 of encoded items.
func list(items ...[]byte) []byte {
	body := binary.BigEndian.AppendUint32(nil, uint32(len(items)))
	for _, it := range items {
		body = append(body, it...)
	}
	b := binary.BigEndian.AppendUint32([]byte{0xd0}, uint32(len(body)))
	return append(b, body...)
}

// str is a str32-utf8.
func str(s string) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0xb1}, uint32(len(s))), s...)
}

// symbol is a sym32.
func symbol(s string) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0xb3}, uint32(len(s))), s...)
}

// ubyte is an AMQP ubyte.
func ubyte(v byte) []byte { return []byte{0x50, v} }

// symbolArray is an array32 of sym32.
func symbolArray(syms ...string) []byte {
	body := binary.BigEndian.AppendUint32(nil, uint32(len(syms)))
	body = append(body, 0xb3)
	for _, s := range syms {
		body = binary.BigEndian.AppendUint32(body, uint32(len(s)))
		body = append(body, s...)
	}
	b := binary.BigEndian.AppendUint32([]byte{0xf0}, uint32(len(body)))
	return append(b, body...)
}

// refuseWebSocket answers IoT Hub's WebSocket endpoint, /$iothub/websocket,
// which the Azure IoT SDKs use for AMQP and MQTT over port 443. AMQP over
// WebSocket gets AMQP's refusal inside the WebSocket; anything else (MQTT
// over WebSocket, a plain request) a 501 saying what to use instead.
func (h *Hub) refuseWebSocket(w http.ResponseWriter, r *http.Request) {
	protos := websocket.Subprotocols(r)
	if websocket.IsWebSocketUpgrade(r) && slices.Contains(protos, wsAMQP) {
		up := websocket.Upgrader{
			Subprotocols:     []string{wsAMQP},
			HandshakeTimeout: amqpRefuseTimeout,
			CheckOrigin:      func(*http.Request) bool { return true }, // a refusal, whoever asks
		}
		c, err := up.Upgrade(w, r, nil) // on failure it has answered
		if err != nil {
			h.log.Warn("hub: WebSocket upgrade at /$iothub/websocket failed", "remote", r.RemoteAddr, "err", err)
			return
		}
		defer c.Close()
		h.refuseAMQPConn(&wsConn{c: c}, r.RemoteAddr, "AMQP over WebSocket")
		return
	}
	what := "MQTT or AMQP over WebSocket"
	if slices.Contains(protos, "mqtt") {
		what = "MQTT over WebSocket"
	}
	h.log.Warn("hub: refused a request at /$iothub/websocket: outpost hub does not speak "+what, "remote", r.RemoteAddr, "subprotocols", protos)
	refuse(w, r, errorf(http.StatusNotImplemented, "NotImplemented",
		"outpost hub does not speak %s: use IoT Hub's REST API over HTTPS on port 443 (azure-iothub's Registry, outpost's CLI); "+
			"devices sync through `outpost daemon`, and their modules use the daemon's MQTT broker (devices speaking MQTT or AMQP themselves are issue 16)", what))
}

// wsConn reads and writes the binary messages of a WebSocket as one stream.
type wsConn struct {
	c *websocket.Conn
	r io.Reader // the message being read
}

func (w *wsConn) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			_, r, err := w.c.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return 0, io.EOF
				}
				return 0, err
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if err == io.EOF {
			w.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (w *wsConn) Write(p []byte) (int, error) {
	if err := w.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsConn) SetDeadline(t time.Time) error {
	if err := w.c.SetReadDeadline(t); err != nil {
		return err
	}
	return w.c.SetWriteDeadline(t)
}
