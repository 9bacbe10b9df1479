package broker

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// hook is where mochi hands the broker each connection, subscription and
// publish.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "outpost-modules" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect,
		mqtt.OnConnectAuthenticate,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnACLCheck,
		mqtt.OnSubscribed,
		mqtt.OnUnsubscribed,
		mqtt.OnPublish,
		mqtt.OnQosComplete,
	}, []byte{b})
}

// OnConnect refuses MQTT 3.1 and 5, enforces a keep-alive, and
// authenticates the module. A refusal gets its CONNACK here, with the
// return code that says why, and is logged.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	who := []any{"client_id", pk.Connect.ClientIdentifier, "remote", cl.Net.Remote}
	if v := cl.Properties.ProtocolVersion; v != 4 {
		name := map[byte]string{3: "MQTT 3.1", 5: "MQTT 5"}[v]
		if name == "" {
			name = fmt.Sprintf("protocol level %d", v)
		}
		b.log.Warn("broker: refused a connection: only MQTT 3.1.1 is spoken here", append(who, "protocol", name)...)
		if v == 5 {
			_ = b.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		} else {
			_ = connack(cl, connackBadProtocol)
		}
		return fmt.Errorf("%s: only MQTT 3.1.1 is supported", name)
	}
	moduleID, _, err := b.authenticate(pk.Connect.ClientIdentifier, string(pk.Connect.Username), pk.Connect.Password)
	if err != nil {
		var ae *authError
		if !errors.As(err, &ae) {
			ae = refuse(connackUnavailable, "%v", err)
		}
		b.log.Warn("broker: refused a connection", append(who, "reason", ae.reason, "connack", ae.code)...)
		_ = connack(cl, ae.code)
		return err
	}
	if limit := uint16(min(b.cfg.MaxKeepAlive/time.Second, math.MaxUint16)); cl.State.Keepalive == 0 || cl.State.Keepalive > limit {
		cl.State.Keepalive = limit
	}
	b.log.Debug("broker: client authenticated", "client_id", cl.ID, "id", moduleID, "remote", cl.Net.Remote)
	return nil
}

// connack sends an MQTT 3.1.1 CONNACK with a return code.
func connack(cl *mqtt.Client, code byte) error {
	return cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code})
}

// OnConnectAuthenticate lets through what OnConnect accepted.
func (h *hook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	// OnConnect let in modules ({deviceId}/{moduleId}) and child devices
	// ({deviceId}) only.
	id, moduleID, isModule := strings.Cut(cl.ID, "/")
	if isModule {
		id = moduleID
	}
	s := h.b.open(cl, id, !isModule, string(pk.Connect.Password))
	h.b.log.Info("broker: "+s.m.kind()+" connected", s.m.kind(), id, "remote", s.remote, "keepalive_s", cl.State.Keepalive, "clean_session", pk.Connect.Clean)
	h.b.startSession(s, pk.Connect.Clean)
	// A persistent session may come subscribed to methods.
	h.b.mc.wake()
	if isModule {
		h.b.startDelivery(s)
	}
	if subscribedToDesired(cl) { // a persistent session
		h.b.catchUp(s.m, 0)
	}
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) { h.b.closed(cl, err) }

// OnACLCheck allows a module to subscribe to its twin answers and desired
// changes only. Publishes are all judged in OnPublish.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write || topic == filterResponses || topic == filterDesired || topic == filterMethods {
		return true
	}
	_, moduleID, isModule := strings.Cut(cl.ID, "/")
	if !isModule { // a child device
		h.b.log.Warn("broker: refused a subscription (SUBACK 0x80)", "child", cl.ID, "remote", cl.Net.Remote, "filter", topic,
			"reason", "a child device may subscribe to "+strings.Join(childFilters, ", ")+" only")
		return false
	}
	if h.b.cfg.Messages != nil && topic == h.b.inputFilter(moduleID) {
		return true
	}
	h.b.log.Warn("broker: refused a subscription (SUBACK 0x80)", "module", moduleID, "remote", cl.Net.Remote, "filter", topic,
		"reason", "a module may subscribe to "+filterResponses+", "+filterDesired+", "+filterMethods+" and its own inputs, "+h.b.inputFilter(moduleID)+", only")
	return false
}

func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	s := h.b.session(cl)
	if s == nil {
		return
	}
	h.b.subscriptionsChanged(s)
	h.b.mc.wake() // a module waited for by a method call may be there now
	for i, f := range pk.Filters {
		if f.Filter == filterDesired && i < len(codes) && codes[i] < 0x80 {
			h.b.catchUp(s.m, 0)
		}
	}
}

func (h *hook) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if s := h.b.session(cl); s != nil {
		h.b.subscriptionsChanged(s)
	}
}

func subscribedToDesired(cl *mqtt.Client) bool {
	_, ok := cl.State.Subscriptions.Get(filterDesired)
	return ok
}

// OnPublish answers a module's twin requests. Nothing a module publishes is
// routed on: a request is answered (and, at QoS 1, acknowledged once
// done), anything else closes the connection.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	b := h.b
	s := b.session(cl)
	if s == nil {
		cl.Stop(errors.New("publish before the session was established"))
		return pk, packets.ErrRejectPacket
	}
	if s.m.child {
		if reason := childMayPublish(pk.TopicName); reason != "" {
			b.log.Warn("broker: closing a child device's connection: refused publish", "child", s.m.id, "remote", s.remote, "topic", truncate(pk.TopicName, 200), "reason", reason)
			cl.Stop(fmt.Errorf("refused publish: %s", reason))
			return pk, packets.ErrRejectPacket
		}
	}
	if strings.HasPrefix(pk.TopicName, topicMethodRes) {
		if err := b.answerMethod(s, pk.TopicName, pk.Payload); err != nil {
			b.log.Warn("broker: closing a "+s.m.kind()+"'s connection: refused method response", s.m.kind(), s.m.id, "remote", s.remote, "topic", pk.TopicName, "reason", err.Error())
			cl.Stop(fmt.Errorf("refused publish: %w", err))
			return pk, packets.ErrRejectPacket
		}
		return pk, packets.CodeSuccessIgnore
	}
	if b.cfg.Messages != nil && strings.HasPrefix(pk.TopicName, "devices/") {
		b.onMessage(s, cl, pk)
		return pk, packets.ErrRejectPacket // acknowledged by onMessage once durable
	}
	req, err := parseTwinTopic(pk.TopicName)
	if err != nil {
		reason := err.Error()
		if !strings.HasPrefix(pk.TopicName, twinPrefix) {
			reason = fmt.Sprintf("topic %q is not one a module may publish to here: only %s?$rid=… and %s?$rid=…, method answers on %s{status}/?$rid=…, and its own messages on devices/{device}/modules/{module}/messages/events/", pk.TopicName, topicGet, topicPatch, topicMethodRes)
		}
		b.log.Warn("broker: closing a "+s.m.kind()+"'s connection: refused publish", s.m.kind(), s.m.id, "remote", s.remote, "topic", pk.TopicName, "reason", reason)
		cl.Stop(fmt.Errorf("refused publish: %s", reason))
		return pk, packets.ErrRejectPacket
	}
	switch req.op {
	case opGet:
		b.answerGet(s, req.rid)
	case opPatch:
		b.answerPatch(s, req.rid, pk.Payload)
	}
	return pk, packets.CodeSuccessIgnore
}

// OnQosComplete takes a module's PUBACK of a message sent to its input.
func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { h.b.qosComplete(cl, pk.PacketID) }
