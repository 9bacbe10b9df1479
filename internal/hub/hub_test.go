package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
)

var ctx = context.Background()

func TestRegistryAndTwinsOverHTTPS(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)

	d, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Authentication == nil || d.Authentication.SymmetricKey.PrimaryKey == "" || d.ETag == "" {
		t.Fatalf("created device: %+v", d)
	}
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "dev-1"}); !errors.Is(err, hubclient.ErrConflict) {
		t.Fatalf("duplicate device: %v", err)
	}
	m, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "dev-1", ModuleID: "tempsensor"})
	if err != nil {
		t.Fatal(err)
	}
	mods, err := c.ListModules(ctx, "dev-1")
	if err != nil || len(mods) == 0 {
		t.Fatalf("modules: %v %v", mods, err)
	}

	tw, err := c.PatchTwin(ctx, "dev-1", "tempsensor", []byte(`{"properties":{"desired":{"interval":5}},"tags":{"site":"north"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if tw.DesiredVersion() != 2 || string(tw.TagsJSON()) != `{"site":"north"}` {
		t.Fatalf("patched twin: desired v%d tags %s", tw.DesiredVersion(), tw.TagsJSON())
	}
	// A stale etag is refused with 412 and changes nothing.
	_, err = c.PatchTwin(ctx, "dev-1", "tempsensor", []byte(`{"properties":{"desired":{"interval":9}}}`), "AAAAAAAAAAE=")
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 412 || !errors.Is(err, errdefs.ErrPrecondition) {
		t.Fatalf("stale etag: %v", err)
	}
	tw2, err := c.PatchTwin(ctx, "dev-1", "tempsensor", []byte(`{"properties":{"desired":{"interval":9}}}`), tw.ETag)
	if err != nil || tw2.Desired()["interval"] != json.Number("9") {
		t.Fatalf("patch with the current etag: %v", err)
	}
	// Over a limit: 400 naming the path, nothing changes.
	_, err = c.PatchTwin(ctx, "dev-1", "tempsensor", []byte(`{"properties":{"desired":{"a.b":1}}}`), "")
	if !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, "properties.desired") {
		t.Fatalf("bad key: %v", err)
	}
	got, err := c.GetTwin(ctx, "dev-1", "tempsensor")
	if err != nil || got.ETag != tw2.ETag {
		t.Fatalf("twin after a rejected patch: %v (etag %s, want %s)", err, got.ETag, tw2.ETag)
	}
	// PUT replaces desired and tags.
	rep, err := c.ReplaceTwin(ctx, "dev-1", "tempsensor", []byte(`{"properties":{"desired":{"only":true}}}`), "")
	if err != nil || string(rep.DesiredJSON()) != `{"only":true}` || string(rep.TagsJSON()) != `{}` {
		t.Fatalf("replace: %v", err)
	}

	// The module's own token reads its twin and writes only reported.
	mc := h.ClientFor(t, h.DeviceConnectionString("dev-1", "tempsensor", m.Authentication.SymmetricKey.SecondaryKey))
	if _, err := mc.GetTwin(ctx, "dev-1", "tempsensor"); err != nil {
		t.Fatalf("module reads its twin: %v", err)
	}
	if _, err := mc.PatchTwin(ctx, "dev-1", "tempsensor", []byte(`{"properties":{"reported":{"t":21.5}}}`), ""); err != nil {
		t.Fatalf("module writes reported: %v", err)
	}
	if _, err := mc.PatchTwin(ctx, "dev-1", "tempsensor", []byte(`{"properties":{"desired":{"x":1}}}`), ""); !errors.Is(err, hubclient.ErrUnauthorized) {
		t.Fatalf("module writes desired: %v", err)
	}

	if err := c.DeleteDevice(ctx, "dev-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetTwin(ctx, "dev-1", "tempsensor"); !errors.Is(err, hubclient.ErrNotFound) {
		t.Fatalf("twin of a deleted device: %v", err)
	}
}

func TestListPagesThroughContinuation(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	reg := h.Registry()
	for i := range 1203 {
		if _, err := reg.CreateDevice(hubapi.Device{DeviceID: fmt.Sprintf("d%04d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := h.Client(t).ListDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1203 || all[0].DeviceID != "d0000" || all[1202].DeviceID != "d1202" {
		t.Fatalf("listed %d devices", len(all))
	}
}

// raw sends a request with an explicit Authorization header.
func raw(t *testing.T, h *hubtest.Hub, method, path, auth string, body []byte) (int, string) {
	t.Helper()
	return h.Request(t, method, path, auth, "", body)
}

func TestAuthFailures(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	d1, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d2", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	owner, err := identity.ParseConnectionString(h.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	host := h.HostName()
	now := time.Now()
	d1key := d1.Authentication.SymmetricKey.PrimaryKey
	sign := func(resource, key string, exp time.Time, skn string) string {
		tok, err := identity.NewSAS(resource, key, exp, skn)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherKey, _ := identity.NewKey()

	for _, tc := range []struct {
		name, method, path, auth, want string
		status                         int
	}{
		{"no header", "GET", "/devices/d1", "", "no Authorization header", 401},
		{"malformed", "GET", "/devices/d1", "SharedAccessSignature sr=x", "malformed SAS token", 401},
		{"expired policy token", "GET", "/devices/d1", sign(host, owner.SharedAccessKey, now.Add(-10*time.Minute), "owner"), "expired token for policy owner", 401},
		{"bad signature", "GET", "/devices/d1", sign(host, otherKey, now.Add(time.Hour), "owner"), "bad signature for policy owner", 401},
		{"unknown policy", "GET", "/devices/d1", sign(host, owner.SharedAccessKey, now.Add(time.Hour), "nobody"), `unknown policy "nobody"`, 401},
		{"wrong host", "GET", "/devices/d1", sign("other.example", owner.SharedAccessKey, now.Add(time.Hour), "owner"), "wrong resource", 401},
		{"device token for another device", "GET", "/devices/d2", sign(host+"/devices/d1", d1key, now.Add(time.Hour), ""), "device d1 may not read device d2", 401},
		{"device token for another device's twin", "GET", "/twins/d2/modules/m", sign(host+"/devices/d1", d1key, now.Add(time.Hour), ""), "device d1 may not read module d2/m", 401},
		{"device token signed with another key", "GET", "/devices/d1", sign(host+"/devices/d1", otherKey, now.Add(time.Hour), ""), "bad signature for device d1", 401},
		{"device token on the registry", "GET", "/devices", sign(host+"/devices/d1", d1key, now.Add(time.Hour), ""), "device d1 may not use this API", 401},
		{"unknown device", "GET", "/devices/zz", sign(host+"/devices/zz", d1key, now.Add(time.Hour), ""), `unknown device "zz"`, 401},
		{"expired device token", "GET", "/devices/d1", sign(host+"/devices/d1", d1key, now.Add(-time.Hour), ""), "expired token for device d1", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := raw(t, h, tc.method, tc.path, tc.auth, nil)
			var eb struct{ Message, ExceptionMessage string }
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("error body is not JSON: %s", body)
			}
			if status != tc.status || !strings.Contains(eb.ExceptionMessage, tc.want) {
				t.Fatalf("%s %s: %d %s; want %d and %q", tc.method, tc.path, status, body, tc.status, tc.want)
			}
			secrets := []string{owner.SharedAccessKey, d1key}
			if sas, err := identity.ParseSAS(tc.auth); err == nil {
				secrets = append(secrets, sas.Signature)
			}
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Fatalf("error echoes a secret: %s", body)
				}
			}
		})
	}

	// The device's own token works, with either key, and a disabled device is refused.
	dc := h.ClientFor(t, h.DeviceConnectionString("d1", "", d1.Authentication.SymmetricKey.SecondaryKey))
	if _, err := dc.GetDevice(ctx, "d1"); err != nil {
		t.Fatalf("device reads itself with its secondary key: %v", err)
	}
	d1.Status = "disabled"
	if _, err := c.UpdateDevice(ctx, d1, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.GetDevice(ctx, "d1"); err == nil || !strings.Contains(err.Error(), `device "d1" is disabled`) {
		t.Fatalf("disabled device: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	before, _ := c.GetTwin(ctx, "d", "m")
	owner, _ := identity.ParseConnectionString(h.ConnectionString)
	auth, _ := owner.Token(time.Hour, time.Now())
	big := append(append([]byte(`{"properties":{"desired":{"x":"`), bytes.Repeat([]byte("a"), 300<<10)...), `"}}}`...)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		status             int
		want               string
	}{
		{"malformed json", "PATCH", "/twins/d/modules/m", []byte(`{"properties":`), 400, "malformed JSON"},
		{"over a limit", "PATCH", "/twins/d/modules/m", []byte(`{"properties":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":1}}}}}}}}}}}}}}`), 400, "depth 11 exceeds 10"},
		{"unknown device", "GET", "/twins/nope/modules/m", nil, 404, "DeviceNotFound"},
		{"unknown module", "GET", "/twins/d/modules/nope", nil, 404, "ModuleNotFound"},
		{"invalid id", "PUT", "/devices/bad%20id", []byte(`{}`), 400, "not allowed"},
		{"oversized body", "PATCH", "/twins/d/modules/m", big, 413, "MessageTooLarge"},
		{"unknown path", "GET", "/nothing", nil, 404, "no such API"},
		{"reported by an operator", "PATCH", "/twins/d/modules/m", []byte(`{"properties":{"reported":{"x":1}}}`), 400, "reported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := raw(t, h, tc.method, tc.path, auth, tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s; want %d and %q", status, body, tc.status, tc.want)
			}
			var eb struct{ Message, ExceptionMessage string }
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Message == "" {
				t.Fatalf("error body is not IoT Hub's JSON: %s", body)
			}
		})
	}
	after, _ := c.GetTwin(ctx, "d", "m")
	if after.ETag != before.ETag {
		t.Fatal("a rejected request changed the twin")
	}
}
