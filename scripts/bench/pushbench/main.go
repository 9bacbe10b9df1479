// Command pushbench makes the image scripts/bench/push.sh pushes: LAYERS
// layers of SIZE random bytes each, gzip-compressed once (at level 1; random
// data does not shrink), written as a docker tarball (for crane push) and
// into an outpost image cache, an OCI layout (for outpost push, and crane
// push of the same layout).
//
//	go run ./scripts/bench/pushbench -dir DIR -ref HOST/REPO:TAG [-layers 5] [-size 40]
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/outpost-edge/outpost/internal/image"
)

func main() {
	dir := flag.String("dir", "", "where to write image.tar and cache/")
	ref := flag.String("ref", "", "the image reference to record them under")
	layers := flag.Int("layers", 5, "how many layers")
	size := flag.Int("size", 40, "MiB of random data per layer")
	flag.Parse()
	if *dir == "" || *ref == "" {
		log.Fatal("usage: pushbench -dir DIR -ref HOST/REPO:TAG")
	}
	r, err := name.ParseReference(*ref)
	if err != nil {
		log.Fatal(err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	src := rand.NewChaCha8([32]byte{'o', 'u', 't', 'p', 'o', 's', 't'})
	var ls []v1.Layer
	for i := range *layers {
		gz := randomLayer(src, fmt.Sprintf("layer%d", i), *size<<20)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(gz)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			log.Fatal(err)
		}
		ls = append(ls, l)
	}
	if img, err = mutate.AppendLayers(img, ls...); err != nil {
		log.Fatal(err)
	}

	if err := tarball.WriteToFile(filepath.Join(*dir, "image.tar"), r, img); err != nil {
		log.Fatal(err)
	}
	cache := filepath.Join(*dir, "cache")
	if _, err := image.OpenCache(cache); err != nil {
		log.Fatal(err)
	}
	p, err := layout.FromPath(cache)
	if err != nil {
		log.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{image.AnnotationRefName: r.Name()})); err != nil {
		log.Fatal(err)
	}
	d, _ := img.Digest()
	fmt.Printf("%s@%s: %d layers of %d MiB\n", r, d, *layers, *size)
}

// randomLayer returns a gzipped tar holding one file of n random bytes.
func randomLayer(src *rand.ChaCha8, file string, n int) []byte {
	data := make([]byte, n)
	src.Read(data)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: file, Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	zw.Close()
	return buf.Bytes()
}
