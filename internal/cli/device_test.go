package cli

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
)

const (
	testKey1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of 32 bytes
	testKey2 = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

func TestDeviceCreateArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want deviceCreateOptions
		err  string
	}{
		{[]string{"d1"}, deviceCreateOptions{Device: "d1", Status: "enabled", Edge: true}, ""},
		{[]string{"d1", "--status", "disabled"}, deviceCreateOptions{Device: "d1", Status: "disabled", Edge: true}, ""},
		{[]string{"d1", "--primary-key", testKey1, "--secondary-key", testKey2}, deviceCreateOptions{Device: "d1", Status: "enabled", PrimaryKey: testKey1, SecondaryKey: testKey2, Edge: true}, ""},
		{[]string{"d1", "--edge=false"}, deviceCreateOptions{Device: "d1", Status: "enabled"}, ""},
		{[]string{}, deviceCreateOptions{}, "takes one device ID (got 0 arguments)"},
		{[]string{"d1", "d2"}, deviceCreateOptions{}, "takes one device ID (got 2 arguments)"},
		{[]string{"d1/m1"}, deviceCreateOptions{}, "want a device id alone"},
		{[]string{"d1", "--status", "off"}, deviceCreateOptions{}, `invalid --status "off": use enabled or disabled`},
		{[]string{"d1", "--primary-key", "not-a-key"}, deviceCreateOptions{}, "invalid --primary-key: key is not valid base64"},
		{[]string{"d1", "--secondary-key", "c2hvcnQ="}, deviceCreateOptions{}, "invalid --secondary-key"},
		{[]string{"d1", "--bogus"}, deviceCreateOptions{}, "unknown flag: --bogus"},
	} {
		var got *deviceCreateOptions
		ios, _, _, _ := TestIO()
		err := parseCmd(newDeviceCreateCmd(&Factory{IO: ios}, func(o *deviceCreateOptions) error { got = o; return nil }), tc.args...)
		if checkParseErr(t, tc.args, err, tc.err) && !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q: options %+v, want %+v", tc.args, *got, tc.want)
		}
	}
}

func TestDeviceIDArgs(t *testing.T) {
	ios, _, _, _ := TestIO()
	f := &Factory{IO: ios}
	for _, tc := range []struct {
		args []string
		want any
		err  string
	}{
		{[]string{"show", "d1"}, deviceShowOptions{Device: "d1"}, ""},
		{[]string{"show", "d1", "--show-keys"}, deviceShowOptions{Device: "d1", ShowKeys: true}, ""},
		{[]string{"show", "d1", "--connection-string"}, deviceShowOptions{Device: "d1", ConnectionString: true}, ""},
		{[]string{"show"}, nil, "takes one device ID"},
		{[]string{"show", "d1/m1"}, nil, "want a device id alone"},
		{[]string{"delete", "d1"}, deviceDeleteOptions{Device: "d1"}, ""},
		{[]string{"delete", "d1", "--if-match", "Mg=="}, deviceDeleteOptions{Device: "d1", IfMatch: "Mg=="}, ""},
		{[]string{"delete"}, nil, "takes one device ID"},
		{[]string{"list"}, deviceListOptions{}, ""},
		{[]string{"list", "d1"}, nil, "takes no arguments"},
	} {
		var got any
		var err error
		switch tc.args[0] {
		case "show":
			err = parseCmd(newDeviceShowCmd(f, func(o *deviceShowOptions) error { got = *o; return nil }), tc.args[1:]...)
		case "delete":
			err = parseCmd(newDeviceDeleteCmd(f, func(o *deviceDeleteOptions) error { got = *o; return nil }), tc.args[1:]...)
		case "list":
			err = parseCmd(newDeviceListCmd(f, func(o *deviceListOptions) error { got = *o; return nil }), tc.args[1:]...)
		}
		if checkParseErr(t, tc.args, err, tc.err) && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: options %+v, want %+v", tc.args, got, tc.want)
		}
	}
}

func TestDeviceCreate(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()

	code, out, errOut := run(t, "device", "create", "d1")
	if code != 0 || !strings.Contains(errOut, "created device d1") {
		t.Fatalf("device create: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	cs, err := identity.ParseConnectionString(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("device create printed %q: %v", out, err)
	}
	if cs.HostName != h.HostName() || cs.DeviceID != "d1" || cs.Kind() != identity.KindDevice || cs.UseInsecureHTTP {
		t.Errorf("device connection string %s", cs.Redacted())
	}
	// The string works: the device reads its own twin with it.
	if _, err := h.ClientFor(t, cs.String()).GetTwin(ctx, "d1", ""); err != nil {
		t.Errorf("the printed connection string does not authenticate: %v", err)
	}

	// show --connection-string prints the same string again.
	code, again, errOut := run(t, "device", "show", "d1", "--connection-string")
	if code != 0 || again != out {
		t.Errorf("show --connection-string: code %d, stdout %q (want %q), stderr %q", code, again, out, errOut)
	}
	code, again, _ = run(t, "device", "show", "d1", "--connection-string", "-o", "json")
	var shown struct{ DeviceID, ConnectionString string }
	if err := json.Unmarshal([]byte(again), &shown); code != 0 || err != nil || shown.DeviceID != "d1" || shown.ConnectionString != strings.TrimSpace(out) {
		t.Errorf("show --connection-string -o json: code %d, %v, %q", code, err, again)
	}
	if code, _, errOut := run(t, "device", "show", "d1", "--connection-string", "--show-keys"); code != ExitUsage || !strings.Contains(errOut, "show-keys") {
		t.Errorf("show --connection-string --show-keys: code %d, stderr %q", code, errOut)
	}
	if code, out, errOut := run(t, "device", "show", "nope", "--connection-string"); code != ExitNotFound || out != "" || !strings.Contains(errOut, "show device nope:") {
		t.Errorf("show --connection-string of a missing device: code %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, _, errOut = run(t, "device", "create", "d1")
	if code != ExitFailure || !strings.Contains(errOut, "create device d1:") || !strings.Contains(errOut, "already exists") || !strings.Contains(errOut, "outpost device show d1") {
		t.Errorf("duplicate: code %d, stderr %q", code, errOut)
	}

	code, out, _ = run(t, "device", "create", "d2", "--status", "disabled", "--primary-key", testKey1, "--secondary-key", testKey2, "-o", "json")
	var got struct {
		DeviceID         string
		Status           string
		ConnectionString string
		Authentication   struct {
			SymmetricKey struct{ PrimaryKey, SecondaryKey string }
		}
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("create -o json: code %d, %v, %q", code, err, out)
	}
	if got.DeviceID != "d2" || got.Status != "disabled" || got.Authentication.SymmetricKey.PrimaryKey != testKey1 ||
		got.Authentication.SymmetricKey.SecondaryKey != testKey2 || !strings.Contains(got.ConnectionString, "SharedAccessKey="+testKey1) {
		t.Errorf("create -o json: %s", out)
	}
	if d, err := h.Client(t).GetDevice(ctx, "d2"); err != nil || d.Status != "disabled" {
		t.Errorf("d2 on the hub: %+v, %v", d, err)
	}

	code, out, _ = run(t, "device", "create", "d3", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "deviceId: d3\n") || !strings.Contains(out, "connectionString: HostName=") {
		t.Errorf("create -o yaml: code %d, %q", code, out)
	}

	// Edge devices by default (d1 has its system module); --edge=false makes a leaf device.
	if d, err := h.Client(t).GetDevice(ctx, "d1"); err != nil || d.Capabilities == nil || !d.Capabilities.IoTEdge {
		t.Errorf("d1 on the hub: %+v, %v; want an IoT Edge device", d.Capabilities, err)
	}
	if code, _, errOut := run(t, "device", "create", "leaf", "--edge=false"); code != 0 {
		t.Fatalf("create --edge=false: code %d, stderr %q", code, errOut)
	}
	if d, err := h.Client(t).GetDevice(ctx, "leaf"); err != nil || d.Capabilities == nil || d.Capabilities.IoTEdge {
		t.Errorf("leaf on the hub: %+v, %v; want capabilities.iotEdge false", d.Capabilities, err)
	}
	if mods, err := h.Client(t).ListModules(ctx, "leaf"); err != nil || len(mods) != 0 {
		t.Errorf("modules of the leaf device: %+v, %v; want none", mods, err)
	}
}

func TestDeviceCreateInsecureHTTP(t *testing.T) {
	startHub(t, hubtest.Options{InsecureHTTP: true})
	code, out, errOut := run(t, "device", "create", "d1")
	if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), ";UseInsecureHttp=true") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestDeviceListShowDelete(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()

	code, out, errOut := run(t, "device", "list")
	if code != 0 || out != "" || !strings.Contains(errOut, "no devices") {
		t.Errorf("empty list: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ := run(t, "device", "list", "-o", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list -o json: code %d, %q", code, out)
	}

	d1 := mustCreateDevice(t, h, "d1")
	mustCreateDevice(t, h, "d2")
	key := d1.Authentication.SymmetricKey.PrimaryKey

	code, out, _ = run(t, "device", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "STATUS") ||
		!strings.Contains(lines[0], "CONNECTION") || !strings.HasPrefix(lines[1], "d1 ") || !strings.Contains(lines[1], "enabled") {
		t.Errorf("list: code %d, %q", code, out)
	}
	code, out, _ = run(t, "device", "list", "-o", "json")
	var list []struct {
		DeviceID       string
		Authentication struct{ SymmetricKey struct{ PrimaryKey string } }
	}
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 2 || list[0].DeviceID != "d1" {
		t.Errorf("list -o json: code %d, %v, %q", code, err, out)
	}
	if strings.Contains(out, key) || list[0].Authentication.SymmetricKey.PrimaryKey != redacted {
		t.Errorf("list -o json shows keys: %q", out)
	}

	code, out, _ = run(t, "device", "show", "d1")
	if code != 0 || !strings.Contains(out, "device:") || !strings.Contains(out, "d1") || !strings.Contains(out, "etag:") ||
		strings.Contains(out, key) || !strings.Contains(out, "primary key:     <redacted>") {
		t.Errorf("show: code %d, %q", code, out)
	}
	if code, out, _ := run(t, "device", "show", "d1", "--show-keys"); code != 0 || !strings.Contains(out, key) {
		t.Errorf("show --show-keys: code %d, %q", code, out)
	}
	if code, out, _ := run(t, "device", "show", "d1", "-o", "json"); code != 0 || strings.Contains(out, key) || !strings.Contains(out, `"deviceId": "d1"`) {
		t.Errorf("show -o json: code %d, %q", code, out)
	}
	if code, out, _ := run(t, "device", "show", "d1", "-o", "yaml", "--show-keys"); code != 0 || !strings.Contains(out, "primaryKey: "+key) {
		t.Errorf("show -o yaml --show-keys: code %d, %q", code, out)
	}
	code, out, errOut = run(t, "device", "show", "nope")
	if code != ExitNotFound || out != "" || !strings.Contains(errOut, "show device nope:") || !strings.Contains(errOut, "outpost device list") {
		t.Errorf("show missing: code %d, stdout %q, stderr %q", code, out, errOut)
	}

	// A stale etag: 4, and the device stays.
	cur, err := h.Client(t).GetDevice(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client(t).UpdateDevice(ctx, cur, cur.ETag); err != nil { // bumps the etag
		t.Fatal(err)
	}
	code, _, errOut = run(t, "device", "delete", "d1", "--if-match", cur.ETag)
	if code != ExitPrecondition || !strings.Contains(errOut, "delete device d1:") || !strings.Contains(errOut, "read it again") {
		t.Errorf("delete with a stale etag: code %d, stderr %q", code, errOut)
	}
	if _, err := h.Client(t).GetDevice(ctx, "d1"); err != nil {
		t.Errorf("d1 after a refused delete: %v", err)
	}
	now, _ := h.Client(t).GetDevice(ctx, "d1")
	code, out, errOut = run(t, "device", "delete", "d1", "--if-match", now.ETag)
	if code != 0 || out != "" || !strings.Contains(errOut, "deleted device d1") {
		t.Errorf("delete: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := h.Client(t).GetDevice(ctx, "d1"); !isNotFound(err) {
		t.Errorf("d1 after delete: %v", err)
	}
	code, _, errOut = run(t, "device", "delete", "d1")
	if code != ExitNotFound || !strings.Contains(errOut, "not found") {
		t.Errorf("delete again: code %d, stderr %q", code, errOut)
	}
	code, out, _ = run(t, "device", "rm", "d2", "-o", "json")
	var res doneResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res != (doneResult{Action: "deleted", DeviceID: "d2"}) {
		t.Errorf("device rm d2 -o json: code %d, stdout %q (%v)", code, out, err)
	}
}

func isNotFound(err error) bool { return errors.Is(err, hubclient.ErrNotFound) }
