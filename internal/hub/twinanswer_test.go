package hub_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// TestPatchAnswerEqualsGet: the twin a PATCH answers, built from the twin
// just written and the identity the registry keeps decoded, is byte for
// byte what a GET right after answers, for a module twin and a device twin,
// also after the device identity changed between two PATCHes.
func TestPatchAnswerEqualsGet(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	auth := ownerAuth(t, h)
	check := func(path, body string) {
		t.Helper()
		status, patched := h.Request(t, http.MethodPatch, path+"?api-version=2021-04-12", auth, "", []byte(body))
		if status != http.StatusOK {
			t.Fatalf("PATCH %s: %d %s", path, status, patched)
		}
		status, got := h.Request(t, http.MethodGet, path+"?api-version=2021-04-12", auth, "", nil)
		if status != http.StatusOK || got != patched {
			t.Fatalf("%s: the PATCH answered\n%s\nthe GET after it (%d)\n%s", path, patched, status, got)
		}
	}
	for _, path := range []string{"/twins/d/modules/m", "/twins/d"} {
		check(path, `{"tags":{"site":"a<b>&c"},"properties":{"desired":{"n":1,"s":"x\u2028y"}}}`)
		check(path, `{"properties":{"desired":{"n":2,"o":{"deep":[1,2,{"k":null}]}}}}`)
	}
	// The device identity changes (a new etag, a status reason): the next
	// answer shows it.
	d, err := c.GetDevice(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	d.Status, d.StatusReason = "disabled", "maintenance <window>"
	if _, err := c.UpdateDevice(ctx, d, ""); err != nil {
		t.Fatal(err)
	}
	check("/twins/d/modules/m", `{"properties":{"desired":{"n":3}}}`)
	check("/twins/d", `{"properties":{"desired":{"n":3}}}`)
	if _, got := h.Request(t, http.MethodGet, "/twins/d?api-version=2021-04-12", auth, "", nil); !strings.Contains(got, `"statusReason":"maintenance \u003cwindow\u003e"`) {
		t.Fatalf("the device twin does not show the identity's change: %s", got)
	}
}
