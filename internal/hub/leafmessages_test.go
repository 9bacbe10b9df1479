package hub_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

func leafMsg(seq uint64, device, module, body string) hubapi.Message {
	return hubapi.Message{Seq: seq, DeviceID: device, ModuleID: module, Body: []byte(body),
		EnqueuedTime: time.Date(2026, 12, 2, 12, 0, int(seq), 0, time.UTC), Properties: map[string]string{"n": body}}
}

// TestLeafTelemetryUpload: an edge device's upload carries its own
// messages and its children's; the hub files each under its sender (the
// child's show in GET /devices/{leaf}/messages with deviceId = the leaf, not
// in the edge device's), refuses, naming them, the messages of a device
// that is not its child (and a leaf message with a module), keeps the rest
// of the batch, and keeps a batch sent again once.
func TestLeafTelemetryUpload(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	gw := device(t, h, "gw")
	gw2 := device(t, h, "gw2")
	leaf(t, h, "s1", "gw")
	leaf(t, h, "s2", "gw")
	leaf(t, h, "other", "gw2")
	leaf(t, h, "orphan", "")

	batch := hubapi.MessageUpload{Epoch: "e1", Messages: []hubapi.Message{
		leafMsg(1, "", "m", "own"),
		leafMsg(2, "s1", "", "s1-a"),
		leafMsg(3, "other", "", "stolen"),
		leafMsg(4, "s2", "", "s2-a"),
		leafMsg(5, "s1", "", "s1-b"),
		leafMsg(6, "orphan", "", "stolen too"),
		leafMsg(7, "nope", "", "no such device"),
		leafMsg(8, "s1", "x", "leaf with a module"),
		leafMsg(9, "gw", "m", "own, named"),
	}}
	res, err := gw.UploadMessages(ctx, "gw", batch)
	if err != nil {
		t.Fatal(err)
	}
	if res.Acked != 9 {
		t.Fatalf("acked %d, want 9", res.Acked)
	}
	refused := map[uint64]hubapi.RejectedMessage{}
	for _, r := range res.Rejected {
		refused[r.Seq] = r
	}
	if len(refused) != 4 ||
		refused[3].DeviceID != "other" || !strings.Contains(refused[3].Error, "not a child of edge device gw (its parent is gw2)") ||
		refused[6].DeviceID != "orphan" || !strings.Contains(refused[6].Error, "its parent is none") ||
		refused[7].DeviceID != "nope" || !strings.Contains(refused[7].Error, "does not exist") ||
		refused[8].DeviceID != "s1" || !strings.Contains(refused[8].Error, "has no module") {
		t.Fatalf("refused: %+v", res.Rejected)
	}
	// Sent again (the answer was lost), with one more: only the new one is kept.
	batch.Messages = append(batch.Messages[4:], leafMsg(10, "s1", "", "s1-c"))
	if res, err := gw.UploadMessages(ctx, "gw", batch); err != nil || res.Acked != 10 || len(res.Rejected) != 0 {
		t.Fatalf("again: %+v %v", res, err)
	}

	owner := h.Client(t)
	bodies := func(id string) []string {
		t.Helper()
		list, err := owner.Messages(ctx, id, "", 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for i, m := range list.Messages {
			if m.DeviceID != id || m.Seq != uint64(i+1) || m.ReceivedTime.IsZero() || m.Properties["n"] != string(m.Body) {
				t.Fatalf("%s's message %d: %+v", id, i, m)
			}
			out = append(out, string(m.Body))
		}
		return out
	}
	for id, want := range map[string]string{"gw": "own,own, named", "s1": "s1-a,s1-b,s1-c", "s2": "s2-a", "other": "", "orphan": ""} {
		if got := strings.Join(bodies(id), ","); got != want {
			t.Errorf("%s's messages: %q, want %q", id, got, want)
		}
	}
	// A leaf's latest seq is its own numbering.
	if n, err := owner.LatestMessage(ctx, "s1"); err != nil || n != 3 {
		t.Errorf("latest of s1: %d %v", n, err)
	}

	// A leaf's own credentials cannot upload (only an edge device's sync
	// uploads), and gw2 cannot file messages under gw's children.
	res, err = gw2.UploadMessages(ctx, "gw2", hubapi.MessageUpload{Epoch: "x", Messages: []hubapi.Message{leafMsg(1, "s1", "", "forged")}})
	if err != nil || len(res.Rejected) != 1 || !strings.Contains(res.Rejected[0].Error, "not a child of edge device gw2 (its parent is gw)") {
		t.Fatalf("gw2 uploading for s1: %+v %v", res, err)
	}
	if got := bodies("s1"); len(got) != 3 {
		t.Fatalf("s1 after gw2's forgery: %q", got)
	}
	// A bad device id is a 400 naming the message.
	_, err = gw.UploadMessages(ctx, "gw", hubapi.MessageUpload{Epoch: "e1", Messages: []hubapi.Message{leafMsg(11, "bad id/x", "", "x")}})
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, "messages[0].deviceId") {
		t.Fatalf("bad device id: %v", err)
	}
}

// TestLeafMethod: a call to a leaf device goes to its parent edge device's
// sync with the leaf's id (not to the leaf, nor to another edge device);
// the parent's answer is the caller's; another device cannot answer it;
// the parent not connected is 404103 naming the parent; a leaf without a
// parent is the device itself, as before.
func TestLeafMethod(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	gw := device(t, h, "gw")
	gw2 := device(t, h, "gw2")
	leaf(t, h, "s1", "gw")
	lone := leaf(t, h, "lone", "")
	owner := h.Client(t)

	done := invoke(owner, "s1", "", hubapi.MethodRequest{MethodName: "blink", Payload: json.RawMessage(`{"n":2}`), ConnectTimeoutInSeconds: seconds(30)})
	calls := takeCalls(t, gw, "gw")
	if len(calls) != 1 || calls[0].DeviceID != "s1" || calls[0].ModuleID != "" || calls[0].Method != "blink" || string(calls[0].Payload) != `{"n":2}` || calls[0].ConnectTimeoutMs != 30000 {
		t.Fatalf("gw's calls: %+v", calls)
	}
	// gw2 did not get it, and cannot answer it.
	if s, err := gw2.Sync(ctx, "gw2", "", 0); err != nil || len(s.Methods) != 0 {
		t.Fatalf("gw2's sync: %+v %v", s.Methods, err)
	}
	err := gw2.AnswerMethod(ctx, "gw2", calls[0].ID, hubapi.MethodResponse{Status: 200, Payload: json.RawMessage(`"forged"`)})
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 404 {
		t.Fatalf("gw2 answering gw's call: %v", err)
	}
	if err := gw.AnswerMethod(ctx, "gw", calls[0].ID, hubapi.MethodResponse{Status: 201, Payload: json.RawMessage(`{"blinked":2}`)}); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got.err != nil || got.res.Status != 201 || string(got.res.Payload) != `{"blinked":2}` {
		t.Fatalf("result %+v, %v", got.res, got.err)
	}

	// The parent says the leaf is not connected to it: 404103 with why.
	done = invoke(owner, "s1", "", hubapi.MethodRequest{MethodName: "blink", ConnectTimeoutInSeconds: seconds(30)})
	calls = takeCalls(t, gw, "gw")
	if err := gw.AnswerMethod(ctx, "gw", calls[0].ID, hubapi.MethodResponse{NotOnline: true, Reason: "leaf device s1 is not connected to edge device gw"}); err != nil {
		t.Fatal(err)
	}
	if got := <-done; !errors.As(got.err, &he) || he.StatusCode != 404 || he.Code != "DeviceNotOnline" || !strings.Contains(he.Message, "not connected to edge device gw") {
		t.Fatalf("leaf not connected: %v", got.err)
	}

	// The parent not polling: 404103 naming the parent.
	h2 := hubtest.Start(t, hubtest.Options{})
	device(t, h2, "gw")
	leaf(t, h2, "s1", "gw")
	_, err = h2.Client(t).InvokeMethod(ctx, "s1", "", hubapi.MethodRequest{MethodName: "blink", ConnectTimeoutInSeconds: seconds(1)})
	if !errors.As(err, &he) || he.StatusCode != 404 || he.Code != "DeviceNotOnline" || !strings.Contains(he.Message, "leaf device s1 (through its parent gw)") || !strings.Contains(he.Message, "parent edge device gw is not connected") {
		t.Fatalf("parent offline: %v", err)
	}

	// A leaf without a parent takes its calls itself, as any device.
	lc := h.ClientFor(t, h.DeviceConnectionString("lone", "", lone.Authentication.SymmetricKey.PrimaryKey))
	done = invoke(owner, "lone", "", hubapi.MethodRequest{MethodName: "ping", ConnectTimeoutInSeconds: seconds(30)})
	calls = takeCalls(t, lc, "lone")
	if calls[0].DeviceID != "" {
		t.Fatalf("lone's call: %+v", calls[0])
	}
	if err := lc.AnswerMethod(ctx, "lone", calls[0].ID, hubapi.MethodResponse{Status: 200}); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got.err != nil || got.res.Status != 200 {
		t.Fatalf("lone: %+v %v", got.res, got.err)
	}
}
