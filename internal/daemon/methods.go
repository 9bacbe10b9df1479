package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// methodBroker is the part of the module broker that passes direct method
// calls to modules and to leaf devices (children of this edge device
// connected to it).
type methodBroker interface {
	InvokeMethod(ctx context.Context, moduleID, method string, payload []byte, connectWait, responseWait time.Duration) (broker.MethodResult, error)
	InvokeDeviceMethod(ctx context.Context, deviceID, method string, payload []byte, connectWait, responseWait time.Duration) (broker.MethodResult, error)
}

// answerMethod answers a direct method call the hub handed the device:
// $edgeAgent's methods the daemon answers itself (agentmethods.go), a
// module's go to it through the broker, a leaf device's (a child of this
// edge device) to the leaf on the broker (leafmethods.go).
func (d *Daemon) answerMethod(ctx context.Context, c hubapi.MethodCall) hubapi.MethodResponse {
	if c.DeviceID != "" && c.DeviceID != d.cs.DeviceID {
		return d.leafMethod(ctx, c)
	}
	switch c.ModuleID {
	case "":
		return hubapi.MethodResponse{NotOnline: true, Reason: "device " + d.cs.DeviceID + " is an IoT Edge device: it answers no methods itself; call one of its modules (DEVICE/MODULE), e.g. $edgeAgent's ping"}
	case agent.AgentModule:
		return d.agentMethod(ctx, c)
	}
	b, ok := d.broker.(methodBroker)
	if !ok || !d.brokerRunning.Load() {
		return hubapi.MethodResponse{NotOnline: true, Reason: "the device's module broker is not running"}
	}
	r, err := b.InvokeMethod(ctx, c.ModuleID, c.Method, c.Payload, time.Duration(c.ConnectTimeoutMs)*time.Millisecond, time.Duration(c.ResponseTimeoutMs)*time.Millisecond)
	if errors.Is(err, broker.ErrNotSubscribed) {
		return hubapi.MethodResponse{NotOnline: true, Reason: "module " + c.ModuleID + " is not connected to the device's broker, or not subscribed to $iothub/methods/POST/#"}
	}
	return d.methodResponse("module "+c.ModuleID, c.Method, r, err)
}

// methodResponse turns what the broker got from a module or leaf device
// (who) into the response for the hub.
func (d *Daemon) methodResponse(who, method string, r broker.MethodResult, err error) hubapi.MethodResponse {
	switch {
	case errors.Is(err, broker.ErrMethodTimeout):
		return hubapi.MethodResponse{TimedOut: true}
	case err != nil: // the daemon is stopping
		return hubapi.MethodResponse{NotOnline: true, Reason: "the daemon is stopping"}
	}
	payload := json.RawMessage(r.Payload)
	switch {
	case len(payload) == 0:
		payload = json.RawMessage("null")
	case !json.Valid(payload):
		// IoT Hub's answers are JSON: a module's text is passed as a string.
		d.log.Warn("direct method: the answer's payload is not JSON: passed on as a JSON string", "from", who, "method", method)
		payload, _ = json.Marshal(string(r.Payload))
	}
	if len(payload) > hubapi.MaxMethodPayload {
		d.log.Warn("direct method: the answer is over 128 KiB: refused", "from", who, "method", method, "bytes", len(payload))
		return errorResponse(413, "the answer of %s is %d bytes, over IoT Hub's limit of %d", who, len(payload), hubapi.MaxMethodPayload)
	}
	return hubapi.MethodResponse{Status: r.Status, Payload: payload}
}
