package imagestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/dirlock"
	"github.com/outpost-edge/outpost/internal/keylock"
)

const (
	blobsDir   = "blobs"
	rootfsDir  = "rootfs"
	imagesDir  = "images"
	lockName   = "lock"
	tmpMarker  = ".tmp-"
	recordExt  = ".json"
	touchEvery = time.Minute // Get persists a record's last use at most this often
)

// Image is an image the store has pulled and unpacked.
type Image struct {
	// Ref is the reference it was pulled by, as given.
	Ref string
	// Digest is the digest of the platform image's manifest (not of the
	// index it was picked from).
	Digest v1.Hash
	// Platform is the platform of the image.
	Platform v1.Platform
	// Rootfs is the unpacked filesystem, shared by every module that runs
	// this image: use it read-only.
	Rootfs string
	// Config is the image's run config: Entrypoint, Cmd, Env, WorkingDir,
	// User, Labels, ExposedPorts.
	Config v1.Config
}

// Option configures a Store.
type Option func(*options)

type options struct {
	keychain authn.Keychain
	platform *v1.Platform
	insecure func(host string) bool
	log      *slog.Logger
	noSync   bool
}

// WithKeychain sets where registry credentials come from when the deployment
// has none for a registry (default authn.DefaultKeychain: docker's config and
// credential helpers).
func WithKeychain(kc authn.Keychain) Option { return func(o *options) { o.keychain = kc } }

// WithPlatform sets the platform to pull (default HostPlatform()).
func WithPlatform(p v1.Platform) Option { return func(o *options) { o.platform = &p } }

// WithInsecure allows plain HTTP to the registries (host[:port]) for which
// insecure returns true. Loopback registries may always use plain HTTP.
func WithInsecure(insecure func(host string) bool) Option {
	return func(o *options) { o.insecure = insecure }
}

// WithoutSync skips flushing an unpacked image to disk before it is used:
// a pull is faster (syncfs(2) can take hundreds of milliseconds on a busy
// disk), and a power loss may leave a rootfs half written. For stores that
// can be thrown away (outpost dev's).
func WithoutSync() Option { return func(o *options) { o.noSync = true } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Store is the device's image store. Its methods are safe for concurrent use.
type Store struct {
	dir             string
	o               options
	log             *slog.Logger
	platform        v1.Platform
	defaultKeychain bool
	transport       http.RoundTripper
	pulls           pullCount // closes base's idle connections when the last pull ends
	lockFile        *os.File
	now             func() time.Time

	mu       sync.Mutex
	closed   bool
	records  map[string]*record // by canonical reference
	inflight map[string]int     // digest hex → running pulls that need it
	dlocks   keylock.Locks      // a manifest digest's pulls, one at a time
}

// record is an image record, images/<escaped-ref>.json.
type record struct {
	Name         string      `json:"name"` // canonical reference, the key
	Ref          string      `json:"ref"`  // as given to Pull
	Digest       v1.Hash     `json:"digest"`
	IndexDigest  *v1.Hash    `json:"indexDigest,omitempty"`
	Platform     v1.Platform `json:"platform"`
	ConfigDigest v1.Hash     `json:"configDigest"`
	Layers       []v1.Hash   `json:"layers"`
	Config       v1.Config   `json:"config"`
	Pulled       time.Time   `json:"pulled"`
	LastUsed     time.Time   `json:"lastUsed"`

	persistedUse time.Time
}

// blobs lists the digests of every blob the record needs.
func (r *record) blobs() []v1.Hash {
	return append([]v1.Hash{r.Digest, r.ConfigDigest}, r.Layers...)
}

// Open opens the image store in dir, creating it if needed, and locks it: a
// second Open of the same dir fails until Close. It removes what pulls that
// were killed left behind and loads the image records.
func Open(dir string, opts ...Option) (*Store, error) {
	o := options{keychain: authn.DefaultKeychain, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Store{
		dir:             dir,
		o:               o,
		log:             o.log,
		platform:        HostPlatform(),
		defaultKeychain: o.keychain == authn.DefaultKeychain,
		now:             time.Now,
		records:         map[string]*record{},
		inflight:        map[string]int{},
	}
	if o.platform != nil {
		s.platform = *o.platform
	}
	base := remote.DefaultTransport.(*http.Transport).Clone()
	s.transport = &plainHTTPGuard{base: base, insecure: o.insecure}
	s.pulls.base = base

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{{filepath.Join(dir, blobsDir, "sha256"), 0o700}, {filepath.Join(dir, rootfsDir), 0o755}, {filepath.Join(dir, imagesDir), 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	lf, err := dirlock.Lock(filepath.Join(dir, lockName))
	var busy *dirlock.BusyError
	if errors.As(err, &busy) {
		return nil, fmt.Errorf("image store %s is in use by %s (another outpost daemon running?)", dir, busy.Holder)
	}
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	s.lockFile = lf
	s.removeLeftovers()
	if err := s.load(); err != nil {
		lf.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the store's lock. Pulls still running fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lockFile.Close()
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Platform is the platform the store pulls.
func (s *Store) Platform() v1.Platform { return s.platform }

// removeLeftovers removes the temp files and directories of pulls that did not
// finish.
func (s *Store) removeLeftovers() {
	for _, d := range []string{filepath.Join(s.dir, blobsDir, "sha256"), filepath.Join(s.dir, rootfsDir), filepath.Join(s.dir, imagesDir)} {
		ents, err := os.ReadDir(d)
		if err != nil {
			s.log.Warn("image store: read dir", "dir", d, "err", err)
			continue
		}
		for _, e := range ents {
			if !strings.Contains(e.Name(), tmpMarker) {
				continue
			}
			p := filepath.Join(d, e.Name())
			if err := removeTree(p); err != nil {
				s.log.Warn("image store: remove leftover of an unfinished pull", "path", p, "err", err)
				continue
			}
			s.log.Info("image store: removed leftover of an unfinished pull", "path", p)
		}
	}
}

// load reads the image records. A record that cannot be read, or whose rootfs
// is missing, is skipped with a warning: the image counts as not pulled and
// the next pull of it writes the record again.
func (s *Store) load() error {
	d := filepath.Join(s.dir, imagesDir)
	ents, err := os.ReadDir(d)
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), recordExt) || strings.Contains(e.Name(), tmpMarker) {
			continue
		}
		p := filepath.Join(d, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("image store: %w", err)
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil || r.Name == "" || r.Digest.Hex == "" {
			s.log.Warn("image store: skipping a damaged image record", "file", p, "err", err)
			continue
		}
		if fi, err := os.Stat(s.rootfsPath(r.Digest)); err != nil || !fi.IsDir() {
			s.log.Warn("image store: skipping an image record whose rootfs is missing", "file", p, "ref", r.Ref, "digest", r.Digest)
			continue
		}
		r.persistedUse = r.LastUsed
		s.records[r.Name] = &r
	}
	return nil
}

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.dir, blobsDir, "sha256", h.Hex)
}

func (s *Store) rootfsPath(h v1.Hash) string {
	return filepath.Join(s.dir, rootfsDir, h.Hex)
}

func (s *Store) recordPath(key string) string {
	return filepath.Join(s.dir, imagesDir, escapeRef(key)+recordExt)
}

// escapeRef makes a file name of a reference: [A-Za-z0-9._-] as they are,
// every other byte as %XX; long ones are cut and end in a hash of the whole.
func escapeRef(ref string) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	e := b.String()
	if strings.HasPrefix(e, ".") {
		e = "%2E" + e[1:]
	}
	if len(e) > 200 {
		h, _, _ := v1.SHA256(strings.NewReader(ref))
		e = e[:150] + "-" + h.Hex[:32]
	}
	return e
}

// parseRef parses an image reference the way pulls use it.
func (s *Store) parseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	host := r.Context().RegistryStr()
	if !isLoopback(host) && s.o.insecure != nil && s.o.insecure(host) {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("image reference %q: %w", ref, err)
		}
	}
	return r, nil
}

// Get returns an image already pulled, without the network: by reference
// (tag or digest, as given to Pull or in any spelling of it), or by manifest
// (or index) digest "sha256:…". It fails with ErrNotPulled when the store does
// not have it. It counts as a use for GC.
func (s *Store) Get(ref string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("image store is closed")
	}
	r := s.lookup(ref)
	if r == nil {
		return nil, fmt.Errorf("image %s: %w", ref, ErrNotPulled)
	}
	if fi, err := os.Stat(s.rootfsPath(r.Digest)); err != nil || !fi.IsDir() {
		s.log.Warn("image store: the rootfs of an image is missing; pull it again", "ref", r.Ref, "digest", r.Digest)
		return nil, fmt.Errorf("image %s: rootfs %s is missing: %w", ref, s.rootfsPath(r.Digest), ErrNotPulled)
	}
	now := s.now()
	r.LastUsed = now
	if now.Sub(r.persistedUse) >= touchEvery {
		if err := s.writeRecord(r); err != nil {
			s.log.Warn("image store: record the last use of an image", "ref", r.Ref, "err", err)
		}
	}
	return s.image(r), nil
}

// lookup finds the record for ref; s.mu held.
func (s *Store) lookup(ref string) *record {
	if strings.HasPrefix(ref, "sha256:") {
		h, err := v1.NewHash(ref)
		if err != nil {
			return nil
		}
		return s.byDigest(h, "")
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil
	}
	if rec := s.records[r.Name()]; rec != nil {
		return rec
	}
	if d, ok := r.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return nil
		}
		return s.byDigest(h, d.Context().Name())
	}
	return nil
}

// byDigest finds a record whose manifest or index digest is h, one of repo
// first; s.mu held.
func (s *Store) byDigest(h v1.Hash, repo string) *record {
	var found *record
	for _, r := range s.records {
		if r.Digest != h && (r.IndexDigest == nil || *r.IndexDigest != h) {
			continue
		}
		if repo == "" || repoOf(r.Name) == repo {
			return r
		}
		found = r
	}
	return found
}

func repoOf(canonical string) string {
	r, err := name.ParseReference(canonical)
	if err != nil {
		return ""
	}
	return r.Context().Name()
}

func (s *Store) image(r *record) *Image {
	return &Image{
		Ref:      r.Ref,
		Digest:   r.Digest,
		Platform: r.Platform,
		Rootfs:   s.rootfsPath(r.Digest),
		Config:   r.Config,
	}
}

// writeRecord writes r atomically: temp file, fsync, rename, dir fsync; s.mu
// held.
func (s *Store) writeRecord(r *record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.recordPath(r.Name), b, 0o600); err != nil {
		return fmt.Errorf("write image record: %w", err)
	}
	r.persistedUse = r.LastUsed
	return nil
}

// removeTree removes path and everything under it, first giving the owner
// write permission on directories that lack it (images have 0555 dirs, which
// the daemon, when not root, cannot otherwise empty).
func removeTree(path string) error {
	err := os.RemoveAll(path)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o700 != 0o700 {
				os.Chmod(p, fi.Mode().Perm()|0o700)
			}
		} else if err != nil && p != path {
			// A dir we could not read: make it readable and walk it again.
			if os.Chmod(p, 0o700) == nil {
				removeTree(p)
			}
		}
		return nil
	})
	return os.RemoveAll(path)
}
