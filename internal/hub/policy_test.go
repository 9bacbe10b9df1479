package hub_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
)

// works reports whether a fresh client for cs may list devices.
func works(t *testing.T, h *hubtest.Hub, cs string) error {
	t.Helper()
	_, err := h.ClientFor(t, cs).ListDevices(ctx)
	return err
}

func TestPolicyRotation(t *testing.T) {
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	old := h.ConnectionString
	oldCS, _ := identity.ParseConnectionString(old)
	d, err := h.Client(t).CreateDevice(ctx, hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}

	// A rotation replaces both keys: the old connection string is refused at
	// once, by the running hub, and the new one works.
	p, err := h.Client(t).RotatePolicy(ctx, "owner", false)
	if err != nil {
		t.Fatal(err)
	}
	if p.KeyName != "owner" || p.PrimaryKey == oldCS.SharedAccessKey || p.SecondaryKey == oldCS.SharedAccessKey || p.PrimaryKey == p.SecondaryKey {
		t.Fatalf("rotated policy: %+v", p)
	}
	if err := works(t, h, old); !errors.Is(err, hubclient.ErrUnauthorized) || !strings.Contains(err.Error(), "bad signature for policy owner") {
		t.Fatalf("the old owner connection string after a rotation: %v", err)
	}
	if err := works(t, h, p.ConnectionString); err != nil {
		t.Fatalf("the new owner connection string: %v", err)
	}
	creds, err := hub.ReadCredentials(dir)
	if err != nil || creds.ConnectionString != p.ConnectionString {
		t.Fatalf("credentials after the rotation: %v, %q, want %q", err, creds.ConnectionString, p.ConnectionString)
	}

	// With keepPrevious the old primary key stays valid as the secondary
	// key, until the next rotation.
	rolled, err := h.ClientFor(t, p.ConnectionString).RotatePolicy(ctx, "owner", true)
	if err != nil {
		t.Fatal(err)
	}
	if rolled.SecondaryKey != p.PrimaryKey || rolled.PrimaryKey == p.PrimaryKey {
		t.Fatalf("a rollover: %+v after %+v", rolled, p)
	}
	if err := works(t, h, p.ConnectionString); err != nil {
		t.Fatalf("the previous connection string during a rollover: %v", err)
	}
	if err := works(t, h, rolled.ConnectionString); err != nil {
		t.Fatalf("the new connection string during a rollover: %v", err)
	}
	last, err := h.ClientFor(t, rolled.ConnectionString).RotatePolicy(ctx, "owner", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range []string{p.ConnectionString, rolled.ConnectionString} {
		if err := works(t, h, cs); !errors.Is(err, hubclient.ErrUnauthorized) {
			t.Fatalf("an older connection string after the rollover ended: %v", err)
		}
	}

	// Who may rotate: not a device, not for a policy that does not exist.
	dc := h.ClientFor(t, h.DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey))
	if _, err := dc.RotatePolicy(ctx, "owner", false); !errors.Is(err, hubclient.ErrUnauthorized) {
		t.Fatalf("a device rotates the owner policy: %v", err)
	}
	if _, err := h.ClientFor(t, last.ConnectionString).RotatePolicy(ctx, "nobody", false); !errors.Is(err, hubclient.ErrNotFound) || !strings.Contains(err.Error(), `no shared access policy "nobody"`) {
		t.Fatalf("rotate an unknown policy: %v", err)
	}

	// The new keys are what a restarted hub knows.
	h.Stop()
	h2 := hubtest.Start(t, hubtest.Options{DataDir: dir})
	now, _ := identity.ParseConnectionString(h2.ConnectionString)
	if now.SharedAccessKey != last.PrimaryKey {
		t.Fatal("a restarted hub's credentials do not hold the rotated owner key")
	}
	if err := works(t, h2, h2.ConnectionString); err != nil {
		t.Fatalf("a restarted hub with its rotated owner key: %v", err)
	}
	oldKey := &identity.ConnectionString{HostName: h2.HostName(), SharedAccessKeyName: "owner", SharedAccessKey: oldCS.SharedAccessKey}
	if err := works(t, h2, oldKey.String()); !errors.Is(err, hubclient.ErrUnauthorized) {
		t.Fatalf("a restarted hub with the owner key of before the rotation: %v", err)
	}
}
