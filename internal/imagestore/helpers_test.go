package imagestore

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testRegistry is go-containerregistry's registry on 127.0.0.1, behind a
// handler that counts requests and can corrupt a blob or demand basic auth.
type testRegistry struct {
	Addr string
	srv  *httptest.Server

	mu        sync.Mutex
	blobGets  int
	corrupt   map[string]bool // blob digests served with one byte flipped
	basicUser string
	basicPass string
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr := &testRegistry{corrupt: map[string]bool{}}
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		user, pass := tr.basicUser, tr.basicPass
		isBlobGet := r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
		if isBlobGet {
			tr.blobGets++
		}
		corrupt := isBlobGet && tr.corrupt[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
		tr.mu.Unlock()
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="outpost-test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		if corrupt {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			if len(b) > 0 {
				b[len(b)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(b)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.Addr = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (r *testRegistry) ref(repo string) string { return r.Addr + "/" + repo }

func (r *testRegistry) blobGetCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets
}

func (r *testRegistry) setCorrupt(h v1.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[h.String()] = true
}

func (r *testRegistry) requireBasicAuth(user, pass string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.basicUser, r.basicPass = user, pass
}

// push writes img (an image or an index) to ref, as the registry's owner
// (with its basic auth, if it has any).
func (r *testRegistry) push(t testing.TB, ref string, img any) {
	t.Helper()
	nref, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	auth := authn.Anonymous
	if r.basicUser != "" {
		auth = &authn.Basic{Username: r.basicUser, Password: r.basicPass}
	}
	r.mu.Unlock()
	switch v := img.(type) {
	case v1.Image:
		err = remote.Write(nref, v, remote.WithAuth(auth))
	case v1.ImageIndex:
		err = remote.WriteIndex(nref, v, remote.WithAuth(auth))
	default:
		t.Fatalf("push %T", img)
	}
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// entry is one tar entry of a crafted layer.
type entry struct {
	Name     string
	Type     byte // tar.TypeReg when 0
	Body     string
	Linkname string
	Mode     int64
	Major    int64
}

func file(name, body string) entry { return entry{Name: name, Type: tar.TypeReg, Body: body} }
func mkdir(name string) entry      { return entry{Name: name, Type: tar.TypeDir, Mode: 0o755} }
func symlink(name, target string) entry {
	return entry{Name: name, Type: tar.TypeSymlink, Linkname: target}
}
func hardlink(name, target string) entry {
	return entry{Name: name, Type: tar.TypeLink, Linkname: target}
}

// tarBytes writes entries as an uncompressed tar.
func tarBytes(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: e.Name, Typeflag: typ, Linkname: e.Linkname, Mode: mode, Devmajor: e.Major, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if typ == tar.TypeXGlobalHeader {
			h = &tar.Header{Name: e.Name, Typeflag: typ, PAXRecords: map[string]string{"comment": "git archive"}}
		}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar %s: %v", e.Name, err)
		}
		if typ == tar.TypeReg {
			io.WriteString(tw, e.Body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer makes a gzip layer of entries (tarball compresses and computes the
// digest and the diffID).
func layer(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image makes an image of layers for platform p (the host's when zero).
func image(t testing.TB, p v1.Platform, layers ...v1.Layer) v1.Image {
	t.Helper()
	if p.OS == "" {
		p = v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Entrypoint = []string{"/app"}
	cf.Config.Env = []string{"PATH=/bin", "PLATFORM=" + platformString(p)}
	cf.Config.WorkingDir = "/work"
	cf.Config.User = "1000"
	cf.Config.Labels = map[string]string{"org.example": "yes"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// noCreds is a keychain with nothing in it, so tests do not read the
// machine's docker config.
var noCreds = authn.NewMultiKeychain()

// openStore opens a store in dir with no credentials and a test logger.
func openStore(t testing.TB, dir string, opts ...Option) *Store {
	t.Helper()
	opts = append([]Option{WithKeychain(noCreds), WithLogger(testLogger(t))}, opts...)
	s, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// fileState describes one path of a tree: its kind, content hash or link
// target, and permission bits.
type fileState struct {
	Kind string // "file", "dir", "symlink"
	Data string // sha256 of a file, target of a symlink
	Mode fs.FileMode
}

// snapshot walks dir and describes every path under it.
func snapshot(t testing.TB, dir string) map[string]fileState {
	t.Helper()
	m := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			tgt, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[rel] = fileState{Kind: "symlink", Data: tgt}
		case d.IsDir():
			m[rel] = fileState{Kind: "dir", Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			m[rel] = fileState{Kind: "file", Data: hex.EncodeToString(sum[:]), Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// leftovers lists what a store dir has that only a finished pull should
// leave: temp entries, rootfs dirs, image records.
func leftovers(t testing.TB, dir string) (tmp, rootfs, records []string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), tmpMarker) {
			tmp = append(tmp, p)
		}
		return nil
	})
	ents, _ := os.ReadDir(filepath.Join(dir, rootfsDir))
	for _, e := range ents {
		rootfs = append(rootfs, e.Name())
	}
	ents, _ = os.ReadDir(filepath.Join(dir, imagesDir))
	for _, e := range ents {
		records = append(records, e.Name())
	}
	return
}

func blobNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, blobsDir, "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func isNotPulled(err error) bool { return errors.Is(err, ErrNotPulled) }
