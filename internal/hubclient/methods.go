package hubclient

import (
	"context"
	"net/http"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// InvokeMethod calls a direct method on a device (moduleID "") or module,
// as IoT Hub's service API does, and returns what it answered. A device or
// module that is not there fails with a 404 *Error (Code DeviceNotOnline),
// one that does not answer in time with a 504 (GatewayTimeout).
func (c *Client) InvokeMethod(ctx context.Context, deviceID, moduleID string, req hubapi.MethodRequest) (*hubapi.MethodResult, error) {
	path := "/twins/" + esc(deviceID) + "/methods"
	if moduleID != "" {
		path = "/twins/" + esc(deviceID) + "/modules/" + esc(moduleID) + "/methods"
	}
	var out hubapi.MethodResult
	if _, err := c.do(ctx, http.MethodPost, path, nil, req, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AnswerMethod posts a device's response to a method call it took from its
// sync (hubapi.Sync.Methods).
func (c *Client) AnswerMethod(ctx context.Context, deviceID, callID string, res hubapi.MethodResponse) error {
	_, err := c.do(ctx, http.MethodPost, hubapi.MethodResultPath(deviceID, callID), nil, res, nil, nil)
	return err
}
