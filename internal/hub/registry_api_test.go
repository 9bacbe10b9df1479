package hub_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/registry"
)

// ownerRequest sends a request with the owner's token and decodes a JSON
// answer into out (when not nil).
func ownerRequest(t *testing.T, h *hubtest.Hub, method, path string, body []byte, out any) (int, string) {
	t.Helper()
	status, resp := h.Request(t, method, path, ownerAuth(t, h), "", body)
	if out != nil && status < 300 {
		if err := json.Unmarshal([]byte(resp), out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, resp)
		}
	}
	return status, resp
}

func TestDeviceTwinReplace(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	tw, err := c.PatchTwin(ctx, "d1", "", []byte(`{"tags":{"site":"a","floor":1},"properties":{"desired":{"x":1,"y":2}}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	stale := tw.ETag
	if tw, err = c.PatchTwin(ctx, "d1", "", []byte(`{"tags":{"floor":2}}`), ""); err != nil {
		t.Fatal(err)
	}
	_, err = c.ReplaceTwin(ctx, "d1", "", []byte(`{"tags":{"site":"b"},"properties":{"desired":{"z":3}}}`), stale)
	if !errors.Is(err, hubclient.ErrPrecondition) {
		t.Fatalf("replace with a stale etag: %v, want 412", err)
	}
	got, err := c.ReplaceTwin(ctx, "d1", "", []byte(`{"tags":{"site":"b"},"properties":{"desired":{"z":3}}}`), tw.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if tags, desired := string(got.TagsJSON()), string(got.DesiredJSON()); tags != `{"site":"b"}` || desired != `{"z":3}` {
		t.Fatalf("after replace: tags %s desired %s, want both replaced whole", tags, desired)
	}
	if got.Version != tw.Version+1 || got.DesiredVersion() != tw.DesiredVersion()+1 {
		t.Fatalf("versions after replace: twin %d desired %d, were %d %d", got.Version, got.DesiredVersion(), tw.Version, tw.DesiredVersion())
	}
	// Reported properties are the device's: a replace may not carry them.
	status, body := ownerRequest(t, h, "PUT", "/twins/d1", []byte(`{"properties":{"reported":{"r":1}}}`), nil)
	if status != 400 || !strings.Contains(body, "properties.reported") {
		t.Fatalf("replace with reported: %d %s, want 400 naming properties.reported", status, body)
	}
	if status, body := ownerRequest(t, h, "PUT", "/twins/nope", []byte(`{}`), nil); status != 404 || !strings.Contains(body, "DeviceNotFound") {
		t.Fatalf("replace the twin of a missing device: %d %s", status, body)
	}
}

// twinDoc is what a client of IoT Hub reads in a twin besides its content.
type twinDoc struct {
	DeviceID                  string    `json:"deviceId"`
	ModuleID                  *string   `json:"moduleId"`
	ETag                      string    `json:"etag"`
	DeviceETag                string    `json:"deviceEtag"`
	Status                    string    `json:"status"`
	StatusUpdateTime          time.Time `json:"statusUpdateTime"`
	ConnectionState           string    `json:"connectionState"`
	LastActivityTime          time.Time `json:"lastActivityTime"`
	CloudToDeviceMessageCount *int      `json:"cloudToDeviceMessageCount"`
	AuthenticationType        string    `json:"authenticationType"`
	X509Thumbprint            *struct {
		Primary   *string `json:"primaryThumbprint"`
		Secondary *string `json:"secondaryThumbprint"`
	} `json:"x509Thumbprint"`
	ModelID      *string                `json:"modelId"`
	Version      int64                  `json:"version"`
	Capabilities *registry.Capabilities `json:"capabilities"`
	Tags         map[string]any         `json:"tags"`
	Properties   struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"properties"`
}

func TestTwinCarriesIdentityFields(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{PresenceGrace: time.Hour})
	c := h.Client(t)
	d, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d1", ModuleID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	var dt twinDoc
	if status, body := ownerRequest(t, h, "GET", "/twins/d1", nil, &dt); status != 200 {
		t.Fatalf("GET twin: %d %s", status, body)
	}
	if dt.DeviceID != "d1" || dt.ModuleID != nil || dt.DeviceETag != d.ETag || dt.Status != "enabled" ||
		!dt.StatusUpdateTime.Equal(d.StatusUpdatedTime) || dt.ConnectionState != "Disconnected" ||
		dt.CloudToDeviceMessageCount == nil || dt.AuthenticationType != "sas" ||
		dt.X509Thumbprint == nil || dt.X509Thumbprint.Primary != nil || dt.X509Thumbprint.Secondary != nil ||
		dt.ModelID == nil || dt.Capabilities == nil || !dt.Capabilities.IoTEdge || dt.Version < 1 || dt.Properties.Desired["$version"] == nil {
		t.Fatalf("device twin: %+v\nwant IoT Hub's identity fields (device etag %s)", dt, d.ETag)
	}

	// The device connects (a sync): its twin says so, as do the statistics.
	dev := h.ClientFor(t, h.DeviceConnectionString("d1", "", d.Authentication.SymmetricKey.PrimaryKey))
	if _, err := dev.Sync(ctx, "d1", "", 0); err != nil {
		t.Fatal(err)
	}
	var st struct {
		ConnectedDeviceCount *int `json:"connectedDeviceCount"`
	}
	if status, body := ownerRequest(t, h, "GET", "/statistics/service", nil, &st); status != 200 || st.ConnectedDeviceCount == nil || *st.ConnectedDeviceCount != 1 {
		t.Fatalf("service statistics after a sync: %d %s, want connectedDeviceCount 1", status, body)
	}
	if _, err := c.UpdateDevice(ctx, hubapi.Device{DeviceID: "d1", Status: "disabled"}, "*"); err != nil {
		t.Fatal(err)
	}
	if status, body := ownerRequest(t, h, "GET", "/twins/d1", nil, &dt); status != 200 || dt.ConnectionState != "Connected" || dt.LastActivityTime.IsZero() || dt.Status != "disabled" || dt.StatusUpdateTime.Equal(d.StatusUpdatedTime) {
		t.Fatalf("device twin after a sync and a disable: %+v (%d %s)", dt, status, body)
	}

	var mt twinDoc
	if status, body := ownerRequest(t, h, "GET", "/twins/d1/modules/m1", nil, &mt); status != 200 {
		t.Fatalf("GET module twin: %d %s", status, body)
	}
	if mt.ModuleID == nil || *mt.ModuleID != "m1" || mt.DeviceETag != m.ETag || mt.AuthenticationType != "sas" ||
		mt.ConnectionState != "Disconnected" || mt.X509Thumbprint == nil || mt.ModelID == nil || mt.Capabilities != nil {
		t.Fatalf("module twin: %+v\nwant IoT Hub's identity fields (module etag %s), no capabilities", mt, m.ETag)
	}
	// The twin's own clients still read it.
	if tw, err := c.GetTwin(ctx, "d1", "m1"); err != nil || tw.ETag != mt.ETag {
		t.Fatalf("hubclient GetTwin: %v, %v", tw, err)
	}
}

func TestRESTCreateDefaultsToLeafDevice(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	var leaf hubapi.Device
	if status, body := ownerRequest(t, h, "PUT", "/devices/leaf", []byte(`{"deviceId":"leaf"}`), &leaf); status != 200 {
		t.Fatalf("create: %d %s", status, body)
	}
	if leaf.Capabilities == nil || leaf.Capabilities.IoTEdge {
		t.Fatalf("a device created over REST without capabilities: %+v, want iotEdge false (IoT Hub's default)", leaf.Capabilities)
	}
	var mods []hubapi.Module
	if status, body := ownerRequest(t, h, "GET", "/devices/leaf/modules", nil, &mods); status != 200 || len(mods) != 0 {
		t.Fatalf("modules of a leaf device: %d %s, want none", status, body)
	}
	status, body := ownerRequest(t, h, "POST", "/devices/leaf/applyConfigurationContent", []byte(`{"modulesContent":{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{}}}}}`), nil)
	if status != 400 || !strings.Contains(body, `device \"leaf\" is not an IoT Edge device`) {
		t.Fatalf("deploy to a leaf device: %d %s, want 400 saying it is not an IoT Edge device", status, body)
	}
	// capabilities.iotEdge true: an edge device with its system modules.
	var edge hubapi.Device
	if status, body := ownerRequest(t, h, "PUT", "/devices/edge", []byte(`{"deviceId":"edge","capabilities":{"iotEdge":true}}`), &edge); status != 200 || edge.Capabilities == nil || !edge.Capabilities.IoTEdge {
		t.Fatalf("create an edge device: %d %s", status, body)
	}
	if status, body := ownerRequest(t, h, "GET", "/devices/edge/modules", nil, &mods); status != 200 || len(mods) != 2 || mods[0].ModuleID != registry.AgentModule || mods[1].ModuleID != registry.HubModule {
		t.Fatalf("modules of an edge device: %d %s, want %s and %s", status, body, registry.AgentModule, registry.HubModule)
	}
	// outpost's own client (and CLI) make edge devices by default.
	d, err := h.Client(t).CreateDevice(ctx, hubapi.Device{DeviceID: "byclient"})
	if err != nil || d.Capabilities == nil || !d.Capabilities.IoTEdge {
		t.Fatalf("hubclient CreateDevice: %+v %v, want an edge device", d.Capabilities, err)
	}
	// Neither a create again nor an update turns a leaf device into an edge device.
	status, body = ownerRequest(t, h, "PUT", "/devices/leaf", []byte(`{"deviceId":"leaf","capabilities":{"iotEdge":true}}`), nil)
	if status != 409 || !strings.Contains(body, "DeviceAlreadyExists") {
		t.Fatalf("create again: %d %s, want 409", status, body)
	}
	_, err = h.Client(t).UpdateDevice(ctx, hubapi.Device{DeviceID: "leaf", Capabilities: &hubapi.Capabilities{IoTEdge: true}}, "*")
	if err == nil || !strings.Contains(err.Error(), "capabilities.iotEdge is false and cannot change") {
		t.Fatalf("update a leaf device into an edge device: %v", err)
	}
}

// The Node SDK's registry.update({deviceId, status}) sends empty keys: the
// device keeps its keys, and with them its connection string.
func TestUpdateWithEmptyKeysKeepsThem(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	d, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	hdr := http.Header{"Authorization": {ownerAuth(t, h)}, "If-Match": {`"*"`}}
	body := []byte(`{"deviceId":"d1","status":"disabled","authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}}`)
	status, resp := h.RequestHeader(t, "PUT", "/devices/d1", "", hdr, body)
	if status != 200 {
		t.Fatalf("update: %d %s", status, resp)
	}
	var got hubapi.Device
	if err := json.Unmarshal([]byte(resp), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != "disabled" || *got.Authentication.SymmetricKey != *d.Authentication.SymmetricKey {
		t.Fatalf("after update: status %s keys %+v, want disabled and the keys unchanged %+v", got.Status, got.Authentication.SymmetricKey, d.Authentication.SymmetricKey)
	}
	// Enabled again, the device's own connection string still works.
	if _, err := c.UpdateDevice(ctx, hubapi.Device{DeviceID: "d1", Status: "enabled"}, "*"); err != nil {
		t.Fatal(err)
	}
	dev := h.ClientFor(t, h.DeviceConnectionString("d1", "", d.Authentication.SymmetricKey.PrimaryKey))
	if _, err := dev.GetDevice(ctx, "d1"); err != nil {
		t.Fatalf("the device's connection string after updates that gave no keys: %v", err)
	}
	// Modules too.
	m, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d1", ModuleID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	status, resp = h.RequestHeader(t, "PUT", "/devices/d1/modules/m1", "", hdr,
		[]byte(`{"deviceId":"d1","moduleId":"m1","managedBy":"me","authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}}`))
	var gm hubapi.Module
	if status != 200 || json.Unmarshal([]byte(resp), &gm) != nil || *gm.Authentication.SymmetricKey != *m.Authentication.SymmetricKey || gm.ManagedBy != "me" {
		t.Fatalf("module update with empty keys: %d %s, want keys %+v kept", status, resp, m.Authentication.SymmetricKey)
	}
}

type bulkResult struct {
	IsSuccessful bool `json:"isSuccessful"`
	Errors       []struct {
		DeviceID    string `json:"deviceId"`
		ErrorCode   string `json:"errorCode"`
		ErrorStatus string `json:"errorStatus"`
	} `json:"errors"`
	Warnings []any `json:"warnings"`
}

func bulk(t *testing.T, h *hubtest.Hub, body string) (int, bulkResult, string) {
	t.Helper()
	status, resp := ownerRequest(t, h, "POST", "/devices", []byte(body), nil)
	var res bulkResult
	if status == 200 || strings.Contains(resp, "isSuccessful") {
		if err := json.Unmarshal([]byte(resp), &res); err != nil {
			t.Fatalf("bulk answer: %v in %s", err, resp)
		}
	}
	return status, res, resp
}

func TestBulkDevices(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)

	status, res, resp := bulk(t, h, `[{"id":"a","importMode":"create"},{"id":"b","importMode":"create","status":"disabled"},{"id":"e","importMode":"create","capabilities":{"iotEdge":true}}]`)
	if status != 200 || !res.IsSuccessful || len(res.Errors) != 0 || res.Warnings == nil {
		t.Fatalf("bulk create: %d %s", status, resp)
	}
	a, err := c.GetDevice(ctx, "a")
	if err != nil || a.Status != "enabled" || a.Capabilities.IoTEdge {
		t.Fatalf("device a: %+v %v", a, err)
	}
	if e, err := c.GetDevice(ctx, "e"); err != nil || !e.Capabilities.IoTEdge {
		t.Fatalf("device e: %+v %v", e, err)
	}

	// Per-device errors: the others are applied all the same, and the answer is 400.
	status, res, resp = bulk(t, h, `[{"id":"a","importMode":"create"},{"id":"c","importMode":"Create"},{"id":"nope","importMode":"Update"},
		{"id":"b","importMode":"UpdateIfMatchETag","eTag":"bm9wZQ=="},{"id":"x","importMode":"create","status":"sleeping"}]`)
	if status != 400 || res.IsSuccessful {
		t.Fatalf("bulk with failures: %d %s, want 400 and isSuccessful false", status, resp)
	}
	want := map[string]string{"a": "DeviceAlreadyExists", "nope": "DeviceNotFound", "b": "PreconditionFailed", "x": "ArgumentInvalid"}
	if len(res.Errors) != len(want) {
		t.Fatalf("errors %+v, want %v", res.Errors, want)
	}
	for _, e := range res.Errors {
		if want[e.DeviceID] != e.ErrorCode || e.ErrorStatus == "" {
			t.Errorf("error %+v, want code %s and a message", e, want[e.DeviceID])
		}
	}
	if _, err := c.GetDevice(ctx, "c"); err != nil {
		t.Fatalf("device c of a batch with failures was not created: %v", err)
	}

	// Update (SDK's updateDevices with force): keys kept; etag-checked update and delete.
	b, _ := c.GetDevice(ctx, "b")
	status, res, resp = bulk(t, h, fmt.Sprintf(`[{"id":"a","importMode":"Update","status":"disabled","authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}},
		{"id":"b","importMode":"UpdateIfMatchETag","etag":%q,"status":"enabled"},{"id":"c","importMode":"Delete"}]`, b.ETag))
	if status != 200 || !res.IsSuccessful {
		t.Fatalf("bulk update and delete: %d %s", status, resp)
	}
	if got, _ := c.GetDevice(ctx, "a"); got.Status != "disabled" || *got.Authentication.SymmetricKey != *a.Authentication.SymmetricKey {
		t.Fatalf("a after bulk update: %+v, want disabled with its keys", got)
	}
	if got, _ := c.GetDevice(ctx, "b"); got.Status != "enabled" {
		t.Fatalf("b after bulk update: %s", got.Status)
	}
	if _, err := c.GetDevice(ctx, "c"); !errors.Is(err, hubclient.ErrNotFound) {
		t.Fatalf("c after bulk delete: %v", err)
	}

	var stats struct{ TotalDeviceCount, EnabledDeviceCount, DisabledDeviceCount int }
	if status, body := ownerRequest(t, h, "GET", "/statistics/devices", nil, &stats); status != 200 || stats.TotalDeviceCount != 3 || stats.EnabledDeviceCount != 2 || stats.DisabledDeviceCount != 1 {
		t.Fatalf("device statistics: %d %s, want 3 devices, 2 enabled, 1 disabled", status, body)
	}

	// Malformed requests change nothing and name what was wrong.
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf(`{"id":"n%d","importMode":"create"}`, i)
	}
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{"[" + strings.Join(many, ",") + "]", 413, "101 devices, at most 100"},
		{`[]`, 400, "empty"},
		{`{"id":"n1"}`, 400, "must be a JSON array"},
		{`[{"id":"n1","importMode":"create"},{"id":"n1","importMode":"delete"}]`, 400, `[1].id: device \"n1\" is already at [0]`},
		{`[{"id":"n1","importMode":"create"},{"id":"n2","importMode":"upsert"}]`, 400, `[1].importMode`},
		{`[{"id":"n1","importMode":"create"},{"importMode":"create"}]`, 400, `[1].id`},
		{`[{"id":"n1","importMode":"create"},{"id":"n2","importMode":"UpdateTwin"}]`, 400, `PATCH /twins/{id}`},
		{`[{"id":"n1","importMode":"create","tags":{"a":1}}]`, 400, "tags and properties are not imported"},
		{`[{"id":"n1","moduleId":"m","importMode":"create"}]`, 400, "[0].moduleId"},
	} {
		status, _, resp := bulk(t, h, tc.body)
		if status != tc.status || !strings.Contains(resp, tc.want) {
			t.Errorf("bulk %.60s: %d %s, want %d with %q", tc.body, status, resp, tc.status, tc.want)
		}
	}
	if _, err := c.GetDevice(ctx, "n1"); !errors.Is(err, hubclient.ErrNotFound) {
		t.Fatalf("a refused bulk request created a device: %v", err)
	}
}

func TestTwinLimitsOverREST(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	if _, err := h.Client(t).CreateDevice(ctx, hubapi.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	// IoT Hub's documented valid example.
	valid := `{"tags":{"one":{"two":{"three":{"four":{"five":{"six":{"seven":{"eight":{"nine":{"ten":{"property":"value"}}}}}}}}}}}}`
	if status, body := ownerRequest(t, h, "PATCH", "/twins/d1", []byte(valid), nil); status != 200 {
		t.Fatalf("IoT Hub's valid depth example: %d %s", status, body)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"tags":{"one":{"two":{"three":{"four":{"five":{"six":{"seven":{"eight":{"nine":{"ten":{"eleven":{"p":1}}}}}}}}}}}}}`, "tags.one.two.three.four.five.six.seven.eight.nine.ten.eleven: depth 11 exceeds 10"},
		{`{"properties":{"desired":{"n":4503599627370496}}}`, "properties.desired.n: integer 4503599627370496 is out of range"},
		{`{"properties":{"desired":{"a":[1,-4503599627370496]}}}`, "properties.desired.a[1]: integer -4503599627370496 is out of range"},
		{`{"properties":{"desired":{"f":1e400}}}`, "properties.desired.f: number 1e400 is not finite"},
	} {
		if status, body := ownerRequest(t, h, "PATCH", "/twins/d1", []byte(tc.body), nil); status != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("PATCH %s: %d %s, want 400 with %q", tc.body, status, body, tc.want)
		}
	}
	if status, body := ownerRequest(t, h, "PATCH", "/twins/d1", []byte(`{"properties":{"desired":{"n":4503599627370495,"m":-4503599627370495,"f":1.5e300}}}`), nil); status != 200 {
		t.Fatalf("numbers at the limits: %d %s", status, body)
	}
}
