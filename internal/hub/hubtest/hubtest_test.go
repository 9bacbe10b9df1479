package hubtest_test

import (
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/identity"
)

// TestRequestClosesItsConnection: a test polling the hub with Request does
// not pile up open connections until the hub's per-address limit cuts it.
func TestRequestClosesItsConnection(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{Limits: hub.Limits{MaxConnsPerIP: 4}})
	owner, err := identity.ParseConnectionString(h.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := owner.Token(time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if code, body := h.Request(t, "GET", "/devices", auth, "", nil); code != 200 {
			t.Fatalf("request %d: %d %s", i+1, code, body)
		}
	}
}
