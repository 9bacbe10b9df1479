package hubclient

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// ListDevicesPage returns one page of at most top devices, from the
// continuation token of the page before ("" for the first), and the token
// of the next page ("" after the last). A view can show the first page
// while it reads the rest.
func (c *Client) ListDevicesPage(ctx context.Context, continuation string, top int) (devices []hubapi.Device, next string, err error) {
	hdr, err := c.do(ctx, http.MethodGet, "/devices", url.Values{"top": {strconv.Itoa(top)}}, nil, continuationHeader(continuation), &devices)
	if err != nil {
		return nil, "", err
	}
	return devices, hdr.Get("x-ms-continuation"), nil
}

func continuationHeader(continuation string) http.Header {
	if continuation == "" {
		return nil
	}
	return http.Header{"X-Ms-Continuation": {continuation}}
}

// FleetPage is a page of hubapi.FleetPath.
type FleetPage struct {
	Devices []hubapi.FleetDevice
	// Next is the continuation token of the next page ("" after the last).
	Next string
	// Cursor is the change stream's cursor from before the page was read
	// (for FromCursor; "" from a hub that does not say).
	Cursor string
}

// ListFleetPage returns one page of at most top devices of the fleet, each
// with its module count and deployment report, from the continuation token
// of the page before ("" for the first).
func (c *Client) ListFleetPage(ctx context.Context, continuation string, top int) (FleetPage, error) {
	var p FleetPage
	hdr, err := c.do(ctx, http.MethodGet, hubapi.FleetPath, url.Values{"top": {strconv.Itoa(top)}}, nil, continuationHeader(continuation), &p.Devices)
	if err != nil {
		return FleetPage{}, err
	}
	p.Next, p.Cursor = hdr.Get("x-ms-continuation"), hdr.Get(hubapi.ChangesCursorHeader)
	return p, nil
}

// FleetDevices returns the devices of ids that exist (those that do not
// are left out), as ListFleetPage does: one request for each 1,000 ids
// (the hub's limit; a change event can name up to 8,192 devices).
func (c *Client) FleetDevices(ctx context.Context, ids []string) ([]hubapi.FleetDevice, error) {
	var out []hubapi.FleetDevice
	for chunk := range slices.Chunk(ids, 1000) {
		var ds []hubapi.FleetDevice
		if _, err := c.do(ctx, http.MethodGet, hubapi.FleetPath, url.Values{"id": chunk}, nil, nil, &ds); err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

// CloseIdleConnections closes the client's idle connections to the hub (a
// client made for one look does not keep them open).
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }
