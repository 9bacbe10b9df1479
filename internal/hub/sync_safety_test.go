package hub_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

// deviceWithKey makes device id with a key of the test's choosing, so that it
// can be created again with the same credentials.
func deviceWithKey(t *testing.T, h *hubtest.Hub, id, key string, modules ...string) *hubclient.Client {
	t.Helper()
	c := h.Client(t)
	_, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: id, Authentication: &hubapi.Authentication{
		Type: "sas", SymmetricKey: &hubapi.SymmetricKey{PrimaryKey: key, SecondaryKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range modules {
		if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: id, ModuleID: m}); err != nil {
			t.Fatal(err)
		}
	}
	return h.ClientFor(t, h.DeviceConnectionString(id, "", key))
}

const testKey = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleXRlc3Q="

func upload(t *testing.T, dc *hubclient.Client, session string, seq int64, module, patch string) *hubapi.ReportedAck {
	t.Helper()
	ack, err := dc.UploadReported(ctx, "d", hubapi.ReportedBatch{Session: session,
		Patches: []hubapi.ReportedPatch{{Seq: seq, ModuleID: module, Patch: json.RawMessage(patch)}}})
	if err != nil {
		t.Fatalf("upload seq %d of session %q: %v", seq, session, err)
	}
	return ack
}

func reported(t *testing.T, h *hubtest.Hub, module string) string {
	t.Helper()
	tw, err := h.Client(t).GetTwin(ctx, "d", module)
	if err != nil {
		t.Fatal(err)
	}
	return string(tw.ReportedJSON())
}

// TestReportedSeqsAreScopedToSession: a device that numbers its patches anew
// (a daemon on a wiped data dir, a device identity created again) has them
// applied, and an absurd seq cannot poison the device.
func TestReportedSeqsAreScopedToSession(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := deviceWithKey(t, h, "d", testKey, "m")
	for i := int64(1); i <= 3; i++ {
		upload(t, dc, "first", i, "m", `{"n":`+strconv.FormatInt(i, 10)+`}`)
	}
	if got := reported(t, h, "m"); got != `{"n":3}` {
		t.Fatalf("reported %s", got)
	}

	// A wiped data dir: a new session, numbering from 1 again.
	if ack := upload(t, dc, "second", 1, "m", `{"n":10}`); ack.Acked != 1 {
		t.Fatalf("ack %+v", ack)
	}
	if got := reported(t, h, "m"); got != `{"n":10}` {
		t.Fatalf("a new session's seq 1 was dropped: reported %s", got)
	}

	// Absurd seqs are refused with the path to the culprit, and change nothing.
	for _, seq := range []int64{1<<63 - 1, hubapi.MaxSeq + 1, 0, -5} {
		_, err := dc.UploadReported(ctx, "d", hubapi.ReportedBatch{Session: "second",
			Patches: []hubapi.ReportedPatch{{Seq: seq, ModuleID: "m", Patch: json.RawMessage(`{"n":666}`)}}})
		if err == nil || !strings.Contains(err.Error(), "patches[0].seq") {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
	if ack := upload(t, dc, "second", 2, "m", `{"n":11}`); ack.Acked != 2 {
		t.Fatalf("after the absurd seqs: ack %+v", ack)
	}
	if _, err := dc.UploadReported(ctx, "d", hubapi.ReportedBatch{Session: "not/valid"}); err == nil || !strings.Contains(err.Error(), "session") {
		t.Fatalf("invalid session: %v", err)
	}

	// The device deleted and created again, same credentials and even the
	// same session: its numbering is new.
	if err := h.Client(t).DeleteDevice(ctx, "d", ""); err != nil {
		t.Fatal(err)
	}
	dc = deviceWithKey(t, h, "d", testKey, "m")
	if ack := upload(t, dc, "second", 1, "m", `{"n":20}`); ack.Acked != 1 {
		t.Fatalf("after re-create: ack %+v", ack)
	}
	if got := reported(t, h, "m"); got != `{"n":20}` {
		t.Fatalf("the re-created device's seq 1 was dropped: reported %s", got)
	}
}

// TestSyncCursorNotVouchedFor: a cursor whose suffix the hub did not make,
// or that belongs to an earlier identity of the device, gets a full sync.
func TestSyncCursorNotVouchedFor(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := deviceWithKey(t, h, "d", testKey, "m")
	full, err := dc.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client(t).PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"x":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	inc, err := dc.Sync(ctx, "d", full.Cursor, 0)
	if err != nil || inc.Full || twinOf(t, inc, "m") == nil {
		t.Fatalf("incremental sync: %+v %v", inc, err)
	}
	rev, _, _ := strings.Cut(inc.Cursor, ".")
	n, _ := strconv.ParseInt(rev, 10, 64)
	for _, c := range []string{
		rev + ".0.000000000000000000000000",                           // a suffix the hub did not make
		strconv.FormatInt(n+1000, 10) + ".ffff.abcdef",                // ahead, with a made-up suffix
		strconv.FormatInt(n+1000, 10) + "." + inc.Cursor[len(rev)+1:], // ahead, another cursor's suffix
		rev + ".deadbeef", // the hub's cursors before they were signed
	} {
		s, err := dc.Sync(ctx, "d", c, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Full || twinOf(t, s, "m") == nil {
			t.Errorf("cursor %q: full=%v with %d twins, want a full sync", c, s.Full, len(s.Twins))
		}
	}
	// The hub's own cursor still syncs incrementally.
	if s, err := dc.Sync(ctx, "d", inc.Cursor, 0); err != nil || s.Full || len(s.Twins) != 0 {
		t.Fatalf("the hub's own cursor: %+v %v", s, err)
	}

	// The device created again: the old identity's cursor is not trusted,
	// though the new twins' versions are below it.
	if err := h.Client(t).DeleteDevice(ctx, "d", ""); err != nil {
		t.Fatal(err)
	}
	dc = deviceWithKey(t, h, "d", testKey, "m")
	s, err := dc.Sync(ctx, "d", inc.Cursor, 0)
	if err != nil || !s.Full || twinOf(t, s, "m") == nil {
		t.Fatalf("old identity's cursor: %+v %v", s, err)
	}
}

// TestSyncCursorAheadAfterRestore: a hub restored from a backup is behind
// the cursors its devices hold; a desired change made after the restore must
// still reach them.
func TestSyncCursorAheadAfterRestore(t *testing.T) {
	hubtest.FileStoreOnly(t)
	dir := t.TempDir() + "/hub"
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	deviceWithKey(t, h, "d", testKey, "m")
	h.Stop()
	backup := t.TempDir() + "/backup"
	if out, err := exec.Command("cp", "-a", dir, backup).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v %s", err, out)
	}

	h = hubtest.Start(t, hubtest.Options{DataDir: dir})
	dc := h.ClientFor(t, h.DeviceConnectionString("d", "", testKey))
	owner := h.Client(t)
	for i := range 20 { // the device sees many changes after the backup
		if _, err := owner.PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"x":`+strconv.Itoa(i)+`}}}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	ahead, err := dc.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Stop()

	// Restore the backup; then an operator changes the twin.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", backup, dir).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	h = hubtest.Start(t, hubtest.Options{DataDir: dir})
	dc = h.ClientFor(t, h.DeviceConnectionString("d", "", testKey))
	if _, err := h.Client(t).PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"restored":true}}}`), ""); err != nil {
		t.Fatal(err)
	}
	s, err := dc.Sync(ctx, "d", ahead.Cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	tw := twinOf(t, s, "m")
	if !s.Full || tw == nil || tw.Desired()["restored"] != true {
		t.Fatalf("cursor %s ahead of the restored hub: full=%v, %d twins: the change after the restore was skipped", ahead.Cursor, s.Full, len(s.Twins))
	}
}

// TestConnectionState: a device is Connected while it holds a sync, with its
// last activity, and Disconnected once it stops (as IoT Hub shows it).
func TestConnectionState(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{PresenceGrace: 300 * time.Millisecond})
	dc := deviceWithKey(t, h, "d", testKey, "m")
	owner := h.Client(t)
	state := func() hubapi.Device {
		d, err := owner.GetDevice(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := state(); d.ConnectionState != "Disconnected" {
		t.Fatalf("before any sync: %s", d.ConnectionState)
	}
	first, err := dc.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan error, 1)
	go func() { _, err := dc.Sync(pollCtx, "d", first.Cursor, time.Minute); polled <- err }()
	time.Sleep(time.Second) // longer than the grace: only the held poll keeps it connected
	d := state()
	if d.ConnectionState != "Connected" || d.LastActivityTime.IsZero() || d.ConnectionStateUpdatedTime.IsZero() {
		t.Fatalf("while holding a sync: %+v", d)
	}
	list, err := owner.ListDevices(ctx)
	if err != nil || len(list) != 1 || list[0].ConnectionState != "Connected" {
		t.Fatalf("device list while syncing: %+v %v", list, err)
	}
	if mods, err := owner.ListModules(ctx, "d"); err != nil || !hasConnected(mods, "$edgeAgent") {
		t.Fatalf("module list while syncing: %+v %v", mods, err)
	}
	stopPoll()
	<-polled
	deadline := time.Now().Add(20 * time.Second)
	for state().ConnectionState != "Disconnected" {
		if time.Now().After(deadline) {
			t.Fatal("still Connected after the device stopped syncing")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d2 := state(); !d2.ConnectionStateUpdatedTime.After(d.ConnectionStateUpdatedTime) || d2.LastActivityTime.Before(d.LastActivityTime) {
		t.Fatalf("times after the disconnect: %+v, before %+v", d2, d)
	}
}

func hasConnected(mods []hubapi.Module, id string) bool {
	for _, m := range mods {
		if m.ModuleID == id {
			return m.ConnectionState == "Connected"
		}
	}
	return false
}
