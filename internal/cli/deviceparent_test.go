package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

func TestDeviceParent(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	if code, _, errOut := run(t, "device", "create", "gw"); code != 0 {
		t.Fatalf("create gw: %d %s", code, errOut)
	}
	code, _, errOut := run(t, "device", "create", "s1", "--edge=false", "--parent", "gw")
	if code != 0 {
		t.Fatalf("create s1 --parent gw: %d %s", code, errOut)
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

	code, out, _ := run(t, "device", "list")
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
