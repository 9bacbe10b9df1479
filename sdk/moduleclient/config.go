package moduleclient

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultTokenTTL is how long the SAS tokens the client makes are valid.
// The client renews its token (and reconnects with it) before it expires.
const DefaultTokenTTL = time.Hour

// DefaultPort is the broker's port: the MQTT over TLS port of IoT Hub and
// of IoT Edge's hub.
const DefaultPort = 8883

// MQTTAPIVersion is the api-version the client sends in its MQTT username.
const MQTTAPIVersion = "2021-04-12"

// Environment variables NewFromEnvironment reads. The daemon sets the
// IOTEDGE_* ones for every module it runs.
const (
	EnvDeviceID      = "IOTEDGE_DEVICEID"
	EnvModuleID      = "IOTEDGE_MODULEID"
	EnvHubHostName   = "IOTEDGE_IOTHUBHOSTNAME"
	EnvGatewayHost   = "IOTEDGE_GATEWAYHOSTNAME"
	EnvWorkloadURI   = "IOTEDGE_WORKLOADURI"
	EnvGenerationID  = "IOTEDGE_MODULEGENERATIONID"
	EnvAPIVersion    = "IOTEDGE_APIVERSION"
	EnvAuthScheme    = "IOTEDGE_AUTHSCHEME"
	EnvBrokerAddress = "OUTPOST_BROKER_ADDRESS" // host:port overriding {gateway}:8883
)

// Signer signs data (the SAS token's string to sign) with the module's key
// and returns the base64 HMAC-SHA256 digest.
type Signer func(ctx context.Context, data string) (digest string, err error)

// Config is what New needs. Either ConnectionString (a module's, with its
// SharedAccessKey) or HubHostName, DeviceID, ModuleID and Signer. NewDevice
// takes the same without ModuleID: a device's connection string.
type Config struct {
	// ConnectionString is a module's connection string:
	// HostName=…;DeviceId=…;ModuleId=…;SharedAccessKey=…[;GatewayHostName=…]
	// (for NewDevice a device's, without ModuleId).
	ConnectionString string

	HubHostName string
	DeviceID    string
	ModuleID    string // empty for NewDevice
	Signer      Signer

	// GatewayHostName is the host the broker runs on (the daemon's); its
	// certificate is checked against this name. Default: the connection
	// string's GatewayHostName.
	GatewayHostName string
	// BrokerAddress is host:port to dial (default GatewayHostName:8883).
	BrokerAddress string
	// CAPEM is the certificates (PEM) the broker's certificate must chain
	// to: the device CA, the workload API's trust bundle. Nil trusts the
	// system's roots.
	CAPEM []byte
	// TokenTTL is how long each SAS token is valid (default
	// DefaultTokenTTL). The client renews it when 80% of it has passed.
	TokenTTL time.Duration
	// Logger gets connection events: lost, reconnected, token renewed.
	Logger *slog.Logger
}

// Option changes the configuration NewFromEnvironment reads.
type Option func(*Config)

// WithBrokerAddress dials addr (host:port) instead of
// {IOTEDGE_GATEWAYHOSTNAME}:8883; the broker's certificate is still checked
// for the gateway host name. OUTPOST_BROKER_ADDRESS does the same.
func WithBrokerAddress(addr string) Option { return func(c *Config) { c.BrokerAddress = addr } }

// WithTokenTTL sets how long each SAS token is valid.
func WithTokenTTL(d time.Duration) Option { return func(c *Config) { c.TokenTTL = d } }

// WithLogger logs connection events to l.
func WithLogger(l *slog.Logger) Option { return func(c *Config) { c.Logger = l } }

// ConfigError is a configuration the client cannot use: a missing or bad
// environment variable, connection string or option.
type ConfigError struct {
	What string // the variable, field or option
	Msg  string

	pkg string // the package the user called: "" for moduleclient
}

func (e *ConfigError) Error() string {
	pkg := e.pkg
	if pkg == "" {
		pkg = "moduleclient"
	}
	return pkg + ": " + e.What + ": " + e.Msg
}

// NewFromEnvironment connects as the module the daemon runs this process
// as: it reads the IOTEDGE_* variables, gets the trust bundle from the
// workload API, signs its SAS tokens through it (the module's key stays
// with the daemon) and connects to the broker at
// {IOTEDGE_GATEWAYHOSTNAME}:8883. It returns once connected, or with the
// error of the last attempt when ctx ends first.
func NewFromEnvironment(ctx context.Context, opts ...Option) (*Client, error) {
	cfg, err := ConfigFromEnvironment(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// ConfigFromEnvironment is the Config NewFromEnvironment connects with.
func ConfigFromEnvironment(ctx context.Context, opts ...Option) (Config, error) {
	get := func(name string) (string, error) {
		v := os.Getenv(name)
		if v == "" {
			return "", &ConfigError{What: name, Msg: "not set: the outpost daemon sets it for the modules it runs; to run a module by hand, set it (see docs/sdk.md) or use New with a connection string"}
		}
		return v, nil
	}
	var cfg Config
	var errs []error
	for _, f := range []struct {
		name string
		dst  *string
	}{{EnvDeviceID, &cfg.DeviceID}, {EnvModuleID, &cfg.ModuleID}, {EnvHubHostName, &cfg.HubHostName}, {EnvGatewayHost, &cfg.GatewayHostName}} {
		v, err := get(f.name)
		*f.dst = v
		errs = append(errs, err)
	}
	uri, err := get(EnvWorkloadURI)
	errs = append(errs, err)
	genID, err := get(EnvGenerationID)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	if s := os.Getenv(EnvAuthScheme); s != "sasToken" {
		return Config{}, &ConfigError{What: EnvAuthScheme, Msg: fmt.Sprintf("%q is not supported: this SDK authenticates with SAS tokens signed by the workload API (sasToken)", s)}
	}
	apiVersion := os.Getenv(EnvAPIVersion)
	if apiVersion == "" {
		apiVersion = WorkloadAPIVersion
	}
	wl, err := NewWorkloadClient(uri, apiVersion)
	if err != nil {
		return Config{}, err
	}
	cfg.CAPEM, err = wl.TrustBundle(ctx)
	if err != nil {
		return Config{}, err
	}
	cfg.Signer = func(ctx context.Context, data string) (string, error) {
		return wl.Sign(ctx, cfg.ModuleID, genID, data)
	}
	cfg.BrokerAddress = os.Getenv(EnvBrokerAddress)
	for _, o := range opts {
		o(&cfg)
	}
	return cfg, nil
}

// identity is who a client connects as: a module, or a device (a leaf
// device reaching the hub through its gateway, the daemon).
type identity int

const (
	asModule identity = iota
	asDevice
)

func (id identity) String() string {
	if id == asDevice {
		return "device"
	}
	return "module"
}

// resolve checks cfg for a client connecting as id, filling in what a
// connection string gives and the defaults.
func (cfg Config) resolve(id identity) (Config, error) {
	if cfg.ConnectionString != "" {
		fields := map[string]string{}
		for _, part := range strings.Split(cfg.ConnectionString, ";") {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				if strings.TrimSpace(part) == "" {
					continue
				}
				return cfg, &ConfigError{What: "connection string", Msg: fmt.Sprintf("%q is not key=value: want %s", part, id.connectionStringForm())}
			}
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
		set := func(dst *string, key string) {
			if *dst == "" {
				*dst = fields[key]
			}
		}
		set(&cfg.HubHostName, "hostname")
		set(&cfg.DeviceID, "deviceid")
		set(&cfg.ModuleID, "moduleid")
		set(&cfg.GatewayHostName, "gatewayhostname")
		key := fields["sharedaccesskey"]
		if key == "" {
			if id == asDevice {
				return cfg, &ConfigError{What: "connection string", Msg: "no SharedAccessKey: a device's connection string has one (`outpost device show DEVICE` prints it)"}
			}
			return cfg, &ConfigError{What: "connection string", Msg: "no SharedAccessKey: a module's connection string has one (`outpost module show DEVICE/MODULE` prints it); a module run by the daemon uses NewFromEnvironment instead"}
		}
		k, err := base64.StdEncoding.DecodeString(key)
		if err != nil {
			return cfg, &ConfigError{What: "connection string", Msg: "SharedAccessKey is not base64: " + err.Error()}
		}
		cfg.Signer = KeySigner(k)
	}
	required := []struct{ name, v string }{{"HubHostName (HostName)", cfg.HubHostName}, {"DeviceID (DeviceId)", cfg.DeviceID}}
	if id == asModule {
		required = append(required, struct{ name, v string }{"ModuleID (ModuleId)", cfg.ModuleID})
	} else if cfg.ModuleID != "" {
		return cfg, &ConfigError{What: "ModuleID (ModuleId)", Msg: fmt.Sprintf("%q given to a device client: that is a module's identity; connect a module with New (moduleclient), a device with a device's connection string", cfg.ModuleID)}
	}
	for _, f := range required {
		if f.v == "" {
			return cfg, &ConfigError{What: f.name, Msg: "missing: want " + id.connectionStringForm()}
		}
	}
	if cfg.Signer == nil {
		return cfg, &ConfigError{What: "Signer", Msg: "missing: give a connection string with SharedAccessKey, or a Signer"}
	}
	if cfg.BrokerAddress == "" {
		if cfg.GatewayHostName == "" {
			return cfg, &ConfigError{What: "GatewayHostName", Msg: "missing: name the host the broker runs on (GatewayHostName= in the connection string), or give BrokerAddress"}
		}
		cfg.BrokerAddress = net.JoinHostPort(cfg.GatewayHostName, strconv.Itoa(DefaultPort))
	}
	if _, _, err := net.SplitHostPort(cfg.BrokerAddress); err != nil {
		return cfg, &ConfigError{What: "broker address", Msg: fmt.Sprintf("%q is not host:port (%v)", cfg.BrokerAddress, err)}
	}
	if cfg.CAPEM != nil && !x509.NewCertPool().AppendCertsFromPEM(cfg.CAPEM) {
		return cfg, &ConfigError{What: "CA", Msg: "no PEM certificate in it"}
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.TokenTTL < 2*time.Second {
		return cfg, &ConfigError{What: "TokenTTL", Msg: fmt.Sprintf("%s is too short: at least 2s", cfg.TokenTTL)}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// KeySigner signs with a shared access key (decoded from base64).
func KeySigner(key []byte) Signer {
	return func(_ context.Context, data string) (string, error) {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(data))
		return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
	}
}

// connectionStringForm is the form of the connection string id takes.
func (id identity) connectionStringForm() string {
	if id == asDevice {
		return "HostName=…;DeviceId=…;SharedAccessKey=…;GatewayHostName=…"
	}
	return "HostName=…;DeviceId=…;ModuleId=…;SharedAccessKey=…"
}

// path is the identity's part of its topics, its SAS resource and its MQTT
// client id: devices/{device}[/modules/{module}].
func (cfg Config) path() string {
	if cfg.ModuleID == "" {
		return "devices/" + cfg.DeviceID
	}
	return "devices/" + cfg.DeviceID + "/modules/" + cfg.ModuleID
}

// clientID is the MQTT client id: {device}[/{module}].
func (cfg Config) clientID() string {
	if cfg.ModuleID == "" {
		return cfg.DeviceID
	}
	return cfg.DeviceID + "/" + cfg.ModuleID
}

// resource is the SAS token's resource: the module or device at its hub.
func (cfg Config) resource() string { return cfg.HubHostName + "/" + cfg.path() }

// token makes a SAS token valid until expiry.
func (cfg Config) token(ctx context.Context, expiry time.Time) (string, error) {
	sr := url.QueryEscape(cfg.resource())
	se := strconv.FormatInt(expiry.Unix(), 10)
	sig, err := cfg.Signer(ctx, sr+"\n"+se)
	if err != nil {
		return "", fmt.Errorf("moduleclient: sign the SAS token: %w", err)
	}
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + se, nil
}
