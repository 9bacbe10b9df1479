package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/registry"
)

// deliveryGrace is how long a call with connectTimeoutInSeconds 0 waits for
// a device that is connected but between two long polls (a daemon polls
// again at once).
const deliveryGrace = 5 * time.Second

// answerMargin is how much before the caller's own total timeout
// (connect + response, as the Azure service SDKs set it on the request) the
// hub gives up, so that its 504 reaches the caller before the caller stops
// listening.
func answerMargin(total time.Duration) time.Duration { return min(total/20, 500*time.Millisecond) }

// invokeMethod serves POST /twins/{id}/methods and
// POST /twins/{id}/modules/{mid}/methods: it hands the call to the device in
// its long poll and answers with the device's {status, payload}; 404
// DeviceNotOnline (404103) when the device does not take the call within
// connectTimeoutInSeconds (or the module is not there), 504 GatewayTimeout
// (504101) when no answer comes within responseTimeoutInSeconds.
func (h *Hub) invokeMethod(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, ServiceConnect); err != nil {
		return err
	}
	id, mid := r.PathValue("id"), r.PathValue("mid")
	var req hubapi.MethodRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	respTimeout, connTimeout, err := methodTimeouts(&req)
	if err != nil {
		return err
	}
	if err := hubapi.ValidMethodName(req.MethodName); err != nil {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
	}
	if len(req.Payload) > hubapi.MaxMethodPayload {
		return errorf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "payload is %d bytes of JSON, at most %d are allowed", len(req.Payload), hubapi.MaxMethodPayload)
	}
	if len(req.Payload) == 0 {
		req.Payload = json.RawMessage("null")
	}
	dev, err := h.reg.GetDevice(id)
	if err != nil {
		return err
	}
	target := "device " + id
	// to is the device whose sync takes the call: the device itself, or
	// for a leaf device the edge device it sits under, which delivers the
	// call to it on its broker.
	to, call := id, hubapi.MethodCall{ModuleID: mid, Method: req.MethodName, Payload: req.Payload}
	if mid != "" {
		if _, err := h.reg.GetModule(id, mid); err != nil {
			return err
		}
		target = "module " + id + "/" + mid
	} else if parent := dev.ParentID(); parent != "" && !registry.IsEdge(dev) {
		to, call.DeviceID = parent, id
		target = "leaf device " + id + " (through its parent " + parent + ")"
	}

	start := time.Now()
	total := connTimeout + respTimeout
	final := start.Add(total - answerMargin(total))
	deliverBy := connTimeout
	if deliverBy < deliveryGrace && h.connectionState(to, "") == "Connected" {
		deliverBy = deliveryGrace
	}
	deliverBy = min(deliverBy, total-answerMargin(total))
	if deliverBy <= 0 {
		return notOnline(w, target, notConnected(to, id), 0)
	}
	pc := newPendingCall(to, call)
	// The device counts its timeouts from when it gets the call, which is
	// after start: it gives the module twice the margin less, so that its
	// "timed out" normally reaches the hub before the hub's own deadline.
	pc.call.ConnectTimeoutMs = connTimeout.Milliseconds()
	pc.call.ResponseTimeoutMs = (respTimeout - 2*answerMargin(respTimeout)).Milliseconds()
	h.methodCalls().add(pc)
	defer h.methodCalls().withdraw(to, pc.call.ID)

	t := time.NewTimer(deliverBy)
	defer t.Stop()
	select {
	case <-pc.taken1:
	case <-t.C:
		if h.methodCalls().withdraw(to, pc.call.ID) {
			return notOnline(w, target, notConnected(to, id), connTimeout)
		}
	case <-r.Context().Done():
		return nil // the caller left
	}
	t.Reset(time.Until(final))
	select {
	case res := <-pc.result:
		if res.NotOnline {
			return notOnline(w, target, res.Reason, connTimeout)
		}
		if res.TimedOut {
			return gatewayTimeout(w, target, req.MethodName, respTimeout)
		}
		if len(res.Payload) == 0 {
			res.Payload = json.RawMessage("null")
		}
		h.log.Debug("direct method answered", "target", target, "method", req.MethodName, "status", res.Status, "took", time.Since(start))
		writeJSON(w, http.StatusOK, hubapi.MethodResult{Status: res.Status, Payload: res.Payload})
		return nil
	case <-t.C: // the device went away with the call, or never said it timed out
		h.log.Info("direct method timed out", "target", target, "method", req.MethodName, "responseTimeoutInSeconds", int(respTimeout/time.Second))
		return gatewayTimeout(w, target, req.MethodName, respTimeout)
	case <-r.Context().Done():
		return nil
	}
}

// notConnected says which device is not connected to the hub: the target
// id itself, or to, the parent edge device that would deliver the call.
func notConnected(to, id string) string {
	if to == id {
		return "the device is not connected to the hub"
	}
	return "its parent edge device " + to + " is not connected to the hub"
}

// methodTimeouts checks and defaults a call's timeouts.
func methodTimeouts(req *hubapi.MethodRequest) (resp, conn time.Duration, err error) {
	resp = hubapi.DefaultMethodResponseTimeout
	if v := req.ResponseTimeoutInSeconds; v != nil && *v != 0 { // 0 takes the default, as the SDKs send it
		resp = time.Duration(*v) * time.Second
		if resp < hubapi.MinMethodResponseTimeout || resp > hubapi.MaxMethodTimeout {
			return 0, 0, errorf(http.StatusBadRequest, "ArgumentInvalid", "responseTimeoutInSeconds: %d is out of range: want 5 to 300 (or leave it out for 30)", *v)
		}
	}
	if v := req.ConnectTimeoutInSeconds; v != nil {
		conn = time.Duration(*v) * time.Second
		if *v < 0 || conn > hubapi.MaxMethodTimeout {
			return 0, 0, errorf(http.StatusBadRequest, "ArgumentInvalid", "connectTimeoutInSeconds: %d is out of range: want 0 to 300", *v)
		}
	}
	return resp, conn, nil
}

// gatewayTimeout answers IoT Hub's 504 GatewayTimeout (504101).
func gatewayTimeout(w http.ResponseWriter, target, method string, respTimeout time.Duration) error {
	writeMethodError(w, http.StatusGatewayTimeout, "GatewayTimeout", hubapi.ErrorCodeGatewayTimeout,
		fmt.Sprintf("Timed out waiting for the response from %s: method %q did not answer within %s (responseTimeoutInSeconds); make the handler answer sooner, or raise the timeout (at most 300 s)", target, method, respTimeout))
	return nil
}

// notOnline answers IoT Hub's 404 DeviceNotOnline (404103).
func notOnline(w http.ResponseWriter, target, reason string, waited time.Duration) error {
	msg := fmt.Sprintf("Timed out waiting for %s to connect (connectTimeoutInSeconds %d): %s; check that it is running and connected (outpost status on the device), or raise connectTimeoutInSeconds", target, int(waited/time.Second), reason)
	writeMethodError(w, http.StatusNotFound, "DeviceNotOnline", hubapi.ErrorCodeDeviceNotOnline, msg)
	return nil
}

// writeMethodError writes the hub's error body with IoT Hub's numeric
// errorCode of direct methods added.
func writeMethodError(w http.ResponseWriter, status int, code string, number int, msg string) {
	w.Header().Set("iothub-errorcode", code)
	writeJSON(w, status, struct {
		errorBody
		ErrorCode int `json:"errorCode"`
	}{errorBody{Message: "ErrorCode:" + code + ";" + msg, ExceptionMessage: msg}, number})
}

// methodResult serves POST …/devices/{id}/methods/{call}: the device's
// answer to a call it took from its sync.
func (h *Hub) methodResult(w http.ResponseWriter, r *http.Request, p principal) error {
	id, callID := r.PathValue("id"), r.PathValue("call")
	if !p.isDevice(id) {
		return forbidden(p, "answer method calls of device "+id)
	}
	var res hubapi.MethodResponse
	if err := readJSON(r, &res); err != nil {
		return err
	}
	if !res.NotOnline && !res.TimedOut && (res.Status < 100 || res.Status > 999) {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "status: %d is not a status code (100 to 999)", res.Status)
	}
	if len(res.Payload) > hubapi.MaxMethodPayload {
		return errorf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "payload is %d bytes of JSON, at most %d are allowed", len(res.Payload), hubapi.MaxMethodPayload)
	}
	h.presence.touch(id)
	if err := h.methodCalls().complete(id, callID, res); err != nil {
		if errors.Is(err, errNoSuchCall) {
			h.log.Info("direct method: a response came after the call ended (timed out or the caller left): dropped", "device", id, "call", callID)
			return errorf(http.StatusNotFound, "MethodCallNotFound", "method call %s of device %s has ended (it timed out, or its caller left): the response is dropped", callID, id)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// methodCalls is the hub's table of pending method calls.
func (h *Hub) methodCalls() methodTable {
	h.methodsOnce.Do(func() {
		if h.methods == nil {
			h.methods = newMemMethods()
		}
	})
	return h.methods
}
