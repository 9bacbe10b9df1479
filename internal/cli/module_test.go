package cli

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/identity"
)

func TestModuleArgs(t *testing.T) {
	ios, _, _, _ := TestIO()
	f := &Factory{IO: ios}
	m1 := target{Device: "d1", Module: "m1"}
	for _, tc := range []struct {
		args []string
		want any
		err  string
	}{
		{[]string{"create", "d1/m1"}, moduleCreateOptions{Target: m1}, ""},
		{[]string{"create", "d1/$edgeAgent"}, moduleCreateOptions{Target: target{Device: "d1", Module: "$edgeAgent"}}, ""},
		{[]string{"create", "d1/m1", "--managed-by", "iotedge", "--primary-key", testKey1}, moduleCreateOptions{Target: m1, ManagedBy: "iotedge", PrimaryKey: testKey1}, ""},
		{[]string{"create", "d1"}, nil, `invalid DEVICE/MODULE "d1": want DEVICE/MODULE`},
		{[]string{"create"}, nil, "takes one DEVICE/MODULE (got 0 arguments)"},
		{[]string{"create", "d1/m1", "--secondary-key", "x"}, nil, "invalid --secondary-key"},
		{[]string{"list", "d1"}, moduleListOptions{Device: "d1"}, ""},
		{[]string{"list", "d1/m1"}, nil, "want a device id alone"},
		{[]string{"list"}, nil, "takes one DEVICE"},
		{[]string{"show", "d1/m1"}, moduleShowOptions{Target: m1}, ""},
		{[]string{"show", "d1/m1", "--show-keys"}, moduleShowOptions{Target: m1, ShowKeys: true}, ""},
		{[]string{"show", "d1/m1", "--connection-string"}, moduleShowOptions{Target: m1, ConnectionString: true}, ""},
		{[]string{"show", "d1/m1/x"}, nil, "want one '/'"},
		{[]string{"delete", "d1/m1", "--if-match", "Mw=="}, moduleDeleteOptions{Target: m1, IfMatch: "Mw=="}, ""},
		{[]string{"delete", "d1/"}, nil, "the module id is empty"},
	} {
		var got any
		var err error
		switch tc.args[0] {
		case "create":
			err = parseCmd(newModuleCreateCmd(f, func(o *moduleCreateOptions) error { got = *o; return nil }), tc.args[1:]...)
		case "list":
			err = parseCmd(newModuleListCmd(f, func(o *moduleListOptions) error { got = *o; return nil }), tc.args[1:]...)
		case "show":
			err = parseCmd(newModuleShowCmd(f, func(o *moduleShowOptions) error { got = *o; return nil }), tc.args[1:]...)
		case "delete":
			err = parseCmd(newModuleDeleteCmd(f, func(o *moduleDeleteOptions) error { got = *o; return nil }), tc.args[1:]...)
		}
		if checkParseErr(t, tc.args, err, tc.err) && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: options %+v, want %+v", tc.args, got, tc.want)
		}
	}
}

func TestModuleCommands(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	mustCreateDevice(t, h, "d1")

	code, out, errOut := run(t, "module", "create", "d1/m1")
	if code != 0 || !strings.Contains(errOut, "created module d1/m1") {
		t.Fatalf("module create: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	cs, err := identity.ParseConnectionString(strings.TrimSpace(out))
	if err != nil || cs.HostName != h.HostName() || cs.DeviceID != "d1" || cs.ModuleID != "m1" {
		t.Fatalf("module create printed %q: %v", out, err)
	}
	if _, err := h.ClientFor(t, cs.String()).GetTwin(ctx, "d1", "m1"); err != nil {
		t.Errorf("the module's connection string does not authenticate: %v", err)
	}

	// show --connection-string prints the same string again.
	code, again, errOut := run(t, "module", "show", "d1/m1", "--connection-string")
	if code != 0 || again != out {
		t.Errorf("show --connection-string: code %d, stdout %q (want %q), stderr %q", code, again, out, errOut)
	}
	code, again, _ = run(t, "module", "show", "d1/m1", "--connection-string", "-o", "yaml")
	if code != 0 || !strings.Contains(again, "moduleId: m1\n") || !strings.Contains(again, "connectionString: "+strings.TrimSpace(out)+"\n") {
		t.Errorf("show --connection-string -o yaml: code %d, %q", code, again)
	}

	code, _, errOut = run(t, "module", "create", "d1/m1")
	if code != ExitFailure || !strings.Contains(errOut, "already exists") || !strings.Contains(errOut, "outpost module show d1/m1") {
		t.Errorf("duplicate: code %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, "module", "create", "nope/m1")
	if code != ExitNotFound || !strings.Contains(errOut, "create module nope/m1:") || !strings.Contains(errOut, "outpost device create nope") {
		t.Errorf("on a missing device: code %d, stderr %q", code, errOut)
	}
	code, out, _ = run(t, "module", "create", "d1/m2", "--managed-by", "ci", "--primary-key", testKey1, "-o", "json")
	var created struct {
		ModuleID, ManagedBy, ConnectionString string
	}
	if err := json.Unmarshal([]byte(out), &created); code != 0 || err != nil || created.ModuleID != "m2" || created.ManagedBy != "ci" ||
		created.ConnectionString != "HostName="+h.HostName()+";DeviceId=d1;ModuleId=m2;SharedAccessKey="+testKey1 {
		t.Errorf("create -o json: code %d, %v, %q", code, err, out)
	}

	code, out, _ = run(t, "module", "list", "d1")
	if code != 0 || !strings.HasPrefix(out, "MODULE ") || !strings.Contains(out, "\nm1 ") || !strings.Contains(out, "\nm2 ") || !strings.Contains(out, "ci") {
		t.Errorf("list: code %d, %q", code, out)
	}
	code, out, _ = run(t, "module", "list", "d1", "-o", "json")
	var mods []struct{ ModuleID string }
	if err := json.Unmarshal([]byte(out), &mods); code != 0 || err != nil || len(mods) < 2 || strings.Contains(out, testKey1) {
		t.Errorf("list -o json: code %d, %v, %q", code, err, out)
	}
	code, _, errOut = run(t, "module", "list", "nope")
	if code != ExitNotFound || !strings.Contains(errOut, "list modules of nope:") || !strings.Contains(errOut, "outpost device list") {
		t.Errorf("list on a missing device: code %d, stderr %q", code, errOut)
	}

	code, out, _ = run(t, "module", "show", "d1/m2")
	if code != 0 || !strings.Contains(out, "d1/m2") || strings.Contains(out, testKey1) || !strings.Contains(out, redacted) {
		t.Errorf("show: code %d, %q", code, out)
	}
	if code, out, _ := run(t, "module", "show", "d1/m2", "--show-keys", "-o", "json"); code != 0 || !strings.Contains(out, testKey1) {
		t.Errorf("show --show-keys -o json: code %d, %q", code, out)
	}
	code, _, errOut = run(t, "module", "show", "d1/zz")
	if code != ExitNotFound || !strings.Contains(errOut, "show module d1/zz:") || !strings.Contains(errOut, "outpost module list d1") {
		t.Errorf("show missing: code %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, "module", "show", "zz/m1")
	if code != ExitNotFound || !strings.Contains(errOut, "outpost device list") {
		t.Errorf("show on a missing device: code %d, stderr %q", code, errOut)
	}

	m1, err := h.Client(t).GetModule(ctx, "d1", "m1")
	if err != nil {
		t.Fatal(err)
	}
	stale := "OTk5" // base64 of "999": a well-formed etag the module never had
	code, _, errOut = run(t, "module", "delete", "d1/m1", "--if-match", stale)
	if code != ExitPrecondition || !strings.Contains(errOut, "delete module d1/m1:") {
		t.Errorf("delete with a stale etag: code %d, stderr %q", code, errOut)
	}
	if _, err := h.Client(t).GetModule(ctx, "d1", "m1"); err != nil {
		t.Errorf("m1 after a refused delete: %v", err)
	}
	code, out, errOut = run(t, "module", "delete", "d1/m1", "--if-match", m1.ETag, "-o", "yaml")
	if code != 0 || !strings.Contains(errOut, "deleted module d1/m1") || out != "action: deleted\ndeviceId: d1\nmoduleId: m1\n" {
		t.Errorf("delete -o yaml: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := h.Client(t).GetModule(ctx, "d1", "m1"); !isNotFound(err) {
		t.Errorf("m1 after delete: %v", err)
	}
	code, _, _ = run(t, "module", "delete", "d1/m1")
	if code != ExitNotFound {
		t.Errorf("delete again: code %d", code)
	}
}
