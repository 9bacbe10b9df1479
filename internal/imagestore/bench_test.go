package imagestore

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// BenchmarkPull20MB pulls a 20 MB single-layer image (one file of random
// bytes, so gzip does not shrink it) from the in-process registry on
// loopback: cold (download, verify, unpack, syncfs, record), warm (the image
// is there: the tag is resolved at the registry and the record rewritten),
// by digest (no network) and Get.
//
//	go test -run '^$' -bench Pull20MB -benchtime 20x ./internal/imagestore
func BenchmarkPull20MB(b *testing.B) {
	benchLog := slog.New(slog.DiscardHandler)
	if os.Getenv("IMAGESTORE_BENCH_LOG") != "" {
		benchLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	reg := newRegistry(b)
	img, err := random.Image(20<<20, 1)
	if err != nil {
		b.Fatal(err)
	}
	ref := reg.ref("bench:20mb")
	reg.push(b, ref, img)
	byDigest := reg.ref("bench@" + digestOf(b, img).String())
	size := int64(20 << 20)
	base := b.TempDir()

	b.Run("cold", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			dir, err := os.MkdirTemp(base, "cold")
			if err != nil {
				b.Fatal(err)
			}
			s, err := Open(dir, WithKeychain(noCreds), WithLogger(benchLog))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := s.Pull(ctx, ref, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	})
	s, err := Open(filepath.Join(base, "warm"), WithKeychain(noCreds))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Pull(ctx, ref, nil); err != nil {
		b.Fatal(err)
	}
	b.Run("warm-tag", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Pull(ctx, ref, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm-digest", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Pull(ctx, byDigest, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Get(ref); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPullManyFiles pulls crashImage (3 layers, ~1100 entries, ~15 MB)
// into a new store each time.
func BenchmarkPullManyFiles(b *testing.B) {
	reg := newRegistry(b)
	img, _ := crashImage(b)
	ref := reg.ref("many:1")
	reg.push(b, ref, img)
	base := b.TempDir()
	for b.Loop() {
		b.StopTimer()
		dir, err := os.MkdirTemp(base, "cold")
		if err != nil {
			b.Fatal(err)
		}
		s, err := Open(dir, WithKeychain(noCreds))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
