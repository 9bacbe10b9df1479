package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/pgzip"
)

// setLine rewrites the constant in the fixture's temperature line to n, a
// one-line change that changes the binary.
func setLine(t testing.TB, dir string, n int) {
	t.Helper()
	p := filepath.Join(dir, "main.go")
	src, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`round\([0-9.]+ - 39\*math\.Cos\(phase\)`)
	if !re.Match(src) {
		t.Fatal("main.go has no temperature line to change")
	}
	src = re.ReplaceAll(src, []byte("round(6"+strconv.Itoa(n)+" - 39*math.Cos(phase)")) // 61, 62, … 610, 611: each n its own
	if err := os.WriteFile(p, src, 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRebuild measures a rebuild of tempsensor for linux/amd64 after a
// one-line change: `go build` (recompiles one package and links) and what
// outpost adds (layer, compression, config, manifest, cache), reported
// apart as gobuild-ms/op and own-ms/op.
func BenchmarkRebuild(b *testing.B) {
	needGo(b)
	dir, cache := copyFixture(b), b.TempDir()
	opts := BuildOptions{CacheDir: cache, Platforms: []string{"linux/amd64"}}
	build(b, dir, opts)
	var own, gob time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		setLine(b, dir, i+1)
		res := build(b, dir, opts)
		if res.Stats.LayersBuilt != 1 {
			b.Fatalf("the binary's layer was not rebuilt: %+v", res.Stats)
		}
		own += res.Stats.Own()
		gob += res.Stats.GoBuild
	}
	b.ReportMetric(float64(own.Microseconds())/1000/float64(b.N), "own-ms/op")
	b.ReportMetric(float64(gob.Microseconds())/1000/float64(b.N), "gobuild-ms/op")
}

// BenchmarkRebuildUnchanged is a rebuild with nothing changed: the layer
// comes from the layer cache.
func BenchmarkRebuildUnchanged(b *testing.B) {
	needGo(b)
	dir, cache := copyFixture(b), b.TempDir()
	opts := BuildOptions{CacheDir: cache, Platforms: []string{"linux/amd64"}}
	build(b, dir, opts)
	var own time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res := build(b, dir, opts)
		own += res.Stats.Own()
	}
	b.ReportMetric(float64(own.Microseconds())/1000/float64(b.N), "own-ms/op")
}

// layer50MB is a 50 MB layer tar of Go's own sources and tools: text and
// binaries, as module layers hold.
func layer50MB(b *testing.B) []byte {
	b.Helper()
	const size = 50 << 20
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Skip("no go on PATH")
	}
	root := strings.TrimSpace(string(out))
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || buf.Len() >= size {
			return filepath.SkipAll
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
		return nil
	})
	if err != nil && err != filepath.SkipAll {
		b.Fatal(err)
	}
	tw.Close()
	if buf.Len() < size {
		b.Skipf("GOROOT has only %d bytes", buf.Len())
	}
	return buf.Bytes()[:size]
}

// BenchmarkCompress compares the layer compressor (pgzip, level 1, 1 MB
// blocks in parallel) with the standard library's gzip on a 50 MB layer.
func BenchmarkCompress(b *testing.B) {
	data := layer50MB(b)
	for _, c := range []struct {
		name string
		new  func(w io.Writer) io.WriteCloser
	}{
		{"pgzip-level1", func(w io.Writer) io.WriteCloser {
			z, _ := pgzip.NewWriterLevel(w, gzipLevel)
			z.SetConcurrency(gzipBlockSize, max(2, defaultJobs()))
			return z
		}},
		{"stdlib-gzip-level1", func(w io.Writer) io.WriteCloser { z, _ := gzip.NewWriterLevel(w, gzip.BestSpeed); return z }},
		{"stdlib-gzip-default", func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var n int
			for i := 0; i < b.N; i++ {
				cw := &countWriter{}
				z := c.new(cw)
				if _, err := z.Write(data); err != nil {
					b.Fatal(err)
				}
				if err := z.Close(); err != nil {
					b.Fatal(err)
				}
				n = cw.n
			}
			b.ReportMetric(float64(n)/float64(len(data))*100, "%size")
		})
	}
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
