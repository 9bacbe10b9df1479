// Package mgmtclient is the typed client of the device daemon's management
// API: JSON over HTTP on a unix socket (default /run/outpost/mgmt.sock, mode
// 0600). The CLI's local commands (list, logs, restart, status) and the TUI
// reach the daemon only through it. Its types are the API's wire types.
package mgmtclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/internal/errdefs"
)

// DefaultSocket is where the daemon listens by default.
const DefaultSocket = "/run/outpost/mgmt.sock"

// Module is one module as the daemon runs it (GET /modules).
type Module struct {
	Name          string    `json:"name"`
	Status        string    `json:"status"` // IoT Edge's runtimeStatus: unknown|backoff|running|unhealthy|stopped|failed|dead
	DesiredStatus string    `json:"desiredStatus"`
	Image         string    `json:"image"`
	ImageDigest   string    `json:"imageDigest,omitempty"`
	Version       string    `json:"version,omitempty"`
	RestartPolicy string    `json:"restartPolicy"`
	StartupOrder  int64     `json:"startupOrder"`
	Restarts      int       `json:"restarts"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	ExitedAt      time.Time `json:"exitedAt,omitzero"`
	NextRestartAt time.Time `json:"nextRestartAt,omitzero"`
	ExitCode      *int      `json:"exitCode,omitempty"`
	Pid           int       `json:"pid,omitempty"`
	Description   string    `json:"description,omitempty"`
	// LastHealthCheck is the instance's last health check; nil before the
	// first, or when the module has none.
	LastHealthCheck *HealthCheck `json:"lastHealthCheck,omitempty"`
}

// HealthCheck is the result of one health check of a module's instance.
type HealthCheck struct {
	At     time.Time `json:"at"`
	OK     bool      `json:"ok"`
	Output string    `json:"output,omitempty"` // why it failed
}

// Outbox describes the reported patches waiting for the hub.
type Outbox struct {
	Patches int       `json:"patches"`
	Bytes   int       `json:"bytes"`
	Oldest  time.Time `json:"oldest,omitzero"`
}

// TwinVersions are a cached twin's section versions, and the hub's.
type TwinVersions struct {
	ModuleID        string `json:"moduleId"`
	DesiredVersion  int64  `json:"desiredVersion"`
	ReportedVersion int64  `json:"reportedVersion"`
	// HubDesiredVersion and HubReportedVersion are the twin's versions as
	// the hub last sent them (in a sync answer), HubSeenAt when that answer
	// came; absent until one carried the twin. A sync answer carries every
	// twin changed since the one before, so the hub's twin held them from
	// HubSeenAt until Status.LastSync at least (while connected, the hub
	// answers as soon as one changes).
	HubDesiredVersion  int64     `json:"hubDesiredVersion,omitempty"`
	HubReportedVersion int64     `json:"hubReportedVersion,omitempty"`
	HubSeenAt          time.Time `json:"hubSeenAt,omitzero"`
	// QueuedReports are the twin's reported patches waiting in the outbox
	// for the hub.
	QueuedReports int `json:"queuedReports,omitempty"`
}

// BrokerModule is a module's link to the module broker.
type BrokerModule struct {
	ModuleID  string    `json:"moduleId"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"` // when it connected, or disconnected
	// DesiredVersion is the desired $version the broker last sent it (in a
	// twin GET answer or a desired patch); 0 when unknown.
	DesiredVersion int64 `json:"desiredVersion"`
	// ReportedVersion is the reported $version of its twin on the device:
	// the version the broker acknowledged its last report with.
	ReportedVersion int64 `json:"reportedVersion"`
}

// BrokerStatus is the module broker's view of the modules that connected
// since the daemon started.
type BrokerStatus struct {
	Modules []BrokerModule `json:"modules"`
}

// Status is the daemon's link to its hub and what it runs on (GET /status).
type Status struct {
	DeviceID  string    `json:"deviceId"`
	HubHost   string    `json:"hubHostName,omitempty"`
	Runtime   string    `json:"runtime"`
	Isolated  bool      `json:"isolated"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	LastSync  time.Time `json:"lastSync,omitzero"`
	// LastError is why the hub was last unreachable, LastErrorAt when (as
	// in Link).
	LastError   string         `json:"lastError,omitempty"`
	LastErrorAt time.Time      `json:"lastErrorAt,omitzero"`
	Outbox      Outbox         `json:"outbox"`
	Twins       []TwinVersions `json:"twins"`
	Broker      BrokerStatus   `json:"broker"`
	Messages    *MessageQueue  `json:"messages,omitempty"`
	// Children are the child (leaf) devices that connected to the broker
	// since the daemon started, sorted by device id.
	Children []Child `json:"children"`
	// DeviceCA is the CA the broker's certificate chains to: what leaf
	// devices must trust (outpost daemon ca prints its root).
	DeviceCA *DeviceCA `json:"deviceCA,omitempty"`
}

// Child is a child (leaf) device's link to the broker.
type Child struct {
	DeviceID  string    `json:"deviceId"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"` // when it connected, or disconnected
	// LastActivity is when the broker last heard from it (any packet).
	LastActivity time.Time `json:"lastActivity,omitzero"`
	// QueuedReports are its reported patches in the outbox, waiting for
	// the hub.
	QueuedReports int `json:"queuedReports"`
	// QueuedMessages are its messages in the message queue that a
	// destination (the hub, a module's input) has still to take.
	QueuedMessages int `json:"queuedMessages"`
}

// DeviceCA is the device CA and the broker's certificate it issued.
type DeviceCA struct {
	File    string `json:"file"`    // the CA's certificate file
	Subject string `json:"subject"` // of the root (the CA's own when it is a root)
	// Fingerprint is the SHA-256 fingerprint of the root (what outpost
	// daemon ca prints), as openssl x509 -fingerprint -sha256 shows it.
	Fingerprint string    `json:"sha256Fingerprint"`
	NotAfter    time.Time `json:"notAfter"` // the CA's expiry
	// BrokerNames are the names and addresses the broker's certificate is
	// valid for: the gateway host name leaf devices put in GatewayHostName,
	// localhost and the loopback addresses.
	BrokerNames    []string  `json:"brokerNames"`
	BrokerNotAfter time.Time `json:"brokerNotAfter"`
}

// LogOptions select a module's log lines.
type LogOptions struct {
	Follow bool
	Tail   int       // last N lines (0: all)
	Since  time.Time // lines at or after (zero: all)
	// Timestamps starts each line with the time the daemon read it (RFC 3339,
	// nanoseconds, UTC) and a space.
	Timestamps bool
}

// ErrorBody is the JSON body of every error the API answers.
type ErrorBody struct {
	Message string `json:"message"`
}

// Error is an error the daemon answered.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, ErrNotFound) and the other kinds of errdefs work.
func (e *Error) Is(target error) bool {
	return e.Status != 0 && target == errdefs.FromHTTPStatus(e.Status)
}

// ErrNotFound matches an *Error with status 404.
var ErrNotFound = errdefs.ErrNotFound

// UnavailableError means the daemon does not answer on its socket.
type UnavailableError struct {
	Socket string
	Err    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("the outpost daemon does not answer on %s: %v", e.Socket, e.Err)
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errdefs.ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == errdefs.ErrUnavailable }

// Hint says what to do next.
func (e *UnavailableError) Hint() string {
	if errors.Is(e.Err, syscall.EACCES) {
		return "the socket is mode 0600: run as the daemon's user (sudo), or pass --mgmt-socket"
	}
	return "is the daemon running? try: systemctl status outpost (or outpost daemon); or pass --mgmt-socket"
}

// Client talks to one daemon.
type Client struct {
	socket string
	hc     *http.Client
}

// New returns a client for the daemon listening on socket ("" for
// DefaultSocket).
func New(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket is the socket the client talks to.
func (c *Client) Socket() string { return c.socket }

func (c *Client) do(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	u := "http://outpost" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnavailableError{Socket: c.socket, Err: unwrapDial(err)}
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Message == "" {
			eb.Message = strings.TrimSpace(string(b))
			if eb.Message == "" {
				eb.Message = resp.Status
			}
		}
		return nil, &Error{Status: resp.StatusCode, Message: eb.Message}
	}
	return resp, nil
}

// unwrapDial keeps the useful part of a dial error (connect: no such file…).
func unwrapDial(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("read the daemon's answer to %s: %w", path, err)
	}
	return nil
}

// Modules lists the modules of the deployment and how they run.
func (c *Client) Modules(ctx context.Context) ([]Module, error) {
	var ms []Module
	if err := c.getJSON(ctx, "/modules", &ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.getJSON(ctx, "/status", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Restart restarts a module's instance.
func (c *Client) Restart(ctx context.Context, module string) error {
	resp, err := c.do(ctx, http.MethodPost, "/modules/"+url.PathEscape(module)+"/restart", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Logs streams a module's logs (stdout and stderr, merged, one line at a
// time); with Follow, until the instance exits or ctx is done.
func (c *Client) Logs(ctx context.Context, module string, opts LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.Timestamps {
		q.Set("timestamps", "true")
	}
	if opts.Tail > 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	resp, err := c.do(ctx, http.MethodGet, "/modules/"+url.PathEscape(module)+"/logs", q)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// MessageQueue describes the routed module messages waiting on the device:
// for the hub (Upstream) and for module inputs (Inputs).
type MessageQueue struct {
	Upstream QueueStats `json:"upstream"`
	Inputs   QueueStats `json:"inputs"`
	// RoutesError says why no message is routed (the $edgeHub routes do
	// not parse), "" when they do.
	RoutesError string `json:"routesError,omitempty"`
}

// QueueStats is one part of the message queue. Refused counts the messages
// the queue had no room for (their PUBACK withheld); it is shared by both
// parts.
type QueueStats struct {
	Count   int       `json:"count"`
	Bytes   int64     `json:"bytes"`
	Oldest  time.Time `json:"oldest,omitzero"`
	Expired int64     `json:"expired"`
	Refused int64     `json:"refused"`
}
