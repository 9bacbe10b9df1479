package hubclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// ListDevicesPage returns one page of at most top devices, from the
// continuation token of the page before ("" for the first), and the token
// of the next page ("" after the last). A view can show the first page
// while it reads the rest.
func (c *Client) ListDevicesPage(ctx context.Context, continuation string, top int) (devices []hubapi.Device, next string, err error) {
	var h http.Header
	if continuation != "" {
		h = http.Header{"X-Ms-Continuation": {continuation}}
	}
	hdr, err := c.do(ctx, http.MethodGet, "/devices", url.Values{"top": {strconv.Itoa(top)}}, nil, h, &devices)
	if err != nil {
		return nil, "", err
	}
	return devices, hdr.Get("x-ms-continuation"), nil
}
