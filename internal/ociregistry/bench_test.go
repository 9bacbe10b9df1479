package ociregistry

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// benchPush pushes a new image of 3 layers of 1 MiB to the registry behind
// h each iteration: what outpost build --push does after a change.
func benchPush(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	imgs := make([]v1.Image, b.N)
	for i := range imgs {
		imgs[i] = staticImage(b)
	}
	ref, _ := name.ParseReference(addr + "/bench:1")
	b.SetBytes(3 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := remote.Write(ref, imgs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// staticImage is a random image of 3 layers of 1 MiB whose compressed
// bytes and digests are computed once, before the timer.
func staticImage(b *testing.B) v1.Image {
	rnd, err := random.Image(1<<20, 3)
	if err != nil {
		b.Fatal(err)
	}
	ls, _ := rnd.Layers()
	var layers []v1.Layer
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			b.Fatal(err)
		}
		sl := static.NewLayer(data, types.DockerLayer)
		if _, err := sl.Digest(); err != nil {
			b.Fatal(err)
		}
		layers = append(layers, sl)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := img.Digest(); err != nil {
		b.Fatal(err)
	}
	return img
}

// BenchmarkPushMemory is ggcr's registry as it comes: all in memory.
func BenchmarkPushMemory(b *testing.B) {
	benchPush(b, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
}

// BenchmarkPushDisk is this package's: blobs and manifests fsynced to disk.
func BenchmarkPushDisk(b *testing.B) {
	r, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	benchPush(b, r)
}
