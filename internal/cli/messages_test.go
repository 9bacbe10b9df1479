package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// uploader returns the device's own client and an upload of messages as
// the daemon makes it.
func deviceUploader(t *testing.T, h *hubtest.Hub, id string) func(epoch string, msgs ...hubapi.Message) uint64 {
	dev := mustCreateDevice(t, h, id)
	dc := h.ClientFor(t, h.DeviceConnectionString(id, "", dev.Authentication.SymmetricKey.PrimaryKey))
	return func(epoch string, msgs ...hubapi.Message) uint64 {
		t.Helper()
		res, err := dc.UploadMessages(context.Background(), id, hubapi.MessageUpload{Epoch: epoch, Messages: msgs})
		if err != nil {
			t.Fatal(err)
		}
		return res.Acked
	}
}

func msg(seq uint64, module, output, body string, props map[string]string) hubapi.Message {
	return hubapi.Message{Seq: seq, ModuleID: module, OutputName: output, Body: []byte(body), Properties: props,
		EnqueuedTime: time.Date(2026, 12, 2, 12, 0, int(seq), 0, time.UTC), SystemProperties: map[string]string{"$.on": output}}
}

func TestMessagesList(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	upload := deviceUploader(t, h, "d1")
	if acked := upload("e1", msg(1, "a", "out1", `{"t":35}`, map[string]string{"alert": "true"}), msg(2, "b", "", "plain text", nil)); acked != 2 {
		t.Fatalf("acked %d, want 2", acked)
	}
	// The same batch again (the answer was lost): kept once.
	if acked := upload("e1", msg(2, "b", "", "plain text", nil), msg(3, "a", "out1", "\xff\xfe", nil)); acked != 3 {
		t.Fatalf("acked %d, want 3", acked)
	}

	code, out, errOut := run(t, "messages", "list", "d1")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, `{"t":35}`) || !strings.Contains(out, "alert=true") || !strings.Contains(out, `"plain text"`) || !strings.Contains(out, "base64://4=") {
		t.Fatalf("messages list: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = run(t, "messages", "list", "d1/a", "-o", "json")
	var views []messageView
	if err := json.Unmarshal([]byte(out), &views); code != 0 || err != nil || len(views) != 2 {
		t.Fatalf("messages list d1/a -o json: code %d, %v, %q", code, err, out)
	}
	var payload bytes.Buffer
	_ = json.Compact(&payload, views[0].Payload)
	if v := views[0]; v.Seq != 1 || v.ModuleID != "a" || v.OutputName != "out1" || payload.String() != `{"t":35}` || v.Properties["alert"] != "true" || v.ReceivedTime.IsZero() {
		t.Fatalf("first message %+v", v)
	}
	if v := views[1]; v.Seq != 3 || v.BodyBase64 != "//4=" || v.Payload != nil {
		t.Fatalf("binary message %+v", v)
	}
	if code, out, _ := run(t, "messages", "list", "d1", "--after", "2", "-o", "json"); code != 0 || strings.Count(out, `"seq"`) != 1 {
		t.Fatalf("--after 2: code %d, %q", code, out)
	}
	if code, _, errOut := run(t, "messages", "list", "nope"); code != ExitNotFound || !strings.Contains(errOut, "list messages of nope") {
		t.Fatalf("unknown device: code %d, %q", code, errOut)
	}
	if code, _, errOut := run(t, "messages", "list", "d1", "--limit", "0"); code != ExitUsage || !strings.Contains(errOut, "--limit 0: want 1 to 10000") {
		t.Fatalf("--limit 0: code %d, %q", code, errOut)
	}
}

func TestMessagesWatch(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	upload := deviceUploader(t, h, "d1")
	upload("e1", msg(1, "a", "out1", "old", nil)) // before the watch: not shown

	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{out: &syncBuffer{}, errOut: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	ios := &IOStreams{In: strings.NewReader(""), Out: w.out, ErrOut: w.errOut}
	go func() { w.done <- Run(ctx, ios, []string{"messages", "watch", "d1/a", "-o", "json"}) }()
	t.Cleanup(cancel)
	waitFor(t, 10*time.Second, "watch to start", func() bool { return strings.Contains(w.errOut.String(), "watching messages of d1/a") })

	upload("e1", msg(2, "a", "out1", `{"n":2}`, map[string]string{"k": "v"}), msg(3, "b", "out1", "other module", nil))
	// A new queue on the device (a new data dir) numbers from 1 again.
	upload("e2", msg(1, "a", "out2", `{"n":3}`, nil))
	waitFor(t, 10*time.Second, "two messages", func() bool { return len(w.lines()) >= 2 })
	w.cancel()
	if code := w.wait(t); code != 0 {
		t.Fatalf("watch ended with %d: %q", code, w.errOut.String())
	}
	var got []string
	for _, l := range w.lines() {
		var v messageView
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, string(v.Payload)+"@"+v.OutputName)
	}
	if strings.Join(got, " ") != `{"n":2}@out1 {"n":3}@out2` {
		t.Fatalf("watch printed %q", got)
	}
}

func TestMessagesUploadRefused(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	dev := mustCreateDevice(t, h, "d1")
	dc := h.ClientFor(t, h.DeviceConnectionString("d1", "", dev.Authentication.SymmetricKey.PrimaryKey))
	ctx := context.Background()
	for _, tt := range []struct {
		up   hubapi.MessageUpload
		want string
	}{
		{hubapi.MessageUpload{Epoch: "", Messages: []hubapi.Message{msg(1, "a", "", "x", nil)}}, "epoch"},
		{hubapi.MessageUpload{Epoch: "e", Messages: []hubapi.Message{msg(2, "a", "", "x", nil), msg(1, "a", "", "x", nil)}}, "messages[1].seq: 1 does not follow 2"},
	} {
		if _, err := dc.UploadMessages(ctx, "d1", tt.up); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("upload %+v: %v, want %q", tt.up, err, tt.want)
		}
	}
	// Another device's token may not upload for d1.
	other := mustCreateDevice(t, h, "d2")
	oc := h.ClientFor(t, h.DeviceConnectionString("d2", "", other.Authentication.SymmetricKey.PrimaryKey))
	if _, err := oc.UploadMessages(ctx, "d1", hubapi.MessageUpload{Epoch: "e", Messages: []hubapi.Message{msg(1, "a", "", "x", nil)}}); err == nil {
		t.Error("d2 uploaded messages for d1")
	}
	// Nor read them.
	if _, err := oc.Messages(ctx, "d1", "", 0, 10, 0); err == nil {
		t.Error("d2 read d1's messages")
	}
}

// A device's messages go with it: the device created again under the same
// id has none, and its first upload (seq 1 of a new queue) is taken.
func TestMessagesDeletedWithDevice(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	if acked := deviceUploader(t, h, "d1")("e1", msg(1, "a", "out1", "old", nil), msg(2, "a", "out1", "old", nil)); acked != 2 {
		t.Fatalf("acked %d, want 2", acked)
	}
	if err := h.Client(t).DeleteDevice(ctx, "d1", ""); err != nil {
		t.Fatal(err)
	}
	upload := deviceUploader(t, h, "d1")
	list, err := h.Client(t).Messages(ctx, "d1", "", 0, 10, 0)
	if err != nil || len(list.Messages) != 0 {
		t.Fatalf("the re-created device's messages: %+v, %v", list.Messages, err)
	}
	if acked := upload("e1", msg(1, "a", "out1", "new", nil)); acked != 1 {
		t.Fatalf("the re-created device's first upload: acked %d, want 1", acked)
	}
	list, err = h.Client(t).Messages(ctx, "d1", "", 0, 10, 0)
	if err != nil || len(list.Messages) != 1 || string(list.Messages[0].Body) != "new" {
		t.Fatalf("after the upload: %+v, %v", list.Messages, err)
	}
}
