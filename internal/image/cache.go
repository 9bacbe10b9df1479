package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// The annotations outpost puts on the descriptors of the cache's index.json.
const (
	// AnnotationRefName names the reference an entry is recorded under
	// (fully qualified: "localhost:5000/tempsensor:1.0").
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// annotationKind says who wrote the entry: "build" or "base".
	annotationKind = "dev.outpost.kind"
)

// ErrNotInCache is matched (errors.Is) by Lookup's error for a reference the
// cache does not hold.
var ErrNotInCache = errors.New("not in the local image cache")

// Cache is the local OCI image layout where builds go and bases are kept
// (DESIGN "Images"). It is an ordinary OCI layout (oci-layout, index.json,
// blobs/sha256/…) that other tools can read, plus outpost's layer index under
// .outpost/.
//
// Writes are safe against crashes and full disks: every blob is written to a
// temporary file, synced and renamed to its digest, and only then does
// index.json (rewritten whole, synced and renamed, under a lock) point at
// it. A failed write leaves the cache as it was before.
type Cache struct {
	dir string
}

// DefaultCacheDir is $OUTPOST_CACHE, else $XDG_CACHE_HOME/outpost/oci
// (~/.cache/outpost/oci on Linux).
func DefaultCacheDir() string {
	if d := os.Getenv("OUTPOST_CACHE"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = filepath.Join(os.TempDir(), "outpost-cache")
	}
	return filepath.Join(base, "outpost", "oci")
}

const (
	ociLayoutFile  = "oci-layout"
	indexFile      = "index.json"
	ociLayoutJSON  = `{"imageLayoutVersion":"1.0.0"}` + "\n"
	emptyIndexJSON = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}` + "\n"
)

// OpenCache opens the cache in dir, making an empty OCI layout there if
// there is none.
func OpenCache(dir string) (*Cache, error) {
	if dir == "" {
		dir = DefaultCacheDir()
	}
	c := &Cache{dir: dir}
	if _, err := os.Stat(filepath.Join(dir, indexFile)); err == nil {
		c.cleanTemp()
		return c, nil
	}
	for _, d := range []string{c.blobDir(), c.tmpDir(), c.layerDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, c.writeErr(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ociLayoutFile)); err != nil {
		if err := c.writeFileAtomic(filepath.Join(dir, ociLayoutFile), []byte(ociLayoutJSON), true); err != nil {
			return nil, err
		}
	}
	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, indexFile)); err != nil {
		if err := c.writeFileAtomic(filepath.Join(dir, indexFile), []byte(emptyIndexJSON), true); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Dir returns the cache's directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) blobDir() string           { return filepath.Join(c.dir, "blobs", "sha256") }
func (c *Cache) blobPath(h v1.Hash) string { return filepath.Join(c.dir, "blobs", h.Algorithm, h.Hex) }
func (c *Cache) tmpDir() string            { return filepath.Join(c.dir, ".outpost", "tmp") }
func (c *Cache) layerDir() string          { return filepath.Join(c.dir, ".outpost", "layers", compressorID) }

// CacheError is a failure to write into the image cache. The cache is left
// as it was: what was being written is not recorded anywhere.
type CacheError struct {
	Dir string
	Err error
}

func (e *CacheError) Error() string {
	if e.DiskFull() {
		return fmt.Sprintf("write to the image cache %s: the disk is full (%v); the cache is unchanged", e.Dir, e.Err)
	}
	return fmt.Sprintf("write to the image cache %s: %v", e.Dir, e.Err)
}

func (e *CacheError) Unwrap() error { return e.Err }

// DiskFull reports whether the write failed for want of space.
func (e *CacheError) DiskFull() bool {
	return errors.Is(e.Err, syscall.ENOSPC) || errors.Is(e.Err, syscall.EDQUOT)
}

// Hint says what to do next.
func (e *CacheError) Hint() string {
	if e.DiskFull() {
		return "Free some space, or point --cache (env OUTPOST_CACHE) at another disk, and build again."
	}
	return "Check that the cache directory is writable, or point --cache (env OUTPOST_CACHE) elsewhere."
}

// writeErr wraps a failed write into the cache.
func (c *Cache) writeErr(err error) error {
	var ce *CacheError
	if errors.As(err, &ce) {
		return err
	}
	return &CacheError{Dir: c.dir, Err: err}
}

// HasBlob reports whether the cache holds blob h with the given size (any
// size when size < 0).
func (c *Cache) HasBlob(h v1.Hash, size int64) bool {
	fi, err := os.Stat(c.blobPath(h))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// Blob opens blob h.
func (c *Cache) Blob(h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(c.blobPath(h))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", h, ErrNotInCache)
		}
		return nil, err
	}
	return f, nil
}

// Bytes reads blob h whole.
func (c *Cache) Bytes(h v1.Hash) ([]byte, error) {
	b, err := os.ReadFile(c.blobPath(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", h, ErrNotInCache)
	}
	return b, err
}

// writeHook, when set (by tests), is called with each blob or file about to
// be written and may fail the write, as a full disk would, after part of
// the data is written.
var writeHook func(path string) error

// tempFile makes a temporary file in the cache, on the same file system as
// the blobs so that it can be renamed into place.
func (c *Cache) tempFile() (*os.File, error) {
	f, err := os.CreateTemp(c.tmpDir(), "blob-*")
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(c.tmpDir(), 0o755); err == nil {
			f, err = os.CreateTemp(c.tmpDir(), "blob-*")
		}
	}
	if err != nil {
		return nil, c.writeErr(err)
	}
	return f, nil
}

// blobWriter writes one blob: to a temporary file while hashing, then
// commit syncs it and renames it to its digest.
type blobWriter struct {
	c    *Cache
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

func (c *Cache) newBlobWriter() (*blobWriter, error) {
	f, err := c.tempFile()
	if err != nil {
		return nil, err
	}
	return &blobWriter{c: c, f: f, h: sha256.New()}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	if writeHook != nil {
		if err := writeHook(w.f.Name()); err != nil {
			return 0, w.c.writeErr(err)
		}
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, w.c.writeErr(err)
	}
	return n, nil
}

// commit makes the blob durable under its digest (checked against want,
// when want is set) and returns the digest and size.
func (w *blobWriter) commit(want v1.Hash) (v1.Hash, int64, error) {
	defer w.abort()
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.h.Sum(nil))}
	if want.Hex != "" && got != want {
		return v1.Hash{}, 0, fmt.Errorf("blob digest mismatch: got %s, want %s", got, want)
	}
	if err := w.f.Sync(); err != nil {
		return v1.Hash{}, 0, w.c.writeErr(err)
	}
	if err := w.f.Close(); err != nil {
		return v1.Hash{}, 0, w.c.writeErr(err)
	}
	if w.c.HasBlob(got, w.n) {
		return got, w.n, nil // someone else wrote it; abort removes ours
	}
	if err := os.MkdirAll(w.c.blobDir(), 0o755); err != nil {
		return v1.Hash{}, 0, w.c.writeErr(err)
	}
	if err := os.Rename(w.f.Name(), w.c.blobPath(got)); err != nil {
		return v1.Hash{}, 0, w.c.writeErr(err)
	}
	w.done = true
	return got, w.n, nil
}

// abort removes the temporary file unless the blob was committed.
func (w *blobWriter) abort() {
	if !w.done {
		w.f.Close()
		os.Remove(w.f.Name())
		w.done = true
	}
}

// putBlob writes data as a blob and returns its descriptor.
func (c *Cache) putBlob(data []byte, mt types.MediaType) (v1.Descriptor, error) {
	h, n, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return v1.Descriptor{}, err
	}
	desc := v1.Descriptor{MediaType: mt, Size: n, Digest: h}
	if c.HasBlob(h, n) {
		return desc, nil
	}
	w, err := c.newBlobWriter()
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer w.abort()
	if _, err := w.Write(data); err != nil {
		return v1.Descriptor{}, err
	}
	if _, _, err := w.commit(h); err != nil {
		return v1.Descriptor{}, err
	}
	return desc, nil
}

// putStream copies r into a blob, checking it against want (digest and,
// when want.Size > 0, size).
func (c *Cache) putStream(r io.Reader, want v1.Descriptor) error {
	if c.HasBlob(want.Digest, want.Size) {
		return nil
	}
	w, err := c.newBlobWriter()
	if err != nil {
		return err
	}
	defer w.abort()
	if _, err := io.Copy(w, r); err != nil {
		return err // a *CacheError when writing failed
	}
	_, n, err := w.commit(want.Digest)
	if err != nil {
		return err
	}
	if want.Size > 0 && n != want.Size {
		return fmt.Errorf("blob %s: got %d bytes, want %d", want.Digest, n, want.Size)
	}
	return nil
}

// writeFileAtomic replaces path with data, mode 0644; durable, also through a power loss.
func (c *Cache) writeFileAtomic(path string, data []byte, durable bool) error {
	if writeHook != nil {
		if err := writeHook(path); err != nil {
			return c.writeErr(err)
		}
	}
	var opts []atomicfile.Option
	if !durable {
		opts = append(opts, atomicfile.NoSync())
	}
	if err := atomicfile.WriteFile(path, data, 0o644, opts...); err != nil {
		return c.writeErr(err)
	}
	return nil
}

// readIndex reads index.json.
func (c *Cache) readIndex() (*v1.IndexManifest, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, indexFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, nil
		}
		return nil, err
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("the image cache's %s is damaged (%v): move it away and build again", filepath.Join(c.dir, indexFile), err)
	}
	return &im, nil
}

// refName is the key a reference is recorded under: its fully qualified
// name.
func refName(ref name.Reference) string { return ref.Name() }

// Tag records desc under ref in index.json, replacing what was recorded
// under the same reference. kind is "build" or "base".
func (c *Cache) Tag(ref name.Reference, desc v1.Descriptor, kind string) error {
	if err := atomicfile.SyncDir(c.blobDir()); err != nil {
		return c.writeErr(err)
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	im, err := c.readIndex()
	if err != nil {
		return err
	}
	key := refName(ref)
	kept := im.Manifests[:0]
	for _, d := range im.Manifests {
		if d.Annotations[AnnotationRefName] != key {
			kept = append(kept, d)
		}
	}
	desc.Annotations = map[string]string{AnnotationRefName: key}
	if kind != "" {
		desc.Annotations[annotationKind] = kind
	}
	desc.Platform = nil
	im.Manifests = append(kept, desc)
	if im.MediaType == "" {
		im.MediaType = types.OCIImageIndex
	}
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	return c.writeFileAtomic(filepath.Join(c.dir, indexFile), append(b, '\n'), true)
}

// Descriptor returns what is recorded under ref: for a tag, the index.json
// entry; for a digest reference, the blob itself.
func (c *Cache) Descriptor(ref name.Reference) (v1.Descriptor, error) {
	if d, ok := ref.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return v1.Descriptor{}, err
		}
		b, err := c.Bytes(h)
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("%s: %w", ref, ErrNotInCache)
		}
		return v1.Descriptor{MediaType: sniffMediaType(b), Size: int64(len(b)), Digest: h}, nil
	}
	im, err := c.readIndex()
	if err != nil {
		return v1.Descriptor{}, err
	}
	key := refName(ref)
	for _, d := range im.Manifests {
		if d.Annotations[AnnotationRefName] == key {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%s: %w", key, ErrNotInCache)
}

// Lookup returns the image or index recorded under ref (a tag such as
// localhost:5000/tempsensor:1.0 or a repo@sha256:… digest reference): what
// `outpost push REF` pushes. Its layers are read from the cache as they are,
// never recompressed.
func (c *Cache) Lookup(ref string) (remote.Taggable, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference: %w", ref, err)
	}
	d, err := c.Descriptor(r)
	if err != nil {
		return nil, err
	}
	return c.Artifact(d)
}

// Artifact returns the image or index described by d.
func (c *Cache) Artifact(d v1.Descriptor) (remote.Taggable, error) {
	if d.MediaType.IsIndex() {
		return c.Index(d.Digest)
	}
	return c.Image(d.Digest)
}

// Image returns the image whose manifest is blob h.
func (c *Cache) Image(h v1.Hash) (v1.Image, error) {
	raw, err := c.Bytes(h)
	if err != nil {
		return nil, err
	}
	return c.imageFromManifest(raw)
}

func (c *Cache) imageFromManifest(raw []byte) (v1.Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	return partial.CompressedToImage(&cachedImage{c: c, raw: raw, manifest: m, mt: mt})
}

// Index returns the image index whose manifest is blob h.
func (c *Cache) Index(h v1.Hash) (v1.ImageIndex, error) {
	raw, err := c.Bytes(h)
	if err != nil {
		return nil, err
	}
	return c.indexFromManifest(raw)
}

func (c *Cache) indexFromManifest(raw []byte) (v1.ImageIndex, error) {
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	mt := im.MediaType
	if mt == "" {
		mt = types.OCIImageIndex
	}
	return &cachedIndex{c: c, raw: raw, index: im, mt: mt}, nil
}

// sniffMediaType tells a manifest's media type from its content.
func sniffMediaType(b []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(b, &probe) == nil {
		if probe.MediaType != "" {
			return probe.MediaType
		}
		if probe.Manifests != nil {
			return types.OCIImageIndex
		}
	}
	return types.OCIManifestSchema1
}

// cachedImage is an image whose blobs are in the cache.
type cachedImage struct {
	c        *Cache
	raw      []byte
	manifest *v1.Manifest
	mt       types.MediaType
}

var _ partial.CompressedImageCore = (*cachedImage)(nil)

func (i *cachedImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *cachedImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *cachedImage) RawConfigFile() ([]byte, error)      { return i.c.Bytes(i.manifest.Config.Digest) }
func (i *cachedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == i.manifest.Config.Digest {
		return &cachedBlob{c: i.c, desc: i.manifest.Config}, nil
	}
	for _, d := range i.manifest.Layers {
		if d.Digest == h {
			return &cachedBlob{c: i.c, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in the image", h)
}

// cachedBlob is a layer or config blob in the cache.
type cachedBlob struct {
	c    *Cache
	desc v1.Descriptor
}

func (b *cachedBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *cachedBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *cachedBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }
func (b *cachedBlob) Compressed() (io.ReadCloser, error)  { return b.c.Blob(b.desc.Digest) }
func (b *cachedBlob) Descriptor() (*v1.Descriptor, error) { d := b.desc; return &d, nil }
func (b *cachedBlob) Exists() (bool, error)               { return b.c.HasBlob(b.desc.Digest, b.desc.Size), nil }

// cachedIndex is an image index whose blobs are in the cache.
type cachedIndex struct {
	c     *Cache
	raw   []byte
	index *v1.IndexManifest
	mt    types.MediaType
}

var _ v1.ImageIndex = (*cachedIndex)(nil)

func (i *cachedIndex) MediaType() (types.MediaType, error)       { return i.mt, nil }
func (i *cachedIndex) Digest() (v1.Hash, error)                  { return partial.Digest(i) }
func (i *cachedIndex) Size() (int64, error)                      { return int64(len(i.raw)), nil }
func (i *cachedIndex) IndexManifest() (*v1.IndexManifest, error) { return i.index.DeepCopy(), nil }
func (i *cachedIndex) RawManifest() ([]byte, error)              { return i.raw, nil }
func (i *cachedIndex) Image(h v1.Hash) (v1.Image, error)         { return i.c.Image(h) }
func (i *cachedIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return i.c.Index(h)
}

// lockPath is the file whose lock is held while index.json is read and
// rewritten, so that two builds at once do not lose each other's entries.
func (c *Cache) lockPath() string { return filepath.Join(c.dir, ".outpost", "lock") }

// processLock serialises index.json updates within one process (a flock is
// per open file description, so two goroutines would not exclude each other).
var processLock sync.Mutex

// cleanTemp removes temporary files older than a day, left by builds that
// crashed.
func (c *Cache) cleanTemp() {
	entries, err := os.ReadDir(c.tmpDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour && strings.HasPrefix(e.Name(), "blob-") {
			os.Remove(filepath.Join(c.tmpDir(), e.Name()))
		}
	}
}
