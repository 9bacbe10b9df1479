package hubclient

import (
	"context"
	"net/http"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// CreateConfiguration creates a configuration (an automatic deployment when
// its content has modulesContent).
func (c *Client) CreateConfiguration(ctx context.Context, cfg hubapi.Configuration) (hubapi.Configuration, error) {
	var out hubapi.Configuration
	_, err := c.do(ctx, http.MethodPut, "/configurations/"+esc(cfg.ID), nil, cfg, nil, &out)
	return out, err
}

// UpdateConfiguration changes a configuration's target condition, priority,
// labels or metrics if etag matches ("" or "*": any).
func (c *Client) UpdateConfiguration(ctx context.Context, cfg hubapi.Configuration, etag string) (hubapi.Configuration, error) {
	if etag == "" {
		etag = "*"
	}
	var out hubapi.Configuration
	_, err := c.do(ctx, http.MethodPut, "/configurations/"+esc(cfg.ID), nil, cfg, ifMatch(etag), &out)
	return out, err
}

// GetConfiguration returns a configuration with its metrics.
func (c *Client) GetConfiguration(ctx context.Context, id string) (hubapi.Configuration, error) {
	var out hubapi.Configuration
	_, err := c.do(ctx, http.MethodGet, "/configurations/"+esc(id), nil, nil, nil, &out)
	return out, err
}

// ListConfigurations returns every configuration with its metrics.
func (c *Client) ListConfigurations(ctx context.Context) ([]hubapi.Configuration, error) {
	var out []hubapi.Configuration
	_, err := c.do(ctx, http.MethodGet, "/configurations", nil, nil, nil, &out)
	return out, err
}

// DeleteConfiguration deletes a configuration if etag matches ("" or "*": any).
func (c *Client) DeleteConfiguration(ctx context.Context, id, etag string) error {
	if etag == "" {
		etag = "*"
	}
	_, err := c.do(ctx, http.MethodDelete, "/configurations/"+esc(id), nil, nil, ifMatch(etag), nil)
	return err
}
