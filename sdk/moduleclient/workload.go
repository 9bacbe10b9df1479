package moduleclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// WorkloadAPIVersion is the api-version sent to the workload API when
// IOTEDGE_APIVERSION is not set.
const WorkloadAPIVersion = "2019-01-30"

// WorkloadClient talks to the daemon's workload API on the module's unix
// socket: it signs with the module's key and gives the trust bundle.
type WorkloadClient struct {
	socket     string
	apiVersion string
	hc         *http.Client
}

// WorkloadError is a request the workload API refused, with its message.
type WorkloadError struct {
	Op      string // "sign", "trust-bundle"
	Status  int
	Message string
}

func (e *WorkloadError) Error() string {
	return fmt.Sprintf("moduleclient: workload API %s: %d %s: %s", e.Op, e.Status, http.StatusText(e.Status), e.Message)
}

// NewWorkloadClient returns a client of the workload API at uri
// (unix:///path/to/workload.sock).
func NewWorkloadClient(uri, apiVersion string) (*WorkloadClient, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "unix" || u.Path == "" {
		return nil, &ConfigError{What: EnvWorkloadURI, Msg: fmt.Sprintf("%q is not unix:///path/to/workload.sock (this SDK reaches the workload API over a unix socket)", uri)}
	}
	socket := u.Path
	return &WorkloadClient{socket: socket, apiVersion: apiVersion, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}, nil
}

func (w *WorkloadClient) do(ctx context.Context, op, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://workload"+path+"?api-version="+url.QueryEscape(w.apiVersion), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return fmt.Errorf("moduleclient: workload API at %s: %w (is the outpost daemon running?)", w.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("moduleclient: workload API %s: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return &WorkloadError{Op: op, Status: resp.StatusCode, Message: e.Message}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("moduleclient: workload API %s: the answer is not JSON: %w", op, err)
	}
	return nil
}

// TrustBundle returns the certificates (PEM) the broker's certificate
// chains to.
func (w *WorkloadClient) TrustBundle(ctx context.Context) ([]byte, error) {
	var out struct {
		Certificate string `json:"certificate"`
	}
	if err := w.do(ctx, "trust-bundle", http.MethodGet, "/trust-bundle", nil, &out); err != nil {
		return nil, err
	}
	if out.Certificate == "" {
		return nil, &WorkloadError{Op: "trust-bundle", Status: http.StatusOK, Message: "the answer has no certificate"}
	}
	return []byte(out.Certificate), nil
}

// Sign returns base64(HMAC-SHA256(module's primary key, data)).
func (w *WorkloadClient) Sign(ctx context.Context, module, genID, data string) (string, error) {
	in := map[string]string{"keyId": "primary", "algo": "HMACSHA256", "data": base64.StdEncoding.EncodeToString([]byte(data))}
	var out struct {
		Digest string `json:"digest"`
	}
	path := "/modules/" + url.PathEscape(module) + "/genid/" + url.PathEscape(genID) + "/sign"
	if err := w.do(ctx, "sign", http.MethodPost, path, in, &out); err != nil {
		return "", err
	}
	if out.Digest == "" {
		return "", &WorkloadError{Op: "sign", Status: http.StatusOK, Message: "the answer has no digest"}
	}
	return out.Digest, nil
}
