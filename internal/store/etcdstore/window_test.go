package etcdstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// TestRangeWindows reads prefixes of keys laid out in several ways page by
// page and checks that the pages hold exactly the prefix's records in order,
// and that etcd walks a bounded multiple of what is read rather than the
// rest of the prefix for every page (n²/2p keys for n keys in pages of p).
func TestRangeWindows(t *testing.T) {
	c := etcdtest.Start(t, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 4000
	layouts := map[string][]string{}
	for i := range n {
		layouts["seq"] = append(layouts["seq"], fmt.Sprintf("device-%06d", i))
		layouts["uuid"] = append(layouts["uuid"], fmt.Sprintf("%08x-%04x-%04x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff))
		// Dense clusters far apart, a few keys between them, and module
		// keys (ID/MID) as under modules/.
		switch {
		case i < 1500:
			layouts["clusters"] = append(layouts["clusters"], fmt.Sprintf("A%05d", i))
		case i < 1510:
			layouts["clusters"] = append(layouts["clusters"], fmt.Sprintf("m%d", rng.Uint64()))
		case i < 3000:
			layouts["clusters"] = append(layouts["clusters"], fmt.Sprintf("zz-factory-hannover-line-%05d", i))
		default:
			layouts["clusters"] = append(layouts["clusters"], fmt.Sprintf("d%03d/module-%d", i/7, i%7))
		}
		// Longer than the part of a key that windows look at: all in one window.
		layouts["long"] = append(layouts["long"], strings.Repeat("x", 300)+fmt.Sprint(i))
	}
	for name, keys := range layouts {
		t.Run(name, func(t *testing.T) {
			s := c.Open(t)
			slices.Sort(keys)
			keys = slices.Compact(keys)
			var ops []store.Op
			for _, k := range keys {
				ops = append(ops, store.PutOp("w/"+k, []byte(`1`), store.Any))
				if len(ops) == 100 {
					if _, err := s.Txn(ops...); err != nil {
						t.Fatal(err)
					}
					ops = nil
				}
			}
			if len(ops) > 0 {
				if _, err := s.Txn(ops...); err != nil {
					t.Fatal(err)
				}
			}
			// Records beside the prefix, which no page may hold.
			for _, k := range []string{"w", "v/z", "wa/1", "x/1"} {
				if _, err := s.Put(k, []byte(`1`), store.Any); err != nil {
					t.Fatal(err)
				}
			}
			for _, limit := range []int{100, 7, 1001} {
				req0, walked0, read0 := s.RangeStats()
				var got []string
				after := ""
				for {
					recs, err := s.Range("w/", after, limit)
					if err != nil {
						t.Fatal(err)
					}
					if len(recs) > limit {
						t.Fatalf("limit %d: a page of %d records", limit, len(recs))
					}
					for _, r := range recs {
						got = append(got, strings.TrimPrefix(r.Key, "w/"))
					}
					if len(recs) < limit {
						break
					}
					after = recs[len(recs)-1].Key
				}
				if !slices.Equal(got, keys) {
					t.Fatalf("limit %d: read %d keys, want the %d of the prefix in order (first difference at %d)", limit, len(got), len(keys), firstDiff(got, keys))
				}
				req, walked, read := s.RangeStats()
				req, walked, read = req-req0, walked-walked0, read-read0
				t.Logf("limit %d: %d range requests, etcd walked %d keys to read %d", limit, req, walked, read)
				// Pages of 7 are too small for a window's guess to be close
				// (they still walk far less than n²/2p).
				if name != "long" && limit >= 100 && walked > 8*int64(len(keys)) {
					t.Errorf("limit %d: etcd walked %d keys to read %d, want at most 8× (to the prefix's end for every page: %d)", limit, walked, read, len(keys)*len(keys)/(2*limit))
				}
			}
			recs, err := s.List("w/")
			if err != nil || len(recs) != len(keys) {
				t.Fatalf("List: %d records (%v), want %d", len(recs), err, len(keys))
			}
		})
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
