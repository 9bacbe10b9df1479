package hub_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/fulldisk"
	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

// TestFullDisk runs a hub whose data dir is on a full disk (a real tmpfs): a device create
// gets 507 naming the data dir and changes nothing, reads still work, the hub starts again
// on the full disk and serves reads, and once there is space the same create succeeds
// (no 409).
func TestFullDisk(t *testing.T) {
	hubtest.FileStoreOnly(t)
	mnt := fulldisk.Mount(t, "2m")
	data := filepath.Join(mnt, "hub")
	h := hubtest.Start(t, hubtest.Options{DataDir: data})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "before"}); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	fulldisk.Fill(t, filler, 4096) // room for the device record, not its agent module

	create := func() error {
		_, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "dev"})
		return err
	}
	err := create()
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != http.StatusInsufficientStorage ||
		!strings.Contains(he.Message, data) || !strings.Contains(he.Message, "free space") {
		t.Fatalf("create on a full disk: %v, want 507 naming %s", err, data)
	}
	t.Logf("full disk: %v", err)
	if _, err := c.GetDevice(ctx, "dev"); !errors.Is(err, hubclient.ErrNotFound) {
		t.Fatalf("the device after a refused create: %v", err)
	}
	if _, err := c.GetModule(ctx, "dev", "$edgeAgent"); err == nil {
		t.Fatal("the refused create left its agent module")
	}

	// A restart on a disk with no room at all comes up and serves reads.
	h.Stop()
	fulldisk.Fill(t, filler, 0)
	h = hubtest.Start(t, hubtest.Options{DataDir: data})
	c = h.Client(t)
	if _, err := c.GetDevice(ctx, "before"); err != nil {
		t.Fatalf("read after a restart on a full disk: %v", err)
	}

	os.Remove(filler)
	if err := create(); err != nil {
		t.Fatalf("the same create with space: %v", err)
	}
}

// TestFirstStartOnFullDisk starts a hub for the first time on a full disk: it fails,
// saying so, and leaves nothing, so that the start after space is freed is a first start.
func TestFirstStartOnFullDisk(t *testing.T) {
	mnt := fulldisk.Mount(t, "1m")
	data := filepath.Join(mnt, "hub")
	filler := filepath.Join(mnt, "filler")
	for _, room := range []int64{0, 4096, 8192} {
		fulldisk.Fill(t, filler, room)
		h, _, err := hub.Open(hub.Config{DataDir: data, Listen: "127.0.0.1:0"})
		if err == nil {
			h.Close()
			t.Fatalf("a first start with room for %d bytes succeeded", room)
		}
		if !strings.Contains(err.Error(), "no space left") {
			t.Errorf("room %d: %v, want it to say the disk is full", room, err)
		}
		if ents, _ := os.ReadDir(data); len(ents) != 0 {
			t.Fatalf("room %d: the failed first start left %v", room, ents)
		}
	}
	os.Remove(filler)
	h, show, err := hub.Open(hub.Config{DataDir: data, Listen: "127.0.0.1:0"})
	if err != nil || !show {
		t.Fatalf("first start with space: show %v, %v", show, err)
	}
	h.Close()
}
