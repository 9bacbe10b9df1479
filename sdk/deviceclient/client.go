// Package deviceclient is a Go IoT device's client of an outpost edge
// device acting as its gateway (IoT Edge's transparent gateway): a leaf
// device whose connection string carries GatewayHostName= connects to the
// daemon's broker instead of the hub, with its own identity, and keeps its
// twin, telemetry and direct methods working while the edge device is cut
// off from the hub.
//
// It speaks IoT Hub's device MQTT topics (MQTT 3.1.1 over TLS on 8883):
// twin GET and reported patches ($iothub/twin/…), desired patches,
// telemetry (devices/{id}/messages/events/) and direct methods
// ($iothub/methods/POST/…), with SAS tokens signed by the device's own key
// and renewed before they expire. The connection, reconnection and twin
// logic is sdk/moduleclient's (its NewDevice); this package is the
// device's API over it.
//
// The broker's certificate chains to the edge device's CA: give its root
// (what `outpost daemon ca` prints on the edge device) as Config.CAPEM, or
// install it in the system's store and leave CAPEM nil.
package deviceclient

import (
	"context"
	"log/slog"
	"time"

	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// Types shared with sdk/moduleclient.
type (
	// Twin is the device twin's desired and reported properties.
	Twin = moduleclient.Twin
	// Properties is one side of a twin: its properties and $version.
	Properties = moduleclient.Properties
	// Message is a telemetry message: body, application properties (which
	// routes' WHERE conditions look at) and system properties.
	Message = moduleclient.Message
	// MethodHandler answers a direct method.
	MethodHandler = moduleclient.MethodHandler
	// Error is a twin request the broker answered with an error status.
	Error = moduleclient.Error
	// ConfigError is a configuration the client cannot use.
	ConfigError = moduleclient.ConfigError
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = moduleclient.ErrClosed

// DefaultTokenTTL is how long the SAS tokens the client makes are valid;
// it renews its token (reconnecting with it) when 80% of it has passed.
const DefaultTokenTTL = moduleclient.DefaultTokenTTL

// Config is what New needs.
type Config struct {
	// ConnectionString is the device's, with the gateway's host name:
	// HostName={hub};DeviceId={id};SharedAccessKey={key};GatewayHostName={edge}.
	// The client connects to GatewayHostName:8883 and checks the broker's
	// certificate for that name.
	ConnectionString string
	// CAPEM is the root certificate(s) (PEM) the broker's certificate must
	// chain to: what `outpost daemon ca` prints. Nil trusts the system's
	// roots.
	CAPEM []byte
	// BrokerAddress is host:port to dial instead of GatewayHostName:8883
	// (the certificate is still checked for GatewayHostName).
	BrokerAddress string
	// TokenTTL is how long each SAS token is valid (default
	// DefaultTokenTTL).
	TokenTTL time.Duration
	// Logger gets connection events: lost, reconnected, token renewed.
	Logger *slog.Logger
}

// Client is a connected device client. It is safe for concurrent use.
type Client struct {
	c *moduleclient.Client
}

// New connects with cfg. It returns once connected, or when ctx ends with
// the error of the last attempt; a refusal that trying again will not fix
// (a bad key, a device that is not a child of the edge device, a
// certificate that does not verify) is returned at once.
func New(ctx context.Context, cfg Config) (*Client, error) {
	c, err := moduleclient.NewDevice(ctx, moduleclient.Config{
		ConnectionString: cfg.ConnectionString, CAPEM: cfg.CAPEM, BrokerAddress: cfg.BrokerAddress,
		TokenTTL: cfg.TokenTTL, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Twin reads the device's twin (the edge device's copy: it answers
// offline too).
func (c *Client) Twin(ctx context.Context) (Twin, error) { return c.c.Twin(ctx) }

// UpdateReported merges patch (anything that marshals to a JSON object;
// null removes a property) into the device's reported properties and
// returns their new $version, once the edge device has it durably: it
// sends it to the hub, in order, when the hub is reachable. A patch the
// broker refuses is an *Error.
func (c *Client) UpdateReported(ctx context.Context, patch any) (int64, error) {
	return c.c.UpdateReported(ctx, patch)
}

// OnDesired calls f with each change of the device's desired properties,
// in order and once each (see moduleclient's OnDesired): changes made while
// disconnected come as one patch once back.
func (c *Client) OnDesired(f func(patch map[string]any, version int64)) { c.c.OnDesired(f) }

// SendEvent sends telemetry (devices/{id}/messages/events/): it returns
// once the edge device has the message durably (its PUBACK), which then
// routes it (FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId)
// selects leaf devices' messages) and forwards it upstream when the hub is
// reachable. A message whose connection goes before its PUBACK is sent
// again on the next: at least once.
func (c *Client) SendEvent(ctx context.Context, msg Message) error {
	return c.c.SendOutput(ctx, "", msg)
}

// OnMethod makes f answer the direct method name, called by the service
// through the hub (IoT Hub's invokeDeviceMethod, outpost method invoke
// DEVICE NAME) and delivered by the edge device. Calls to a method without
// a handler are answered 501.
func (c *Client) OnMethod(name string, f MethodHandler) error { return c.c.OnMethod(name, f) }

// OnConnectionChange calls f (it must not block) each time the client
// connects or loses its connection, including to renew its token.
func (c *Client) OnConnectionChange(f func(connected bool, why error)) { c.c.OnConnectionChange(f) }

// Close disconnects and stops the client.
func (c *Client) Close() error { return c.c.Close() }
