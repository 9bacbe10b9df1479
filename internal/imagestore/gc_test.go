package imagestore

import (
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestGC(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	shared := layer(t, file("shared", "base layer"))
	imgA := image(t, v1.Platform{}, shared, layer(t, file("a", "a")))
	imgB := image(t, v1.Platform{}, shared, layer(t, file("b", "b")))
	imgC := image(t, v1.Platform{}, layer(t, file("c", "c")))
	refA, refA2, refB, refC := reg.ref("a:1"), reg.ref("a2:1"), reg.ref("b:1"), reg.ref("c:1")
	reg.push(t, refA, imgA)
	reg.push(t, refA2, imgA)
	reg.push(t, refB, imgB)
	reg.push(t, refC, imgC)

	dir := t.TempDir()
	s := openStore(t, dir)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	for _, r := range []string{refA, refA2, refB, refC} {
		if _, err := s.Pull(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}

	// Too recent: nothing goes.
	now = now.Add(30 * time.Minute)
	if removed, err := s.GC(nil, time.Hour); err != nil || len(removed) != 0 {
		t.Fatalf("GC of recent images = %v, %v", removed, err)
	}

	// C was used since (Get counts); A2 is in use by digest, B by tag.
	now = now.Add(2 * time.Hour)
	if _, err := s.Get(refC); err != nil {
		t.Fatal(err)
	}
	removed, err := s.GC([]string{refB, "sha256:" + digestOf(t, imgA).Hex}, time.Hour)
	if err != nil || len(removed) != 0 {
		t.Fatalf("GC = %v, %v; want nothing removed (A, A2 by digest, B by tag, C recent)", removed, err)
	}

	// Only B in use now: A and A2 (one rootfs) go, and C.
	now = now.Add(2 * time.Hour)
	removed, err = s.GC([]string{refB}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values([]string{refA, refA2, refC})); !slices.Equal(removed, want) {
		t.Errorf("GC removed %v, want %v", removed, want)
	}
	for _, r := range []string{refA, refA2, refC} {
		if _, err := s.Get(r); !isNotPulled(err) {
			t.Errorf("Get(%s) after GC = %v", r, err)
		}
	}
	b, err := s.Get(refB)
	if err != nil {
		t.Fatal(err)
	}
	if diff := diffTrees(snapshot(t, b.Rootfs), map[string]fileState{
		"shared": {Kind: "file", Data: sha("base layer"), Mode: 0o644},
		"b":      {Kind: "file", Data: sha("b"), Mode: 0o644},
	}); diff != "" {
		t.Error(diff)
	}
	// Exactly B's blobs remain (the shared layer with them), and its rootfs.
	mb, _ := imgB.Manifest()
	var want []string
	for _, h := range append([]v1.Hash{digestOf(t, imgB), mb.Config.Digest}, layerDigests(mb)...) {
		want = append(want, h.Hex)
	}
	slices.Sort(want)
	if got := blobNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("blobs after GC %v, want %v", got, want)
	}
	if _, rootfs, recs := leftovers(t, dir); !slices.Equal(rootfs, []string{b.Digest.Hex}) || len(recs) != 1 {
		t.Errorf("rootfs %v records %v after GC", rootfs, recs)
	}

	// A store reopened keeps B, and a pull of A works again.
	s.Close()
	s = openStore(t, dir)
	if _, err := s.Get(refB); err != nil {
		t.Error(err)
	}
	if _, err := s.Pull(ctx, refA, nil); err != nil {
		t.Error(err)
	}
}
