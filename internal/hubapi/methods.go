package hubapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Direct methods, as IoT Hub's service REST API has them:
//
//	POST /twins/{deviceId}/methods
//	POST /twins/{deviceId}/modules/{moduleId}/methods
//
// with a MethodRequest body, answered with a MethodResult. The hub hands a
// call to the device in the answer of its sync long poll (Sync.Methods) and
// the device posts the result to MethodResultPath.

// MethodRequest is the body of a direct method call.
type MethodRequest struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload,omitempty"`
	ResponseTimeoutInSeconds *int            `json:"responseTimeoutInSeconds,omitempty"`
	ConnectTimeoutInSeconds  *int            `json:"connectTimeoutInSeconds,omitempty"`
}

// MethodResult is the answer of a direct method: the status and payload
// the device (or module) answered with.
type MethodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// Limits and defaults of direct methods (IoT Hub's).
const (
	DefaultMethodResponseTimeout = 30 * time.Second
	MinMethodResponseTimeout     = 5 * time.Second
	MaxMethodTimeout             = 300 * time.Second // for each of the two timeouts
	MaxMethodPayload             = 128 * 1024        // bytes of JSON, request and response
	MaxMethodName                = 100
)

// IoT Hub's numeric error codes of direct methods, in the errorCode member
// of the error body.
const (
	ErrorCodeDeviceNotOnline = 404103
	ErrorCodeGatewayTimeout  = 504101
)

// ValidMethodName says what is wrong with a method name, or nil: 1 to 100
// printable ASCII characters, none of the ones an MQTT topic or property
// bag would read otherwise (/ ? # + & = $ and space).
func ValidMethodName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("methodName is missing: name the method to call")
	case len(name) > MaxMethodName:
		return fmt.Errorf("methodName is %d characters, at most %d are allowed", len(name), MaxMethodName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("/?#+&=$\"\\", c) >= 0 {
			return fmt.Errorf("methodName %q: character %q at position %d is not allowed (use printable ASCII without space and / ? # + & = $ \" \\)", name, c, i)
		}
	}
	return nil
}

// MethodCall is a direct method call the hub hands a device.
type MethodCall struct {
	ID string `json:"id"` // the hub's, to post the result under
	// DeviceID is the leaf device (a child of the syncing edge device) the
	// call is for, "" for the syncing device itself or one of its modules.
	DeviceID string          `json:"deviceId,omitempty"`
	ModuleID string          `json:"moduleId,omitempty"` // "" for a call to the device itself
	Method   string          `json:"methodName"`
	Payload  json.RawMessage `json:"payload"`
	// ConnectTimeoutMs is how long the device may wait for the module to
	// be there (subscribed to methods) before it answers NotOnline, from
	// when it got the call; ResponseTimeoutMs how long it then waits for
	// the module's answer before it answers TimedOut.
	ConnectTimeoutMs  int64 `json:"connectTimeoutMs"`
	ResponseTimeoutMs int64 `json:"responseTimeoutMs"`
}

// MethodResultPath is where a device posts the MethodResponse of a call.
func MethodResultPath(deviceID, callID string) string {
	return Prefix + "/devices/" + escape(deviceID) + "/methods/" + escape(callID)
}

// MethodResponse is a device's answer to a MethodCall: the module's result,
// NotOnline when the module was not there to take the call, or TimedOut
// when it took it but did not answer in time.
type MethodResponse struct {
	Status    int             `json:"status"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	NotOnline bool            `json:"notOnline,omitempty"`
	TimedOut  bool            `json:"timedOut,omitempty"`
	Reason    string          `json:"reason,omitempty"` // why, for the caller
}
