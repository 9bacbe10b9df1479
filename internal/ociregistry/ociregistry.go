// Package ociregistry is the OCI registry for local work (`outpost registry
// serve`, `outpost quickstart`): go-containerregistry's in-process registry,
// made persistent. ggcr keeps blobs through a BlobHandler, which this package
// gives it on disk (written atomically, fsynced), and manifests only in
// memory: this package writes each manifest PUT to disk before the client is
// told it is stored, removes it on DELETE, and puts them all back into a new
// registry when it opens the same directory again.
//
// Layout of the data dir:
//
//	blobs/ALG/HEX                         blobs (layers, configs)
//	repos/REPO/_digests/ALG/HEX           manifests by digest
//	repos/REPO/_tags/TAG                  manifests by tag (a copy of the manifest)
//	LOCK                                  held by the registry that has it open (its pid)
//
// A manifest file is its media type, a newline, and its bytes as pushed.
// Repository names and tags are checked against the distribution spec's
// grammar before they name a file.
package ociregistry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/dirlock"
)

// The distribution spec's grammar of names, tags and digests.
var (
	repoComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE           = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestRE        = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// Registry is a persistent registry over one data dir.
type Registry struct {
	dir  string
	h    http.Handler
	lock *os.File // the data dir's lock, held until Close
}

// Open opens (or makes, mode 0700) the data dir and loads the manifests
// stored there. logger gets ggcr's request log (nil: none). The data dir is
// locked until Close: a second registry on it (which would not see the
// first's pushes) fails to open, naming the first's pid.
func Open(dir string, logger *log.Logger) (*Registry, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	for _, d := range []string{dir, filepath.Join(dir, "blobs"), filepath.Join(dir, "repos")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("registry data dir: %w", err)
		}
	}
	lock, err := dirlock.Lock(filepath.Join(dir, lockName))
	var busy *dirlock.BusyError
	if errors.As(err, &busy) {
		return nil, fmt.Errorf("registry data dir %s is in use by %s (another outpost registry serve or quickstart running?): stop it, or pass another --data", dir, busy.Holder)
	}
	if err != nil {
		return nil, fmt.Errorf("registry data dir: %w", err)
	}
	r := &Registry{dir: dir, lock: lock, h: registry.New(registry.Logger(logger), registry.WithBlobHandler(&diskBlobs{dir: filepath.Join(dir, "blobs")}))}
	if err := r.load(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("registry data dir %s: %w", dir, err)
	}
	return r, nil
}

// lockName is the data dir's lock file.
const lockName = "LOCK"

// Close releases the data dir. Serve nothing with r after it.
func (r *Registry) Close() error { return r.lock.Close() }

// Dir is the registry's data dir.
func (r *Registry) Dir() string { return r.dir }

// manifestPath parses /v2/REPO/manifests/TARGET.
func manifestPath(p string) (repo, target string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+len("/manifests/"):], true
}

func validRepo(repo string) bool {
	for _, c := range strings.Split(repo, "/") {
		if !repoComponentRE.MatchString(c) {
			return false
		}
	}
	return len(repo) <= 255
}

// ServeHTTP serves the registry API; a manifest PUT is on disk before its
// 201, a DELETE removes it from disk.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	repo, target, isManifest := manifestPath(req.URL.Path)
	if !isManifest || (req.Method != http.MethodPut && req.Method != http.MethodDelete) {
		if strings.HasPrefix(req.URL.Path, "/v2/") && strings.Contains(req.URL.Path, "/blobs/") {
			if name, _, ok := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v2/"), "/blobs/"); ok && !validRepo(name) {
				writeError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("invalid repository name %q", name))
				return
			}
		}
		r.h.ServeHTTP(w, req)
		return
	}
	if !validRepo(repo) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("invalid repository name %q: lower-case letters and digits, separated by '.', '_', '__', '-' or '/'", repo))
		return
	}
	if !tagRE.MatchString(target) && !digestRE.MatchString(target) {
		writeError(w, http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf("invalid tag or digest %q", target))
		return
	}
	var body []byte
	if req.Method == http.MethodPut {
		b, err := io.ReadAll(io.LimitReader(req.Body, 4<<20+1))
		if err != nil {
			writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "read the manifest: "+err.Error())
			return
		}
		if len(b) > 4<<20 {
			writeError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "a manifest is at most 4 MiB")
			return
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	if rec.Code/100 == 2 {
		var err error
		if req.Method == http.MethodPut {
			err = r.storeManifest(repo, target, req.Header.Get("Content-Type"), body)
		} else {
			err = r.removeManifest(repo, target)
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "store the manifest on disk: "+err.Error())
			return
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

// manifestFile is where a manifest of repo is kept under its tag or digest.
func (r *Registry) manifestFile(repo, target string) string {
	base := filepath.Join(r.dir, "repos", filepath.FromSlash(repo))
	if alg, hex, ok := strings.Cut(target, ":"); ok {
		return filepath.Join(base, "_digests", alg, hex)
	}
	return filepath.Join(base, "_tags", target)
}

func (r *Registry) storeManifest(repo, target, mediaType string, body []byte) error {
	h, _, err := v1.SHA256(bytes.NewReader(body))
	if err != nil {
		return err
	}
	data := append([]byte(strings.ReplaceAll(mediaType, "\n", "")+"\n"), body...)
	targets := []string{h.String()}
	if target != h.String() {
		targets = append(targets, target)
	}
	for _, t := range targets {
		p := r.manifestFile(repo, t)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (r *Registry) removeManifest(repo, target string) error {
	err := os.Remove(r.manifestFile(repo, target))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// stored is a manifest read back from disk.
type stored struct {
	repo, target, mediaType string
	body                    []byte
}

// load puts the manifests on disk into the in-memory registry: images by
// digest first, then indexes (their children must be there), then tags.
func (r *Registry) load() error {
	var digests, tags []stored
	root := filepath.Join(r.dir, "repos")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || atomicfile.IsTemp(d.Name()) {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		var s stored
		switch {
		case len(parts) >= 4 && parts[len(parts)-3] == "_digests":
			s.repo = strings.Join(parts[:len(parts)-3], "/")
			s.target = parts[len(parts)-2] + ":" + parts[len(parts)-1]
		case len(parts) >= 3 && parts[len(parts)-2] == "_tags":
			s.repo = strings.Join(parts[:len(parts)-2], "/")
			s.target = parts[len(parts)-1]
		default:
			return nil // not ours
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mt, body, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			return fmt.Errorf("%s: not a stored manifest (no media type line)", p)
		}
		s.mediaType, s.body = string(mt), body
		if strings.Contains(s.target, ":") {
			digests = append(digests, s)
		} else {
			tags = append(tags, s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Indexes wait for their children; each pass stores what it can.
	for len(digests) > 0 {
		var left []stored
		for _, s := range digests {
			if types.MediaType(s.mediaType).IsIndex() && r.put(s) != nil {
				left = append(left, s)
			} else if !types.MediaType(s.mediaType).IsIndex() {
				if err := r.put(s); err != nil {
					return err
				}
			}
		}
		if len(left) == len(digests) {
			return r.put(left[0]) // says which child is missing
		}
		digests = left
	}
	for _, s := range tags {
		if err := r.put(s); err != nil {
			return err
		}
	}
	return nil
}

// put stores a manifest in the in-memory registry.
func (r *Registry) put(s stored) error {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPut, "/v2/"+s.repo+"/manifests/"+s.target, bytes.NewReader(s.body))
	req.Header.Set("Content-Type", s.mediaType)
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		return fmt.Errorf("load manifest %s:%s: %d %s", s.repo, s.target, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	return nil
}

// diskBlobs keeps blobs in dir/ALG/HEX. ggcr checks a blob's digest while
// Put reads it; a blob that does not match is never committed.
type diskBlobs struct{ dir string }

func (b *diskBlobs) path(h v1.Hash) string { return filepath.Join(b.dir, h.Algorithm, h.Hex) }

func (b *diskBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	fi, err := os.Stat(b.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, registry.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (b *diskBlobs) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(b.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, registry.ErrNotFound
	}
	return f, err
}

func (b *diskBlobs) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	p := b.path(h)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := atomicfile.Create(p, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(f, rc); err != nil {
		return err // a digest mismatch too: nothing is committed
	}
	return f.Commit()
}

func (b *diskBlobs) Delete(_ context.Context, _ string, h v1.Hash) error {
	err := os.Remove(b.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return registry.ErrNotFound
	}
	return err
}
