package hubclient

import (
	"context"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// Status returns what the hub replica this client reaches says of itself and of
// its store (GET /outpost/v1/status).
func (c *Client) Status(ctx context.Context) (hubapi.HubStatus, error) {
	var s hubapi.HubStatus
	_, err := c.do(ctx, "GET", hubapi.Prefix+"/status", nil, nil, nil, &s)
	return s, err
}
