package hubclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hubclient"
)

// TestRequestsCarryAPIVersion: every request names the API version, as IoT
// Hub requires, with and without parameters of its own.
func TestRequestsCarryAPIVersion(t *testing.T) {
	queries := make(chan string, 2)
	hub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.RawQuery
		if strings.HasPrefix(r.URL.Path, "/devices/") {
			w.Write([]byte(`{"deviceId":"d1"}`))
			return
		}
		w.Write([]byte("[]"))
	}))
	defer hub.Close()
	c := ownerOf(t, hub)
	ctx := context.Background()
	if _, err := c.GetDevice(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if got, want := <-queries, "api-version="+hubclient.APIVersion; got != want {
		t.Errorf("GetDevice query %q, want %q", got, want)
	}
	if _, _, err := c.ListDevicesPage(ctx, "", 10); err != nil {
		t.Fatal(err)
	}
	if got, want := <-queries, "api-version="+hubclient.APIVersion+"&top=10"; got != want {
		t.Errorf("ListDevicesPage query %q, want %q", got, want)
	}
}
