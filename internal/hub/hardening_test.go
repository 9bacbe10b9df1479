package hub_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
)

// ownerAuth is a fresh owner token of h.
func ownerAuth(t testing.TB, h *hubtest.Hub) string {
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
		{"DELETE", "/devices/d/modules/$edgeAgent", `module id "$edgeAgent": ids starting with '$' are reserved`},
		{"DELETE", "/devices/d/modules/$agent", `module id "$edgeAgent": ids starting with '$' are reserved`}, // the old name
	} {
		status, body := raw(t, h, tc.method, tc.path, auth, []byte(`{}`))
		expectError(t, status, body, 400, tc.want)
	}
	// The system module is still there and readable, its twin too.
	if _, err := c.GetModule(ctx, "d", "$edgeAgent"); err != nil {
		t.Fatalf("$edgeAgent after the refused delete: %v", err)
	}
	if _, err := c.GetTwin(ctx, "d", "$edgeAgent"); err != nil {
		t.Fatalf("$edgeAgent twin: %v", err)
	}
	mods, err := c.ListModules(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		if m.ModuleID != "$edgeAgent" && m.ModuleID != "$edgeHub" {
			t.Fatalf("module %q was created", m.ModuleID)
		}
	}
}

// tokenReq asks pythonTokens for one token.
type tokenReq struct {
	Host      string `json:"host"`
	Device    string `json:"device"`
	Module    string `json:"module"`
	Key       string `json:"key"`
	NodeStyle bool   `json:"node"`
}

// pythonTokens mints SAS tokens with Python's own hmac, base64 and
// urllib.parse, as Azure's Python SDK does: the resource host/devices/{id}
// [/modules/{mid}] url-encoded once (quote, safe=""). With NodeStyle the ids
// are first encoded on their own (encodeURIComponent's strict form, as
// Microsoft's Node SDK does) and then the whole resource again.
func pythonTokens(t *testing.T, reqs ...tokenReq) []string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("python3 is not installed: %v", err)
	}
	const script = `
import base64, hashlib, hmac, json, sys, time, urllib.parse as up
for line in sys.stdin:
    r = json.loads(line)
    enc = (lambda s: up.quote(s, safe="")) if r["node"] else (lambda s: s)
    res = r["host"] + "/devices/" + enc(r["device"])
    if r["module"]:
        res += "/modules/" + enc(r["module"])
    sr = up.quote(res, safe="")
    se = str(int(time.time()) + 3600)
    mac = hmac.new(base64.b64decode(r["key"]), (sr + "\n" + se).encode(), hashlib.sha256)
    sig = base64.b64encode(mac.digest()).decode()
    print("SharedAccessSignature sr=" + sr + "&sig=" + up.quote(sig, safe="") + "&se=" + se)
`
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, r := range reqs {
		enc.Encode(r)
	}
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	toks := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(toks) != len(reqs) {
		t.Fatalf("python3 minted %d tokens for %d requests", len(toks), len(reqs))
	}
	return toks
}

// TestTokensForIDsOfEveryAllowedCharacter signs device and module tokens
// with Python's HMAC for ids made of the whole allowed character set, %XX
// sequences included, and uses them on the real hub over HTTPS.
func TestTokensForIDsOfEveryAllowedCharacter(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	ids := []string{
		"A-Za-z0-9-:.+%_#*?!(),=@$'",
		"a%41",     // an id that reads "aA" when decoded twice
		"aA",       // … and that id itself
		"a%3Ab",    // Node's SDK encodes "a:b" to this before signing
		"a:b",      // … and that id itself
		"%25%2541", // escapes of escapes
		"100%",
		"%zz%4",
		"%2e%2e",
		"$dev",
	}
	type ident struct{ device, module, key string }
	var idents []ident
	for _, id := range ids {
		d, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: id})
		if err != nil {
			t.Fatalf("create device %q: %v", id, err)
		}
		idents = append(idents, ident{id, "", d.Authentication.SymmetricKey.PrimaryKey})
		mid := "m" + id // module ids may not start with '$'
		m, err := c.CreateModule(ctx, hubapi.Module{DeviceID: id, ModuleID: mid})
		if err != nil {
			t.Fatalf("create module %q/%q: %v", id, mid, err)
		}
		idents = append(idents, ident{id, mid, m.Authentication.SymmetricKey.SecondaryKey})
	}
	var reqs []tokenReq
	for _, id := range idents {
		for _, nodeStyle := range []bool{false, true} {
			reqs = append(reqs, tokenReq{h.HostName(), id.device, id.module, id.key, nodeStyle})
		}
	}
	// A token is only ever taken for an identity whose key signed it: one
	// for "a%41" signed with the key of "aA" is aA's (as Node's SDK signs for
	// aA), and one for "aA" signed with the key of "a%41" is nobody's.
	keyOf := map[string]string{}
	for _, id := range idents {
		if id.module == "" {
			keyOf[id.device] = id.key
		}
	}
	reqs = append(reqs, tokenReq{h.HostName(), "a%41", "", keyOf["aA"], false}, tokenReq{h.HostName(), "aA", "", keyOf["a%41"], true})
	toks := pythonTokens(t, reqs...)
	for i, r := range reqs[:len(reqs)-2] {
		path := "/devices/" + url.PathEscape(r.Device)
		if r.Module != "" {
			path = "/twins/" + url.PathEscape(r.Device) + "/modules/" + url.PathEscape(r.Module)
		}
		status, body := raw(t, h, "GET", path, toks[i], nil)
		if status != 200 {
			t.Errorf("%s/%s (node style %v): GET %s: %d %s", r.Device, r.Module, r.NodeStyle, path, status, body)
			continue
		}
		var got struct{ DeviceID, ModuleID string }
		if err := json.Unmarshal([]byte(body), &got); err != nil || got.DeviceID != r.Device || got.ModuleID != r.Module {
			t.Errorf("%s/%s: answered %s", r.Device, r.Module, body)
		}
	}
	status, body := raw(t, h, "GET", "/devices/a%2541", toks[len(toks)-2], nil)
	expectError(t, status, body, 401, `device aA may not read device a%41`)
	if status, body := raw(t, h, "GET", "/devices/aA", toks[len(toks)-2], nil); status != 200 {
		t.Fatalf("aA's token for a%%41, Node style: %d %s", status, body)
	}
	status, body = raw(t, h, "GET", "/devices/aA", toks[len(toks)-1], nil)
	expectError(t, status, body, 401, `bad signature for device aA`)
}

// rawWithHost is raw with the request's Host header set to host.
func rawWithHost(t *testing.T, h *hubtest.Hub, method, path, auth, host string) (int, string) {
	t.Helper()
	return h.Request(t, method, path, auth, host, nil)
}

// TestTokenHostIsTheHubs: a token's host must be the hub's host name or one
// of its --san names, whatever Host header the request carries.
func TestTokenHostIsTheHubs(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{SANs: []string{"hub.example", "10.9.8.7"}})
	d, err := h.Client(t).CreateDevice(ctx, hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := identity.ParseConnectionString(h.ConnectionString)
	_, port, _ := net.SplitHostPort(h.HostName())
	sign := func(resource, key, skn string) string {
		tok, err := identity.NewSAS(resource, key, time.Now().Add(time.Hour), skn)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	devKey := d.Authentication.SymmetricKey.PrimaryKey
	for _, host := range []string{h.HostName(), "hub.example:" + port, "HUB.example:" + port, "10.9.8.7:" + port} {
		for _, auth := range []string{sign(host, owner.SharedAccessKey, "owner"), sign(host+"/devices/d", devKey, "")} {
			if status, body := rawWithHost(t, h, "GET", "/devices/d", auth, host); status != 200 {
				t.Errorf("token for %s: %d %s", host, status, body)
			}
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "evil.example:" + port, "hub.example", "hub.example:1" + port, "localhost"} {
		for _, auth := range []string{sign(host, owner.SharedAccessKey, "owner"), sign(host+"/devices/d", devKey, "")} {
			// The request names the token's host, as a client of another hub would.
			status, body := rawWithHost(t, h, "GET", "/devices/d", auth, host)
			expectError(t, status, body, 401, fmt.Sprintf("wrong resource: the token is for host %q, not this hub (%s, hub.example:%s, 10.9.8.7:%s)", host, h.HostName(), port, port))
		}
	}
}

// TestStrictJSONBodies: every JSON body the hub reads refuses invalid UTF-8
// and duplicate keys with a 400 that names the JSON path, and changes nothing.
func TestStrictJSONBodies(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	d, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	before, err := c.GetTwin(ctx, "d", "m")
	if err != nil {
		t.Fatal(err)
	}
	auth := ownerAuth(t, h)
	for _, tc := range []struct{ method, path, body, want string }{
		{"PATCH", "/twins/d/modules/m", `{"properties":{"desired":{"a":1,"a":2}}}`, "properties.desired.a: duplicate key"},
		{"PATCH", "/twins/d/modules/m", `{"properties":{"desired":{"a":"x` + "\xff" + `"}}}`, "properties.desired.a: string is not valid UTF-8"},
		{"PATCH", "/twins/d/modules/m", `{"tags":{"k` + "\xfe" + `":1}}`, `tags: key "k"… is not valid UTF-8`},
		{"PATCH", "/twins/d/modules/m", `{"tags":{"t":"\udc00"}}`, `tags.t: string holds an unpaired UTF-16 surrogate`},
		{"PUT", "/twins/d/modules/m", `{"tags":{"t":1},"tags":{}}`, "tags: duplicate key"},
		{"PATCH", "/twins/d", `{"properties":{"desired":{"x":[{"y":1,"y":1}]}}}`, "properties.desired.x[0].y: duplicate key"},
		{"PUT", "/devices/e", `{"deviceId":"e","status":"enabled","status":"disabled"}`, "status: duplicate key"},
		{"PUT", "/devices/d/modules/n", `{"managedBy":"` + "\xff" + `"}`, "managedBy: string is not valid UTF-8"},
		{"POST", "/devices/d/applyConfigurationContent", `{"modulesContent":{"$edgeAgent":{},"$edgeAgent":{}}}`, `modulesContent["$edgeAgent"]: duplicate key`},
	} {
		status, body := raw(t, h, tc.method, tc.path, auth, []byte(tc.body))
		expectError(t, status, body, 400, tc.want)
	}
	after, err := c.GetTwin(ctx, "d", "m")
	if err != nil || after.ETag != before.ETag {
		t.Fatalf("a refused body changed the twin: %v", err)
	}
	if _, err := c.GetDevice(ctx, "e"); err == nil {
		t.Fatal("a refused body created a device")
	}
	// The device's own reported patches are checked as strictly.
	devAuth, err := identity.NewSAS(identity.DeviceResource(h.HostName(), "d"), d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	status, body := raw(t, h, "POST", "/outpost/v1/devices/d/reported", devAuth, []byte(`{"patches":[{"seq":1,"moduleId":"m","patch":{"r":1,"r":2}}]}`))
	expectError(t, status, body, 400, "patches[0].patch.r: duplicate key")
	dc := h.ClientFor(t, h.DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey))
	if _, err := dc.PatchTwin(ctx, "d", "m", []byte(`{"properties":{"reported":{"r":"`+"\xc0"+`"}}}`), ""); err == nil || !strings.Contains(err.Error(), "properties.reported.r: string is not valid UTF-8") {
		t.Fatalf("a device's reported patch with invalid UTF-8: %v", err)
	}
}
