package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/msgqueue"
)

// TestUploaderFilesLeafMessages: the uploader sends a leaf device's queued
// messages in the edge device's batches; the hub files them under the
// leaf; a message of a device that is not the edge device's child is
// refused by name, logged, and acknowledged (the queue does not stick on
// it); the edge device's own stay its own.
func TestUploaderFilesLeafMessages(t *testing.T) {
	ctx := context.Background()
	h := hubtest.Start(t, hubtest.Options{})
	owner := h.Client(t)
	edge, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: "other-edge"})
	if err != nil {
		t.Fatal(err)
	}
	for id, scope := range map[string]string{"s1": edge.DeviceScope, "s2": other.DeviceScope} {
		if _, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: id, Capabilities: &hubapi.Capabilities{}, DeviceScope: scope}); err != nil {
			t.Fatal(err)
		}
	}
	q, err := msgqueue.Open(t.TempDir(), msgqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, m := range []hubapi.Message{
		{DeviceID: "edge", ModuleID: "a", Body: []byte("from a")},
		{DeviceID: "s1", Body: []byte("from s1")},
		{DeviceID: "s2", Body: []byte("from s2, not a child")},
		{DeviceID: "s1", Body: []byte("from s1 again")},
	} {
		m.EnqueuedTime = time.Now().UTC()
		data, _ := json.Marshal(m)
		if _, err := q.AppendSync(msgqueue.Record{Dests: []msgqueue.Dest{{Name: broker.UpstreamDest, Expires: time.Now().Add(time.Hour)}}, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer // drain logs on this goroutine
	u := &uploader{deviceID: "edge", hub: h.ClientFor(t, h.DeviceConnectionString("edge", "", edge.Authentication.SymmetricKey.PrimaryKey)), q: q,
		log: slog.New(slog.NewTextHandler(&logs, nil))}
	if sent, err := u.drain(ctx); err != nil || !sent {
		t.Fatalf("drain: %v %v", sent, err)
	}
	if p := q.Pending(broker.UpstreamDest, 0, 10); len(p) != 0 {
		t.Fatalf("still queued: %d", len(p))
	}
	if l := logs.String(); !strings.Contains(l, "the hub rejected a queued message") || !strings.Contains(l, "device=s2") || !strings.Contains(l, "not a child of edge device edge") {
		t.Fatalf("log: %s", l)
	}
	for id, want := range map[string]string{"edge": "from a", "s1": "from s1|from s1 again", "s2": ""} {
		list, err := owner.Messages(ctx, id, "", 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range list.Messages {
			if m.DeviceID != id {
				t.Errorf("%s's message from %s", id, m.DeviceID)
			}
			got = append(got, string(m.Body))
		}
		if strings.Join(got, "|") != want {
			t.Errorf("%s's messages: %q, want %q", id, got, want)
		}
	}
}
