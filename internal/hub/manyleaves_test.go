package hub_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/storetest"
)

// TestUploadsForManyLeavesFitTheStoresTxns: an edge device's uploads for
// more leaf devices than its hub's store takes writes in one transaction
// (etcd's --max-txn-ops, 128 by default) are acked part way, and go through
// in several as the daemon sends them (the rest again): every leaf gets its
// reported property and its message. Before, each upload failed whole and
// the device sent it again forever.
func TestUploadsForManyLeavesFitTheStoresTxns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		leaves  int
		limited bool // a store wrapper with a limit of 32 ops, whatever the backend
	}{
		{"a limit of 32 ops", 60, true},
		{"the hub's store", 200, false}, // etcd's limit in OUTPOST_TEST_STORE=etcd runs
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := hubtest.Options{}
			if tc.limited {
				st, err := store.Open(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				opts.Store = &storetest.Limited{Store: st, N: 32}
			}
			h := hubtest.Start(t, opts)
			gw := device(t, h, "gw")
			ids := make([]string, tc.leaves)
			var wg sync.WaitGroup
			sem := make(chan struct{}, 8)
			for i := range ids {
				ids[i] = fmt.Sprintf("leaf%03d", i)
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					leaf(t, h, ids[i], "gw")
				})
			}
			wg.Wait()

			var patches []hubapi.ReportedPatch
			var msgs []hubapi.Message
			for i, id := range ids {
				patches = append(patches, hubapi.ReportedPatch{Seq: int64(i + 1), DeviceID: id, Patch: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
				msgs = append(msgs, leafMsg(uint64(i+1), id, "", id))
			}
			uploads := 0
			for acked := int64(0); acked < int64(len(ids)); uploads++ {
				ack, err := gw.UploadReported(ctx, "gw", hubapi.ReportedBatch{Session: "s", Patches: patches[acked:]})
				if err != nil {
					t.Fatalf("reported upload %d: %v", uploads+1, err)
				}
				if ack.Acked <= acked || len(ack.Rejected) != 0 {
					t.Fatalf("reported upload %d, after seq %d: %+v", uploads+1, acked, ack)
				}
				acked = ack.Acked
			}
			msgUploads := 0
			for acked := uint64(0); acked < uint64(len(ids)); msgUploads++ {
				res, err := gw.UploadMessages(ctx, "gw", hubapi.MessageUpload{Epoch: "e", Messages: msgs[acked:]})
				if err != nil {
					t.Fatalf("message upload %d: %v", msgUploads+1, err)
				}
				if res.Acked <= acked || len(res.Rejected) != 0 {
					t.Fatalf("message upload %d, after seq %d: %+v", msgUploads+1, acked, res)
				}
				acked = res.Acked
			}
			if tc.limited && (uploads < 2 || msgUploads < 2) {
				t.Errorf("%d leaves in %d reported and %d message uploads: the limit was never met", len(ids), uploads, msgUploads)
			}
			t.Logf("%d leaves: %d reported uploads, %d message uploads", len(ids), uploads, msgUploads)

			owner := h.Client(t)
			for i, id := range ids {
				tw, err := owner.GetTwin(ctx, id, "")
				if err != nil {
					t.Fatal(err)
				}
				var r struct{ N *int }
				if err := json.Unmarshal(tw.ReportedJSON(), &r); err != nil || r.N == nil || *r.N != i {
					t.Errorf("%s reported: %s, want n = %d", id, tw.ReportedJSON(), i)
				}
				list, err := owner.Messages(ctx, id, "", 0, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(list.Messages) != 1 || string(list.Messages[0].Body) != id {
					t.Errorf("%s's messages: %+v, want its one", id, list.Messages)
				}
			}
		})
	}
}
