package ociregistry

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// serve serves a registry on dir until stop (or the test's end).
func serve(t *testing.T, dir string) (stop func(), addr string) {
	t.Helper()
	r, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	stop = sync.OnceFunc(func() {
		srv.Close()
		r.Close()
	})
	t.Cleanup(stop)
	return stop, strings.TrimPrefix(srv.URL, "http://")
}

// TestPersistence: what is pushed (an image, an index, tags, by digest) is
// there to pull, whole, from a new registry over the same data dir; what is
// deleted stays deleted.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	stop, addr := serve(t, dir)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(512, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	imgRef, _ := name.ParseReference(addr + "/team/sensor:1.0")
	idxRef, _ := name.ParseReference(addr + "/multi:latest")
	goneRef, _ := name.ParseReference(addr + "/team/sensor:old")
	if err := remote.Write(imgRef, img); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(idxRef, idx); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(goneRef, img); err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(goneRef); err != nil {
		t.Fatal(err)
	}
	stop()

	_, addr2 := serve(t, dir)
	imgDigest, _ := img.Digest()
	idxDigest, _ := idx.Digest()
	for _, ref := range []string{addr2 + "/team/sensor:1.0", addr2 + "/team/sensor@" + imgDigest.String()} {
		r, _ := name.ParseReference(ref)
		got, err := remote.Image(r)
		if err != nil {
			t.Fatalf("pull %s after a restart: %v", ref, err)
		}
		if d, _ := got.Digest(); d != imgDigest {
			t.Errorf("%s: digest %s, want %s", ref, d, imgDigest)
		}
		if err := validate.Image(got); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
	r, _ := name.ParseReference(addr2 + "/multi:latest")
	gotIdx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("pull the index after a restart: %v", err)
	}
	if d, _ := gotIdx.Digest(); d != idxDigest {
		t.Errorf("index digest %s, want %s", d, idxDigest)
	}
	if err := validate.Index(gotIdx); err != nil {
		t.Error(err)
	}
	r, _ = name.ParseReference(addr2 + "/team/sensor:old")
	if _, err := remote.Image(r); err == nil {
		t.Error("a deleted tag came back after a restart")
	}
	// Files are private, and nothing of a write is left half-done.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, _ := d.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v", p, fi.Mode().Perm())
			}
			if strings.Contains(d.Name(), ".tmp-") {
				t.Errorf("temp file left: %s", p)
			}
		}
		return nil
	})
}

// TestBadNames: a repository or tag that may not name a file is refused.
func TestBadNames(t *testing.T) {
	r, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, p := range []string{"/v2/../x/manifests/1", "/v2/UPPER/manifests/1", "/v2/ok/manifests/..", "/v2/a/../b/blobs/uploads/"} {
		req := httptest.NewRequest("PUT", p, strings.NewReader("{}"))
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != 400 {
			t.Errorf("PUT %s: %d %s", p, rec.Code, rec.Body)
		}
	}
}

// TestLock: a second registry on a data dir in use fails to open, naming
// the first's pid; once the first is closed, it opens.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, nil)
	want := fmt.Sprintf("registry data dir %s is in use by pid %d", dir, os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Open: %v, want %q", err, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	r2.Close()
}
