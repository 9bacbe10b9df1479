package broker

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Leaf devices (children of this edge device, connected to the broker
// with their own identity) send telemetry on
// devices/{leafId}/messages/events/{property bag} and take direct methods
// on $iothub/methods/POST/{method}/?$rid= as a module does. Their messages
// enter the routes as IoT Edge's do: with $connectionDeviceId the leaf's id
// and no $connectionModuleId, so FROM /messages/* takes them,
// FROM /messages/modules/… does not, and
// WHERE NOT IS_DEFINED($connectionModuleId) selects them.

// leafOf returns the id of the leaf device s is the session of, or false
// for a module's session.
func leafOf(s *session) (string, bool) { return s.m.id, s.m.child }

// sessionOf returns the current session of module id (child false) or of
// child device id (child true), nil when it is not connected.
func (b *Broker) sessionOf(child bool, id string) *session {
	b.mu.Lock()
	m := b.clients(child)[id]
	b.mu.Unlock()
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sess
}

// leafMayPublish reports whether a leaf device may publish to topic besides
// its twin requests: its telemetry (the topic is checked further as it is
// taken) and method answers.
func leafMayPublish(topic string) bool {
	return strings.HasPrefix(topic, "devices/") || strings.HasPrefix(topic, topicMethodRes)
}

// methodOwner names the client a method call went to, to match its answer:
// a module's id, or a leaf device's id marked as such (ids of the two kinds
// may be equal).
func methodOwner(s *session) string {
	if id, ok := leafOf(s); ok {
		return "device " + id
	}
	return "module " + s.m.id
}

// sender returns the device and module a message of session s comes from.
func (b *Broker) sender(s *session) (deviceID, moduleID string) {
	if id, ok := leafOf(s); ok {
		return id, ""
	}
	return b.cfg.DeviceID, s.m.id
}

// leafEventsTopic parses devices/{leafId}/messages/events/{bag}, the one
// topic a leaf device sends telemetry on.
func leafEventsTopic(leafID, topic string) (bag string, err error) {
	own := "devices/" + leafID + "/messages/events/"
	bag, ok := strings.CutPrefix(topic, own)
	if !ok {
		return "", fmt.Errorf("topic %q is not this device's: a leaf device publishes telemetry on %s{property bag}", topic, own)
	}
	return strings.TrimSuffix(bag, "/"), nil
}

// InvokeDeviceMethod publishes a direct method call to a connected leaf
// device, as InvokeMethod does to a module: the leaf must be connected and
// subscribed to $iothub/methods/POST/# within connectWait
// (ErrNotSubscribed), and answer within responseWait (ErrMethodTimeout).
func (b *Broker) InvokeDeviceMethod(ctx context.Context, deviceID, method string, payload []byte, connectWait, responseWait time.Duration) (MethodResult, error) {
	return b.invoke(ctx, "leaf device "+deviceID, func() *session { return subscribedToMethods(b.sessionOf(true, deviceID)) }, method, payload, connectWait, responseWait)
}
