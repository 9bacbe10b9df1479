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
// calls to modules.
type methodBroker interface {
	InvokeMethod(ctx context.Context, moduleID, method string, payload []byte, connectWait, responseWait time.Duration) (broker.MethodResult, error)
}

// answerMethod answers a direct method call the hub handed the device:
// $edgeAgent's methods the daemon answers itself (agentmethods.go), a
// module's go to it through the broker.
func (d *Daemon) answerMethod(ctx context.Context, c hubapi.MethodCall) hubapi.MethodResponse {
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
	switch {
	case errors.Is(err, broker.ErrNotSubscribed):
		return hubapi.MethodResponse{NotOnline: true, Reason: "module " + c.ModuleID + " is not connected to the device's broker, or not subscribed to $iothub/methods/POST/#"}
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
		d.log.Warn("direct method: the module answered with a payload that is not JSON: passed on as a JSON string", "module", c.ModuleID, "method", c.Method)
		payload, _ = json.Marshal(string(r.Payload))
	}
	if len(payload) > hubapi.MaxMethodPayload {
		d.log.Warn("direct method: the module's answer is over 128 KiB: refused", "module", c.ModuleID, "method", c.Method, "bytes", len(payload))
		return errorResponse(413, "the module's answer is %d bytes, over IoT Hub's limit of %d", len(payload), hubapi.MaxMethodPayload)
	}
	return hubapi.MethodResponse{Status: r.Status, Payload: payload}
}
