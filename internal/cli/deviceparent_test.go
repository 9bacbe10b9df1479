package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/identity"
)

func TestDeviceParent(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	if code, _, errOut := run(t, "device", "create", "gw"); code != 0 {
		t.Fatalf("create gw: %d %s", code, errOut)
	}
	code, out, errOut := run(t, "device", "create", "s1", "--edge=false", "--parent", "gw")
	if code != 0 || strings.Contains(out, "GatewayHostName") || !strings.Contains(errOut, "--gateway-hostname adds it") {
		t.Fatalf("create s1 --parent gw: %d %s\n%s", code, out, errOut)
	}
	// The leaf's connection string with its edge device's name, for the
	// Azure SDKs and deviceclient.
	code, out, errOut = run(t, "device", "show", "s1", "--connection-string", "--gateway-hostname", "gw.local")
	cs, err := identity.ParseConnectionString(strings.TrimSpace(out))
	if code != 0 || err != nil || cs.GatewayHostName != "gw.local" || cs.DeviceID != "s1" || cs.SharedAccessKey == "" {
		t.Fatalf("show s1 --connection-string --gateway-hostname gw.local: %d %v %q %s", code, err, out, errOut)
	}
	code, out, _ = run(t, "device", "create", "s3", "--edge=false", "--parent", "gw", "--gateway-hostname", "10.0.0.7")
	if cs, err := identity.ParseConnectionString(strings.TrimSpace(out)); code != 0 || err != nil || cs.GatewayHostName != "10.0.0.7" {
		t.Fatalf("create s3 --gateway-hostname 10.0.0.7: %d %v %q", code, err, out)
	}
	for _, args := range [][]string{
		{"device", "show", "s1", "--gateway-hostname", "gw.local"},
		{"device", "show", "s1", "--connection-string", "--gateway-hostname", "gw.local:8883"},
		{"device", "create", "s4", "--gateway-hostname", "a b"},
	} {
		if code, _, errOut := run(t, args...); code != ExitUsage || !strings.Contains(errOut, "--gateway-hostname") {
			t.Errorf("%v: exit %d, %s", args, code, errOut)
		}
	}
	gw, err := h.Client(t).GetDevice(ctx, "gw")
	if err != nil {
		t.Fatal(err)
	}
	s1, err := h.Client(t).GetDevice(ctx, "s1")
	if err != nil || s1.DeviceScope != gw.DeviceScope || s1.ParentID() != "gw" {
		t.Fatalf("s1 at the hub: scope %q (gw's %q), %v", s1.DeviceScope, gw.DeviceScope, err)
	}
	// A nested edge device: its parent is in parentScopes.
	if code, _, errOut := run(t, "device", "create", "gw2", "--parent", "gw"); code != 0 {
		t.Fatalf("create gw2 --parent gw: %d %s", code, errOut)
	}

	code, out, _ = run(t, "device", "list")
	rows := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		rows[f[0]] = f[len(f)-1]
	}
	if code != 0 || rows["ID"] != "PARENT" || rows["s1"] != "gw" || rows["gw2"] != "gw" || rows["gw"] != "-" {
		t.Fatalf("list: code %d\n%s", code, out)
	}
	if code, out, _ := run(t, "device", "show", "s1"); code != 0 || !strings.Contains(out, "parent:") || !strings.Contains(out, "gw\n") {
		t.Errorf("show s1: %d\n%s", code, out)
	}

	// set-parent: move, remove, and the refusals.
	if code, _, errOut := run(t, "device", "set-parent", "s1", "gw2"); code != 0 || !strings.Contains(errOut, "s1 is a child of gw2") {
		t.Fatalf("set-parent s1 gw2: %d %s", code, errOut)
	}
	if d, _ := h.Client(t).GetDevice(ctx, "s1"); d.ParentID() != "gw2" {
		t.Fatalf("s1's parent after set-parent: %q", d.ParentID())
	}
	if code, _, errOut := run(t, "device", "set-parent", "s1", "--none"); code != 0 || !strings.Contains(errOut, "no parent") {
		t.Fatalf("set-parent --none: %d %s", code, errOut)
	}
	if d, _ := h.Client(t).GetDevice(ctx, "s1"); d.ParentID() != "" || d.DeviceScope != "" {
		t.Fatalf("s1 after --none: %q %q", d.DeviceScope, d.ParentScopes)
	}
	if code, _, errOut := run(t, "device", "set-parent", "gw2", "--none"); code != 0 {
		t.Fatalf("set-parent gw2 --none: %d %s", code, errOut)
	}
	if d, _ := h.Client(t).GetDevice(ctx, "gw2"); d.ParentID() != "" || !strings.HasPrefix(d.DeviceScope, "ms-azure-iot-edge://gw2-") {
		t.Fatalf("gw2 after --none: %q %q", d.DeviceScope, d.ParentScopes)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"device", "set-parent", "s1", "s1"}, ExitUsage, "its own parent"},
		{[]string{"device", "set-parent", "s1"}, ExitUsage, "--none"},
		{[]string{"device", "set-parent", "s1", "gw", "--none"}, ExitUsage, "not both"},
		{[]string{"device", "set-parent", "gw2", "s1"}, ExitFailure, "leaf device and cannot be a parent"},
		{[]string{"device", "set-parent", "s1", "nope"}, ExitFailure, "parent device nope not found"},
		{[]string{"device", "set-parent", "gw", "gw2"}, 0, ""},
		{[]string{"device", "set-parent", "gw2", "gw"}, ExitFailure, "under itself"},
		{[]string{"device", "create", "s2", "--edge=false", "--parent", "s1"}, ExitFailure, "cannot be a parent"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: code %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.want)
		}
	}
}
