package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// leafMethod delivers a call the hub handed this edge device for one of
// its leaf devices to the leaf, on the broker's
// $iothub/methods/POST/{method}/?$rid=, and returns its answer; a leaf not
// connected and subscribed within the call's connect timeout is "not
// online", as a module is.
func (d *Daemon) leafMethod(ctx context.Context, c hubapi.MethodCall) hubapi.MethodResponse {
	if c.ModuleID != "" {
		return hubapi.MethodResponse{NotOnline: true, Reason: "leaf device " + c.DeviceID + " has no modules on edge device " + d.cs.DeviceID + ": call the device itself"}
	}
	b, ok := d.broker.(methodBroker)
	if !ok || !d.brokerRunning.Load() {
		return hubapi.MethodResponse{NotOnline: true, Reason: "the broker of edge device " + d.cs.DeviceID + ", which leaf device " + c.DeviceID + " connects to, is not running"}
	}
	r, err := b.InvokeDeviceMethod(ctx, c.DeviceID, c.Method, c.Payload, time.Duration(c.ConnectTimeoutMs)*time.Millisecond, time.Duration(c.ResponseTimeoutMs)*time.Millisecond)
	if errors.Is(err, broker.ErrNotSubscribed) {
		return hubapi.MethodResponse{NotOnline: true, Reason: "leaf device " + c.DeviceID + " is not connected to edge device " + d.cs.DeviceID + "'s broker, or not subscribed to $iothub/methods/POST/#"}
	}
	return d.methodResponse("leaf device "+c.DeviceID, c.Method, r, err)
}
