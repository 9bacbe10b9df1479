package hub_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/twin"
)

// device makes a device with modules and returns a client with its own key.
func device(t *testing.T, h *hubtest.Hub, id string, modules ...string) *hubclient.Client {
	t.Helper()
	c := h.Client(t)
	d, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range modules {
		if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: id, ModuleID: m}); err != nil {
			t.Fatal(err)
		}
	}
	return h.ClientFor(t, h.DeviceConnectionString(id, "", d.Authentication.SymmetricKey.PrimaryKey))
}

func twinOf(t *testing.T, s *hubapi.Sync, module string) *twin.Twin {
	t.Helper()
	for _, raw := range s.Twins {
		tw := new(twin.Twin)
		if err := tw.UnmarshalJSON(raw); err != nil {
			t.Fatal(err)
		}
		if tw.ModuleID == module {
			return tw
		}
	}
	return nil
}

func TestSyncFullThenIncremental(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "d", "a", "b")
	full, err := dc.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !full.Full || full.Device.DeviceID != "d" || full.Cursor == "" {
		t.Fatalf("full sync: %+v", full)
	}
	var ids []string
	for _, m := range full.Modules {
		if m.PrimaryKey == "" {
			t.Errorf("module %s without keys", m.ModuleID)
		}
		ids = append(ids, m.ModuleID)
	}
	if strings.Join(ids, ",") != "$edgeAgent,$edgeHub,a,b" {
		t.Fatalf("modules %v, want $edgeAgent,$edgeHub,a,b", ids)
	}
	if twinOf(t, full, "a") == nil || twinOf(t, full, "b") == nil {
		t.Fatalf("full sync lacks twins: %d", len(full.Twins))
	}

	// Nothing changed: the same cursor, no twins.
	again, err := dc.Sync(ctx, "d", full.Cursor, 0)
	if err != nil || again.Cursor != full.Cursor || len(again.Twins) != 0 || again.Full {
		t.Fatalf("unchanged sync: %+v %v", again, err)
	}
	// One twin changes: only it comes back.
	if _, err := h.Client(t).PatchTwin(ctx, "d", "b", []byte(`{"properties":{"desired":{"x":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	inc, err := dc.Sync(ctx, "d", full.Cursor, 0)
	if err != nil || inc.Cursor == full.Cursor || len(inc.Twins) != 1 || twinOf(t, inc, "b") == nil {
		t.Fatalf("incremental sync: %+v %v", inc, err)
	}
	// A module removed: the cursor moves and the module list says so.
	if err := h.Client(t).DeleteModule(ctx, "d", "a", ""); err != nil {
		t.Fatal(err)
	}
	del, err := dc.Sync(ctx, "d", inc.Cursor, 0)
	if err != nil || del.Cursor == inc.Cursor || len(del.Modules) != 3 { // $edgeAgent, $edgeHub, b
		t.Fatalf("after delete: %+v %v", del, err)
	}
	// Another device's token cannot sync this one.
	other := device(t, h, "other")
	if _, err := other.Sync(ctx, "d", "", 0); !errors.Is(err, hubclient.ErrUnauthorized) {
		t.Fatalf("other device syncs d: %v", err)
	}
	// A cursor the hub never gave out gets everything, never a 400 the
	// device could only retry.
	if s, err := dc.Sync(ctx, "d", "garbage", 0); err != nil || !s.Full || twinOf(t, s, "b") == nil {
		t.Fatalf("sync with a garbage cursor: %+v %v", s, err)
	}
}

func TestSyncLongPollWakesOnChange(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "d", "m")
	s, err := dc.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		s   *hubapi.Sync
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		r, err := dc.Sync(ctx, "d", s.Cursor, 30*time.Second)
		done <- result{r, err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond) // let the poll park
	select {
	case r := <-done:
		t.Fatalf("long poll returned before any change: %+v %v", r.s, r.err)
	default:
	}
	sent := time.Now()
	if _, err := h.Client(t).PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"interval":7}}}`), ""); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		tw := twinOf(t, r.s, "m")
		if tw == nil || tw.Desired()["interval"] != json.Number("7") {
			t.Fatalf("woken poll lacks the change: %d twins", len(r.s.Twins))
		}
		t.Logf("desired change reached the device %v after the patch was sent", r.at.Sub(sent))
	case <-time.After(10 * time.Second):
		t.Fatal("long poll not woken by a desired change")
	}

	// A poll with a short wait and no change returns the same cursor.
	r, err := dc.Sync(ctx, "d", func() string { s, _ := dc.Sync(ctx, "d", "", 0); return s.Cursor }(), 100*time.Millisecond)
	if err != nil || len(r.Twins) != 0 {
		t.Fatalf("timed-out poll: %+v %v", r, err)
	}
}

func TestReportedUploadIsOrderedAndIdempotent(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "d", "m")
	batch := hubapi.ReportedBatch{Patches: []hubapi.ReportedPatch{
		{Seq: 1, ModuleID: "m", Patch: json.RawMessage(`{"t":1,"keep":true}`)},
		{Seq: 2, ModuleID: "m", Patch: json.RawMessage(`{"t":2}`)},
		{Seq: 3, ModuleID: "ghost", Patch: json.RawMessage(`{"t":3}`)},
		{Seq: 4, ModuleID: "m", Patch: json.RawMessage(`{"bad.key":1}`)},
		{Seq: 5, ModuleID: "m", Patch: json.RawMessage(`{"t":5,"keep":null}`)},
	}}
	ack, err := dc.UploadReported(ctx, "d", batch)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Acked != 5 || len(ack.Rejected) != 2 || ack.Rejected[0].Seq != 3 || ack.Rejected[1].Seq != 4 {
		t.Fatalf("ack %+v", ack)
	}
	tw, err := h.Client(t).GetTwin(ctx, "d", "m")
	if err != nil {
		t.Fatal(err)
	}
	if string(tw.ReportedJSON()) != `{"t":5}` {
		t.Fatalf("reported %s, want {\"t\":5}", tw.ReportedJSON())
	}
	version := tw.ReportedVersion()
	// The same batch again (a retry) changes nothing.
	ack, err = dc.UploadReported(ctx, "d", batch)
	if err != nil || ack.Acked != 5 {
		t.Fatalf("retry: %+v %v", ack, err)
	}
	tw, _ = h.Client(t).GetTwin(ctx, "d", "m")
	if tw.ReportedVersion() != version {
		t.Fatalf("retry bumped reported $version %d → %d", version, tw.ReportedVersion())
	}
	// Out of order is refused.
	_, err = dc.UploadReported(ctx, "d", hubapi.ReportedBatch{Patches: []hubapi.ReportedPatch{{Seq: 7, ModuleID: "m", Patch: json.RawMessage(`{}`)}, {Seq: 6, ModuleID: "m", Patch: json.RawMessage(`{}`)}}})
	if err == nil || !strings.Contains(err.Error(), "in order") {
		t.Fatalf("out of order: %v", err)
	}
	// Only the device itself uploads.
	if _, err := h.Client(t).UploadReported(ctx, "d", batch); !errors.Is(err, hubclient.ErrUnauthorized) {
		t.Fatalf("owner uploads for a device: %v", err)
	}
}

// TestConcurrentUploads checks that concurrent uploads of overlapping
// batches never apply a patch twice or out of order.
func TestConcurrentUploads(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "d", "m")
	var patches []hubapi.ReportedPatch
	for i := 1; i <= 20; i++ {
		patches = append(patches, hubapi.ReportedPatch{Seq: int64(i), ModuleID: "m", Patch: json.RawMessage(`{"n":` + itoa(i) + `}`)})
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ack, err := dc.UploadReported(ctx, "d", hubapi.ReportedBatch{Patches: patches})
				if err == nil && ack.Acked == 20 {
					return
				}
			}
		}()
	}
	wg.Wait()
	tw, _ := h.Client(t).GetTwin(ctx, "d", "m")
	if string(tw.ReportedJSON()) != `{"n":20}` {
		t.Fatalf("reported %s", tw.ReportedJSON())
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestReportedBatchEqualsOneByOne: a batch of patches, with a rejected one
// in the middle of a module's and one for a module that does not exist,
// leaves each twin as the same patches sent one per upload do: the same
// reported properties, the same $version; the same patches are rejected; a
// retry of the batch changes nothing.
func TestReportedBatchEqualsOneByOne(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	deep := strings.Repeat(`{"x":`, 12) + "1" + strings.Repeat("}", 12)
	patches := []struct{ module, patch string }{
		{"a", `{"n":1}`},
		{"b", `{"n":1,"s":"x"}`},
		{"a", `{"n":2,"t":{"u":1}}`},
		{"a", deep}, // over the depth limit: rejected, the others go on
		{"nope", `{"n":1}`},
		{"a", `{"n":2}`}, // changes nothing: no new $version
		{"b", `{"s":null}`},
		{"a", `[1]`}, // not an object: rejected
		{"a", `{"t":{"v":2},"n":3}`},
	}
	var batch []hubapi.ReportedPatch
	for i, p := range patches {
		batch = append(batch, hubapi.ReportedPatch{Seq: int64(i + 1), ModuleID: p.module, Patch: json.RawMessage(p.patch)})
	}
	rejected := func(ack *hubapi.ReportedAck) (seqs []int64) {
		for _, r := range ack.Rejected {
			seqs = append(seqs, r.Seq)
		}
		return seqs
	}

	one := device(t, h, "one", "a", "b")
	var oneRejected []int64
	for _, p := range batch {
		ack, err := one.UploadReported(ctx, "one", hubapi.ReportedBatch{Session: "s", Patches: []hubapi.ReportedPatch{p}})
		if err != nil || ack.Acked != p.Seq {
			t.Fatalf("upload seq %d alone: %+v %v", p.Seq, ack, err)
		}
		oneRejected = append(oneRejected, rejected(ack)...)
	}
	all := device(t, h, "all", "a", "b")
	ack, err := all.UploadReported(ctx, "all", hubapi.ReportedBatch{Session: "s", Patches: batch})
	if err != nil || ack.Acked != int64(len(batch)) {
		t.Fatalf("upload as a batch: %+v %v", ack, err)
	}
	if got, want := fmt.Sprint(rejected(ack)), fmt.Sprint(oneRejected); got != want || want != "[4 5 8]" {
		t.Fatalf("rejected in a batch %s, one by one %s, want [4 5 8]", got, want)
	}
	c := h.Client(t)
	for _, m := range []string{"a", "b"} {
		a, err := c.GetTwin(ctx, "one", m)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.GetTwin(ctx, "all", m)
		if err != nil {
			t.Fatal(err)
		}
		if string(a.ReportedJSON()) != string(b.ReportedJSON()) || a.ReportedVersion() != b.ReportedVersion() || a.DesiredVersion() != b.DesiredVersion() {
			t.Fatalf("twin %s: one by one %s $version %d, as a batch %s $version %d", m, a.ReportedJSON(), a.ReportedVersion(), b.ReportedJSON(), b.ReportedVersion())
		}
	}
	if a, _ := c.GetTwin(ctx, "all", "a"); a.ReportedVersion() != 4 {
		t.Fatalf("twin a: reported $version %d after 3 changing patches, want 4", a.ReportedVersion())
	}
	before, _ := c.GetTwin(ctx, "all", "a")
	again, err := all.UploadReported(ctx, "all", hubapi.ReportedBatch{Session: "s", Patches: batch})
	after, _ := c.GetTwin(ctx, "all", "a")
	if err != nil || again.Acked != int64(len(batch)) || len(again.Rejected) != 0 || after.ETag != before.ETag {
		t.Fatalf("retried batch: %+v %v; etag %s then %s", again, err, before.ETag, after.ETag)
	}
}
