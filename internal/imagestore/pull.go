package imagestore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// parallelBlobs is how many blobs of one image download at once.
const parallelBlobs = 3

// Pull makes sure the store has the image ref for its platform and returns
// it. A tag is resolved at the registry every time (it may have moved); a
// digest the store already has needs no network. Only what the store lacks
// is downloaded: blobs are shared by all images, and the rootfs of a manifest
// digest is unpacked once.
//
// creds are the deployment's registryCredentials; the one whose Address is
// ref's registry is used, else the store's keychain (the device's docker
// config). Errors: *UnavailableError (exit code 5), *NotFoundError,
// *AuthError, *PlatformError, *DigestError, *UnsafeEntryError,
// *PlainHTTPError.
func (s *Store) Pull(ctx context.Context, ref string, creds []Credential) (*Image, error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return nil, err
	}
	if d, ok := r.(name.Digest); ok {
		if img, err := s.localDigest(ref, d); img != nil || err != nil {
			return img, err
		}
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	defer s.pulls.start()()
	host := r.Context().RegistryStr()
	auth, source := s.authFor(ctx, r.Context().Registry, creds)
	p := &pull{s: s, ref: ref, r: r, host: host, source: source}
	p.puller, err = remote.NewPuller(remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(s.transport), remote.WithUserAgent("outpost"))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := p.run(ctx)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w; nothing of it was kept: free space on the disk of %s, or lower image-gc-age so that unused images go sooner", err, s.dir)
		}
		return nil, err
	}
	return img, nil
}

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("image store is closed")
	}
	return nil
}

// localDigest serves a pull by digest from the store when it has the image.
func (s *Store) localDigest(ref string, d name.Digest) (*Image, error) {
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("image store is closed")
	}
	key := d.Name()
	rec := s.records[key]
	if rec == nil {
		rec = s.byDigest(h, d.Context().Name())
		if rec != nil && rec.IndexDigest != nil && *rec.IndexDigest == h && rec.Platform.OS != "" && platformScore(s.platform, rec.Platform) < 0 {
			rec = nil
		}
	}
	if rec == nil {
		return nil, nil
	}
	if fi, err := os.Stat(s.rootfsPath(rec.Digest)); err != nil || !fi.IsDir() {
		return nil, nil
	}
	now := s.now()
	if rec.Name == key && rec.Ref == ref {
		rec.LastUsed = now
		if now.Sub(rec.persistedUse) < touchEvery {
			return s.image(rec), nil
		}
	} else if rec.Name != key {
		c := *rec
		c.Name, c.Pulled = key, now
		rec = &c
	}
	rec.Ref, rec.LastUsed = ref, now
	if err := s.writeRecord(rec); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	s.records[key] = rec
	return s.image(rec), nil
}

// pull is one run of Pull against the registry.
type pull struct {
	s      *Store
	ref    string
	r      name.Reference
	host   string
	source string
	puller *remote.Puller
}

func (p *pull) classify(err error) error { return classify(err, p.ref, p.host, p.source) }

func (p *pull) run(ctx context.Context) (*Image, error) {
	s := p.s
	desc, err := p.puller.Get(ctx, p.r)
	if err != nil {
		return nil, p.classify(err)
	}
	if err := checkDigest(desc.Manifest, desc.Digest, p.ref, "manifest"); err != nil {
		return nil, err
	}
	var indexDigest *v1.Hash
	var plat *v1.Platform
	if desc.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, fmt.Errorf("pull %s: index: %w", p.ref, err)
		}
		child, err := p.pick(im)
		if err != nil {
			return nil, err
		}
		if child.MediaType.IsIndex() {
			return nil, fmt.Errorf("pull %s: the index entry for %s is itself an index, which outpost does not follow", p.ref, platformString(*child.Platform))
		}
		h := desc.Digest
		indexDigest, plat = &h, child.Platform
		desc, err = p.puller.Get(ctx, p.r.Context().Digest(child.Digest.String()))
		if err != nil {
			return nil, p.classify(err)
		}
		if desc.Digest != child.Digest {
			return nil, &DigestError{Ref: p.ref, What: "manifest", Want: child.Digest, Got: desc.Digest}
		}
		if err := checkDigest(desc.Manifest, child.Digest, p.ref, "manifest"); err != nil {
			return nil, err
		}
	}
	switch desc.MediaType {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return nil, fmt.Errorf("pull %s: Docker schema 1 manifests are not supported; push the image again with a current tool", p.ref)
	default:
		if !desc.MediaType.IsImage() {
			return nil, fmt.Errorf("pull %s: not an image (media type %s)", p.ref, desc.MediaType)
		}
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("pull %s: manifest: %w", p.ref, err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 {
			return nil, fmt.Errorf("pull %s: blob digest %s: only sha256 is supported", p.ref, d.Digest)
		}
	}
	mdigest := desc.Digest

	// From here the blobs and the rootfs are ours: GC leaves them alone, and
	// one pull at a time builds a given rootfs.
	needed := append([]v1.Hash{mdigest, m.Config.Digest}, layerDigests(m)...)
	s.begin(needed)
	defer s.end(needed)
	unlock := s.lockDigest(mdigest.Hex)
	defer unlock()

	if err := s.writeBlob(mdigest, desc.Manifest); err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.ref, err)
	}
	cfgRaw, err := p.config(ctx, m.Config)
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return nil, fmt.Errorf("pull %s: config: %w", p.ref, err)
	}
	if plat == nil {
		have := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		if have.OS != "" && have.Architecture != "" && platformScore(s.platform, have) < 0 {
			return nil, &PlatformError{Ref: p.ref, Want: s.platform, Have: []v1.Platform{have}}
		}
		plat = &have
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("pull %s: the config lists %d diffIDs for %d layers", p.ref, len(cf.RootFS.DiffIDs), len(m.Layers))
	}

	final := s.rootfsPath(mdigest)
	if fi, err := os.Stat(final); err != nil || !fi.IsDir() {
		start := time.Now()
		if err := p.build(ctx, m, cf.RootFS.DiffIDs, final); err != nil {
			return nil, err
		}
		s.log.Info("image store: pulled", "ref", p.ref, "digest", mdigest, "layers", len(m.Layers), "took", time.Since(start).Round(time.Millisecond))
	}

	now := s.now()
	rec := &record{
		Name:         p.r.Name(),
		Ref:          p.ref,
		Digest:       mdigest,
		IndexDigest:  indexDigest,
		Platform:     *plat,
		ConfigDigest: m.Config.Digest,
		Layers:       layerDigests(m),
		Config:       cf.Config,
		Pulled:       now,
		LastUsed:     now,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("image store is closed")
	}
	if old := s.records[rec.Name]; old != nil && old.Digest == rec.Digest && old.Ref == rec.Ref {
		// The same image again: only its last use changes, which is
		// written at most every touchEvery.
		old.LastUsed = now
		if now.Sub(old.persistedUse) >= touchEvery {
			if err := s.writeRecord(old); err != nil {
				return nil, fmt.Errorf("pull %s: %w", p.ref, err)
			}
		}
		return s.image(old), nil
	}
	if err := s.writeRecord(rec); err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.ref, err)
	}
	s.records[rec.Name] = rec
	return s.image(rec), nil
}

// pick chooses the index entry for the store's platform.
func (p *pull) pick(im *v1.IndexManifest) (*v1.Descriptor, error) {
	best, bestScore := -1, -1
	var have []v1.Platform
	for i, d := range im.Manifests {
		if unknownPlatform(d.Platform) {
			continue
		}
		have = append(have, *d.Platform)
		if sc := platformScore(p.s.platform, *d.Platform); sc > bestScore {
			best, bestScore = i, sc
		}
	}
	if best < 0 {
		return nil, &PlatformError{Ref: p.ref, Want: p.s.platform, Have: have, Index: true}
	}
	return &im.Manifests[best], nil
}

// config returns the verified config blob, from the store or the registry.
func (p *pull) config(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if b, err := os.ReadFile(p.s.blobPath(d.Digest)); err == nil {
		if checkDigest(b, d.Digest, p.ref, "config") == nil && int64(len(b)) == d.Size {
			return b, nil
		}
		p.s.log.Warn("image store: a stored config blob does not verify; downloading it again", "digest", d.Digest)
	}
	if _, err := p.fetchBlob(ctx, d, "config", true); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p.s.blobPath(d.Digest))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.ref, err)
	}
	return b, checkDigest(b, d.Digest, p.ref, "config")
}

// fetchBlob downloads the blob d into the blob store unless it is there
// already (with the right size; it is verified again where it is used).
// The download goes to a temp file, renamed once size and digest match.
func (p *pull) fetchBlob(ctx context.Context, d v1.Descriptor, what string, force bool) (fresh bool, err error) {
	s := p.s
	final := s.blobPath(d.Digest)
	if fi, err := os.Stat(final); err == nil && fi.Size() == d.Size && !force {
		return false, nil
	}
	return true, p.download(ctx, d, what, final)
}

func (p *pull) download(ctx context.Context, d v1.Descriptor, what, final string) error {
	l, err := p.puller.Layer(ctx, p.r.Context().Digest(d.Digest.String()))
	if err != nil {
		return p.classify(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return p.classify(err)
	}
	defer rc.Close()
	f, err := atomicfile.Create(final, 0o600)
	if err != nil {
		return fmt.Errorf("pull %s: %w", p.ref, err)
	}
	defer f.Close() // drops the download unless committed
	h := sha256.New()
	// One byte more than the manifest says, to notice a longer blob.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, d.Size+1))
	got := sumOf(h)
	switch {
	case n != d.Size:
		if err != nil && !isVerifyError(err) {
			return p.classify(err)
		}
		return &DigestError{Ref: p.ref, What: what + " blob", Want: d.Digest, Size: fmt.Sprintf("the registry sent %d bytes or more, the manifest says %d", n, d.Size)}
	case got != d.Digest:
		return &DigestError{Ref: p.ref, What: what + " blob", Want: d.Digest, Got: got}
	case err != nil && isVerifyError(err):
		return &DigestError{Ref: p.ref, What: what + " blob", Want: d.Digest, Err: err}
	case err != nil:
		return p.classify(err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("pull %s: %w", p.ref, err)
	}
	return nil
}

// isVerifyError tells go-containerregistry's digest check failing at the end
// of a read from a network error.
func isVerifyError(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("error verifying"))
}

// build downloads the layers (a few at once) and applies them in order, as
// each arrives, to a temp rootfs it renames to final when all are in.
func (p *pull) build(ctx context.Context, m *v1.Manifest, diffIDs []v1.Hash, final string) (err error) {
	s := p.s
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	type fetched struct {
		fresh bool
		err   error
	}
	done := make([]chan fetched, len(m.Layers))
	sem := make(chan struct{}, parallelBlobs)
	for i, d := range m.Layers {
		done[i] = make(chan fetched, 1)
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				done[i] <- fetched{err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			fresh, err := p.fetchBlob(ctx, d, fmt.Sprintf("layer %d", i+1), false)
			done[i] <- fetched{fresh, err}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	started := time.Now()
	tmp := final + tmpMarker + randomHex()
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("pull %s: %w", p.ref, err)
	}
	defer func() {
		if err != nil {
			if rerr := removeTree(tmp); rerr != nil {
				s.log.Warn("image store: remove a failed unpack", "path", tmp, "err", rerr)
			}
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("pull %s: %w", p.ref, err)
	}
	defer root.Close()
	a := newApplier(root, p.ref, s.log)
	for i, d := range m.Layers {
		var f fetched
		select {
		case f = <-done[i]:
			if f.err != nil {
				return f.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		// A blob this pull just downloaded was verified on the way in; one
		// that was in the store already is verified again as it is read.
		if err := p.applyBlob(ctx, a, d, diffIDs[i], i+1, !f.fresh); err != nil {
			return err
		}
	}
	if err := a.finish(); err != nil {
		return fmt.Errorf("pull %s: unpack: %w", p.ref, err)
	}
	unpacked := time.Now()
	if !s.o.noSync {
		rf, err := root.Open(".")
		if err != nil {
			return fmt.Errorf("pull %s: %w", p.ref, err)
		}
		err = syncFS(rf)
		rf.Close()
		if err != nil {
			return fmt.Errorf("pull %s: sync: %w", p.ref, err)
		}
	}
	s.log.Debug("image store: unpacked", "ref", p.ref, "downloadAndUnpack", unpacked.Sub(started).Round(time.Millisecond), "syncfs", time.Since(unpacked).Round(time.Millisecond))
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("pull %s: %w", p.ref, err)
	}
	return atomicfile.SyncDir(filepath.Dir(final))
}

// applyBlob applies the stored layer blob d, verifying the diffID of its
// uncompressed stream, and with verifyBlob its digest, on the way.
func (p *pull) applyBlob(ctx context.Context, a *applier, d v1.Descriptor, diffID v1.Hash, n int, verifyBlob bool) error {
	f, err := os.Open(p.s.blobPath(d.Digest))
	if err != nil {
		return fmt.Errorf("pull %s: layer %d: %w", p.ref, n, err)
	}
	defer f.Close()
	ch, uh := sha256.New(), sha256.New()
	var cr io.Reader = f
	if verifyBlob {
		cr = io.TeeReader(f, ch)
	}
	br := bufio.NewReaderSize(cr, 1<<20)
	zr, closeZ, err := decompress(br)
	if err != nil {
		return &DigestError{Ref: p.ref, What: fmt.Sprintf("layer %d blob", n), Want: d.Digest, Err: fmt.Errorf("not a gzip, zstd or tar stream: %w", err)}
	}
	defer closeZ()
	ur := io.TeeReader(zr, uh)
	aerr := a.apply(ctx, d.Digest.String(), ur)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Whatever follows the tar's end counts for the digests too; after a
	// failed apply, reading on tells a damaged blob from a hostile one.
	_, derr := io.Copy(io.Discard, ur)
	io.Copy(io.Discard, br)
	if got := sumOf(ch); verifyBlob && got != d.Digest {
		// Damaged since it was stored: drop it so that the next pull
		// downloads it again.
		p.s.log.Warn("image store: a stored layer blob does not verify; removing it", "digest", d.Digest, "got", got)
		os.Remove(p.s.blobPath(d.Digest))
		return &DigestError{Ref: p.ref, What: fmt.Sprintf("layer %d blob", n), Want: d.Digest, Got: got}
	}
	if aerr != nil {
		return aerr
	}
	if derr != nil {
		return fmt.Errorf("pull %s: layer %d (%s): decompress: %w", p.ref, n, d.Digest, derr)
	}
	if got := sumOf(uh); got != diffID {
		return &DigestError{Ref: p.ref, What: fmt.Sprintf("layer %d diffID", n), Want: diffID, Got: got}
	}
	return nil
}

// writeBlob stores b under its digest h unless it is there.
func (s *Store) writeBlob(h v1.Hash, b []byte) error {
	final := s.blobPath(h)
	if fi, err := os.Stat(final); err == nil && fi.Size() == int64(len(b)) {
		return nil
	}
	return atomicfile.WriteFile(final, b, 0o600)
}

func checkDigest(b []byte, want v1.Hash, ref, what string) error {
	got, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if got != want {
		return &DigestError{Ref: ref, What: what, Want: want, Got: got}
	}
	return nil
}

func sumOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

func layerDigests(m *v1.Manifest) []v1.Hash {
	hs := make([]v1.Hash, len(m.Layers))
	for i, l := range m.Layers {
		hs[i] = l.Digest
	}
	return hs
}

func randomHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// begin marks blobs as needed by a running pull; GC keeps them.
func (s *Store) begin(hs []v1.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hs {
		s.inflight[h.Hex]++
	}
}

func (s *Store) end(hs []v1.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hs {
		if s.inflight[h.Hex]--; s.inflight[h.Hex] <= 0 {
			delete(s.inflight, h.Hex)
		}
	}
}

// lockDigest serialises the pulls of one manifest digest.
func (s *Store) lockDigest(hex string) func() { return s.dlocks.Lock(hex) }
