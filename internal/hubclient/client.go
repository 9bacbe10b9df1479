// Package hubclient is the typed client of the hub's API, shared by the
// CLI, the TUI and the daemon. It authenticates with a connection string
// (a policy's, a device's or a module's) and maps the hub's errors to typed
// errors of errdefs' kinds (not found, conflict, …), with next steps.
package hubclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/twin"
)

// APIVersion is sent with every request, as IoT Hub's SDKs do.
const APIVersion = "2021-04-12"

// tokenTTL is how long the client's own tokens live.
const tokenTTL = time.Hour

// Client talks to one hub.
type Client struct {
	cs   *identity.ConnectionString
	base string
	hc   *http.Client
	now  func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the HTTP client (its TLS settings included).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithClock replaces the clock used for tokens.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New returns a client for the hub named in connectionString, trusting
// caFile (PEM) when it is not "", and the system's roots (read only then)
// for a certificate caFile did not sign.
func New(connectionString, caFile string, opts ...Option) (*Client, error) {
	if connectionString == "" {
		return nil, &Error{Message: "no hub connection string", hint: "pass --hub, set OUTPOST_CONNECTION_STRING, or put connection-string in the config file; `outpost hub credentials` prints the owner's"}
	}
	cs, err := identity.ParseConnectionString(connectionString)
	if err != nil {
		return nil, err
	}
	scheme := "https"
	if cs.UseInsecureHTTP {
		scheme = "http"
	}
	c := &Client{cs: cs, base: scheme + "://" + cs.HostName, now: time.Now}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Keep a connection for every request in flight: a client with more
	// concurrent requests than idle connections closes the extra ones and
	// pays a TLS handshake for each later request (at 256 concurrent PATCHes
	// the handshakes cost more than the PATCHes).
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 1024
	if caFile != "" && !cs.UseInsecureHTTP {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read the hub's CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the hub's CA %s holds no PEM certificate", caFile)
		}
		host := cs.HostName
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		tr.TLSClientConfig = hubTLS(pool, host)
	}
	c.hc = &http.Client{Transport: tr}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// hubTLS verifies the hub's certificate as crypto/tls does (the chain, and
// that it is for host, the connection string's), trusting the hub's CA,
// and the system's roots only for a certificate the CA did not sign:
// reading the system's roots costs 20–80 ms of every start (they are
// parsed from /etc/ssl/certs), which a hub with its own CA never needs.
func hubTLS(ca *x509.CertPool, host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// A new connection resumes a session of an earlier one: no
		// certificate sent, no key signature (VerifyConnection still
		// checks the chain).
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
		// Verified in VerifyConnection, which crypto/tls calls on every
		// handshake, resumed ones included.
		InsecureSkipVerify: true,
		VerifyConnection: func(st tls.ConnectionState) error {
			if len(st.PeerCertificates) == 0 {
				return errors.New("the hub sent no certificate")
			}
			opts := x509.VerifyOptions{DNSName: host, Roots: ca, Intermediates: x509.NewCertPool()}
			for _, c := range st.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := st.PeerCertificates[0].Verify(opts)
			var unknown x509.UnknownAuthorityError
			if errors.As(err, &unknown) {
				opts.Roots = nil // the system's
				_, err = st.PeerCertificates[0].Verify(opts)
			}
			if err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: st.PeerCertificates, Err: err}
			}
			return nil
		},
	}
}

// ConnectionString is the parsed connection string the client uses.
func (c *Client) ConnectionString() *identity.ConnectionString { return c.cs }

// HostName is the hub's host[:port].
func (c *Client) HostName() string { return c.cs.HostName }

func (c *Client) authorization() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.token == "" || now.After(c.expires.Add(-5*time.Minute)) {
		tok, err := c.cs.Token(tokenTTL, now)
		if err != nil {
			return "", err
		}
		c.token, c.expires = tok, now.Add(tokenTTL)
	}
	return c.token, nil
}

// Error is an error answered by the hub, or a client-side error with a hint.
type Error struct {
	StatusCode int    // HTTP status, 0 for client-side errors
	Code       string // IoT Hub's error code, e.g. DeviceNotFound
	Message    string
	hint       string
}

func (e *Error) Error() string {
	if e.StatusCode == 0 {
		return e.Message
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.StatusCode, e.Code)
}

// Hint says what to do next, when the hub's answer tells more than its
// kind (errdefs) does.
func (e *Error) Hint() string {
	if e.hint != "" {
		return e.hint
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return "check the connection string (--hub / OUTPOST_CONNECTION_STRING): its key or policy may be wrong"
	case http.StatusServiceUnavailable:
		return "is the hub running? it may be restarting: try again in a moment"
	}
	return ""
}

// Is makes errors.Is(err, ErrNotFound) and the other kinds of errdefs work.
func (e *Error) Is(target error) bool {
	return e.StatusCode != 0 && target == errdefs.FromHTTPStatus(e.StatusCode)
}

// The kinds of error the hub answers, for errors.Is.
var (
	ErrNotFound     = errdefs.ErrNotFound     // 404
	ErrConflict     = errdefs.ErrConflict     // 409: it already exists
	ErrPrecondition = errdefs.ErrPrecondition // 412: the etag is no longer current
	ErrUnauthorized = errdefs.ErrUnauthorized // 401
)

// UnavailableError means the hub could not be reached.
type UnavailableError struct {
	Addr string
	Err  error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("hub %s is unreachable: %v", e.Addr, e.Err)
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errdefs.ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == errdefs.ErrUnavailable }

// Hint says what to check.
func (e *UnavailableError) Hint() string {
	return "is the hub running there? (outpost hub serve); check HostName in the connection string"
}

// certHint says what to do about a hub certificate that did not verify.
func certHint(err error, addr string) string {
	var hostname x509.HostnameError
	if errors.As(err, &hostname) {
		return "the hub's certificate is not for " + addr + ": use the HostName the hub prints, or restart it with --hostname/--san for this name"
	}
	return "the hub's certificate is not trusted: pass its CA with --ca FILE (or OUTPOST_CA); `outpost hub credentials` names the file"
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, header http.Header, out any) (http.Header, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(buf)
	}
	u := c.base + path + apiVersionQuery
	if len(query) > 0 {
		query.Set("api-version", APIVersion)
		u = c.base + path + "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	auth, err := c.authorization()
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &certErr) {
			return nil, &Error{Message: fmt.Sprintf("hub %s: %v", c.cs.HostName, certErr.Err), hint: certHint(certErr.Err, c.cs.HostName)}
		}
		var netErr net.Error
		var opErr *net.OpError
		if errors.As(err, &opErr) || errors.As(err, &netErr) || errors.Is(err, io.EOF) {
			return nil, &UnavailableError{Addr: c.cs.HostName, Err: unwrapURL(err)}
		}
		return nil, err
	}
	defer resp.Body.Close()
	data, err := hubapi.ReadBody(resp.Body, resp.ContentLength, 1<<20)
	if err != nil {
		return nil, &UnavailableError{Addr: c.cs.HostName, Err: err}
	}
	if resp.StatusCode >= 300 {
		return resp.Header, decodeError(resp, data)
	}
	if out != nil && len(data) > 0 {
		if raw, ok := out.(*[]byte); ok {
			*raw = data
		} else if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, fmt.Errorf("%s %s: bad answer from the hub: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// apiVersionQuery is the query of a request without parameters.
const apiVersionQuery = "?api-version=" + APIVersion

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func decodeError(resp *http.Response, data []byte) error {
	e := &Error{StatusCode: resp.StatusCode, Code: resp.Header.Get("iothub-errorcode")}
	var body struct {
		Message          string
		ExceptionMessage string
	}
	if json.Unmarshal(data, &body) == nil && (body.Message != "" || body.ExceptionMessage != "") {
		e.Message = body.ExceptionMessage
		if e.Message == "" {
			e.Message = body.Message
		}
		if code, _, ok := strings.Cut(strings.TrimPrefix(body.Message, "ErrorCode:"), ";"); ok && e.Code == "" {
			e.Code = code
		}
	} else {
		e.Message = strings.TrimSpace(string(data))
		if e.Message == "" {
			e.Message = resp.Status
		}
	}
	if e.Code == "" {
		e.Code = http.StatusText(resp.StatusCode)
	}
	return e
}

func esc(s string) string { return url.PathEscape(s) }

// ifMatch returns an If-Match header for etag ("" for none).
func ifMatch(etag string) http.Header {
	if etag == "" {
		return nil
	}
	if etag != "*" {
		etag = `"` + strings.Trim(etag, `"`) + `"`
	}
	return http.Header{"If-Match": {etag}}
}

// parseTwin decodes a twin document.
func parseTwin(data []byte) (*twin.Twin, error) {
	t := new(twin.Twin)
	if err := t.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("bad twin from the hub: %w", err)
	}
	return t, nil
}
