package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
)

// TestNotifierReadsEveryPage: the notifier reads the device identities a
// page of notifyPage at a time when it starts. With 2,501 devices (two
// full pages and one more record, children on both sides of each page's
// end) it knows every child of every parent, and a child added after it
// started is found from its event.
func TestNotifierReadsEveryPage(t *testing.T) {
	fs, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()

	const n = 2*notifyPage + 1
	parentOf := func(i int) string { // children of edge-a, edge-b, or none
		switch {
		case i%7 == 0, i%notifyPage == notifyPage-1: // each page's last record too
			return "edge-a"
		case i%notifyPage == 0 || i%11 == 0: // and each page's first
			return "edge-b"
		}
		return ""
	}
	want := map[string][]string{}
	var ops []store.Op
	put := func(d registry.Device) {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, store.PutOp("devices/"+d.DeviceID, b, 0))
		if len(ops) == 100 {
			if _, err := fs.Txn(ops...); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	for i := range n {
		d := registry.Device{DeviceID: fmt.Sprintf("leaf-%05d", i)}
		if p := parentOf(i); p != "" {
			d.ParentScopes = []string{hubapi.EdgeScope(p, "639000000000000000")}
			want[p] = append(want[p], d.DeviceID)
		}
		put(d)
	}
	if len(ops) > 0 {
		if _, err := fs.Txn(ops...); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	if recs, err := fs.List("devices/"); err != nil || len(recs) != n {
		t.Fatalf("%d device records (err %v), want %d", len(recs), err, n)
	}

	no := newNotifier()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); no.run(ctx, fs) }()
	defer func() { cancel(); <-done }()

	children := func(id string) []string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, ok := no.childrenOf(id)
			if ok {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatal("the notifier has not read the devices after 30 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, p := range []string{"edge-a", "edge-b"} {
		got := children(p)
		if !slices.Equal(got, want[p]) {
			t.Errorf("children of %s: %d, want %d; missing %v, extra %v", p, len(got), len(want[p]), minus(want[p], got), minus(got, want[p]))
		}
	}
	if got := children("leaf-00001"); len(got) != 0 {
		t.Errorf("a device without children has %v", got)
	}

	// A child made after the start is found from its event, and wakes
	// its parent's waiters.
	wake := no.wait("edge-b")
	put(registry.Device{DeviceID: "leaf-late", ParentScopes: []string{hubapi.EdgeScope("edge-b", "639000000000000000")}})
	if _, err := fs.Txn(ops...); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(30 * time.Second):
		t.Fatal("edge-b's waiters not woken by a new child")
	}
	if got := children("edge-b"); !slices.Contains(got, "leaf-late") || len(got) != len(want["edge-b"])+1 {
		t.Errorf("children of edge-b after leaf-late was made: %d, want %d with leaf-late", len(got), len(want["edge-b"])+1)
	}
}

// minus returns what a has and b does not.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// TestParentOfRecord: reading a device record's parent without decoding it
// finds what decoding it and asking hubapi.Device.ParentID finds.
func TestParentOfRecord(t *testing.T) {
	edge := hubapi.EdgeScope("edge-1", "638")
	for _, doc := range []string{
		`{"deviceId":"leaf","parentScopes":["` + edge + `"]}`,
		`{"deviceId":"leaf","parentScopes":["` + edge + `"],"capabilities":{"iotEdge":false},"deviceScope":"` + hubapi.EdgeScope("other", "1") + `"}`,
		`{"deviceId":"leaf","capabilities":{"iotEdge":false},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","capabilities":{},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","capabilities":{"iotEdge":null},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf", "capabilities" : { "iotEdge" : false } , "deviceScope" : "` + edge + `" }`,
		`{"deviceId":"edge-2","capabilities":{"iotEdge":true},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","capabilities":null,"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","parentScopes":[],"capabilities":{"iotEdge":false},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","parentScopes":null,"capabilities":{"iotEdge":false},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","parentScopes":[null]}`,
		`{"deviceId":"leaf","parentScopes":["not a scope"]}`,
		`{"deviceId":"leaf","parentScopes":["ms-azure-iot-edge://edge\u002d1-638"]}`,
		`{"deviceId":"leaf","capabilities":{"iotEdge":false}}`,
		`{"deviceId":"leaf"}`,
		`{}`,
	} {
		var d hubapi.Device
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if got, want := parentOfRecord([]byte(doc)), d.ParentID(); got != want {
			t.Errorf("parentOfRecord(%s) = %q, want %q", doc, got, want)
		}
	}
}
