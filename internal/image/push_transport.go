package image

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// maxRetryAfter caps how long a registry's Retry-After holds requests back.
const maxRetryAfter = time.Minute

// baseTransport is the HTTP transport pushes share, so that one process
// (outpost push a b c, build --push) reuses its connections.
var baseTransport http.RoundTripper = newBaseTransport()

func newBaseTransport() *http.Transport {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	// Layers go out as one PATCH each; bigger buffers mean fewer syscalls.
	t.WriteBufferSize = 256 << 10
	t.ReadBufferSize = 64 << 10
	return t
}

// pushTransport sits under go-containerregistry's own transports (auth,
// retry). It does not retry anything itself: go-containerregistry retries
// at the level where it is safe (a whole blob upload from its HEAD, a
// manifest PUT, a GET or HEAD). What it adds:
//
//   - Retry-After: a 408/429/5xx answer with Retry-After holds back every
//     later request to that host until the time has passed (capped at
//     maxRetryAfter), whichever layer of go-containerregistry retries it;
//   - plain HTTP only to loopback hosts, or to any host when insecure;
//   - observe: a hook that sees each request with its response (progress).
type pushTransport struct {
	inner    http.RoundTripper
	insecure bool
	observe  func(*http.Request, *http.Response)

	mu        sync.Mutex
	notBefore map[string]time.Time // by URL host
}

func (t *pushTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.insecure && !IsLoopback(req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &PlainHTTPError{Registry: req.URL.Host}
	}
	if err := t.wait(req.Context(), req.URL.Host); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if retryableStatus(resp.StatusCode) {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			t.holdUntil(req.URL.Host, time.Now().Add(min(d, maxRetryAfter)))
		}
	}
	if t.observe != nil {
		t.observe(req, resp)
	}
	return resp, nil
}

// wait blocks until host may be sent a request again.
func (t *pushTransport) wait(ctx context.Context, host string) error {
	t.mu.Lock()
	until := t.notBefore[host]
	t.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func (t *pushTransport) holdUntil(host string, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.notBefore == nil {
		t.notBefore = map[string]time.Time{}
	}
	if until.After(t.notBefore[host]) {
		t.notBefore[host] = until
	}
}

// retryableStatus lists the answers go-containerregistry retries.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout, 499, 522:
		return true
	}
	return false
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		if s > int(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
