package hub_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
)

// ownerAuth is a fresh owner token of h.
func ownerAuth(t *testing.T, h *hubtest.Hub) string {
	t.Helper()
	owner, err := identity.ParseConnectionString(h.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := owner.Token(time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

// expectError checks an IoT Hub error answer: its status and that its
// message holds want.
func expectError(t *testing.T, status int, body string, wantStatus int, want string) {
	t.Helper()
	var eb struct{ Message, ExceptionMessage string }
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Message == "" {
		t.Fatalf("%d: error body is not IoT Hub's JSON: %s", status, body)
	}
	if status != wantStatus || !strings.Contains(eb.ExceptionMessage, want) {
		t.Fatalf("%d %s; want %d and %q", status, body, wantStatus, want)
	}
}

func TestDotIDsAre400(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	if _, err := h.Client(t).CreateDevice(ctx, hubapi.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	auth := ownerAuth(t, h)
	for _, tc := range []struct{ method, path, want string }{
		{"PUT", "/devices/%2e%2e", `device id ".." is not allowed`},
		{"PUT", "/devices/%2E", `device id "." is not allowed`},
		{"GET", "/devices/%2e%2e", `device id ".." is not allowed`},
		{"DELETE", "/devices/%2e", `device id "." is not allowed`},
		{"PUT", "/devices/d/modules/%2e%2e", `module id ".." is not allowed`},
		{"GET", "/twins/d/modules/%2e", `module id "." is not allowed`},
		{"PATCH", "/twins/%2e%2e", `device id ".." is not allowed`},
		{"GET", "/outpost/v1/devices/%2e%2e/sync", `device id ".." is not allowed`},
	} {
		status, body := raw(t, h, tc.method, tc.path, auth, []byte(`{}`))
		expectError(t, status, body, 400, tc.want)
	}
	// Ids that only contain dots among other characters are fine.
	status, body := raw(t, h, "PUT", "/devices/..a.", auth, []byte(`{}`))
	if status != 200 {
		t.Fatalf("PUT /devices/..a.: %d %s", status, body)
	}
}

func TestSystemModulesAreReserved(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	auth := ownerAuth(t, h)
	for _, tc := range []struct{ method, path, want string }{
		{"PUT", "/devices/d/modules/$mine", `module id "$mine": ids starting with '$' are reserved for system modules`},
		{"PUT", "/devices/d/modules/$edgeAgent", `module id "$edgeAgent": ids starting with '$' are reserved`},
		{"PUT", "/devices/d/modules/$agent", `module id "$agent": ids starting with '$' are reserved`},
		{"DELETE", "/devices/d/modules/$agent", `module id "$agent": ids starting with '$' are reserved`},
	} {
		status, body := raw(t, h, tc.method, tc.path, auth, []byte(`{}`))
		expectError(t, status, body, 400, tc.want)
	}
	// The system module is still there and readable, its twin too.
	if _, err := c.GetModule(ctx, "d", "$agent"); err != nil {
		t.Fatalf("$agent after the refused delete: %v", err)
	}
	if _, err := c.GetTwin(ctx, "d", "$agent"); err != nil {
		t.Fatalf("$agent twin: %v", err)
	}
	mods, err := c.ListModules(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		if m.ModuleID != "$agent" {
			t.Fatalf("module %q was created", m.ModuleID)
		}
	}
}
