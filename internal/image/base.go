package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/outpost-edge/outpost/internal/version"
)

// baseImage is a base for one platform, all of its blobs in the cache.
type baseImage struct {
	layers []v1.Descriptor // OCI media types
	config *v1.ConfigFile
}

// basePuller resolves a base reference into per-platform images, pulling
// what the cache lacks. A tag found in the cache is used without asking the
// registry again (Pull asks anyway), so a second build works offline.
type basePuller struct {
	c        *Cache
	insecure bool
	pull     bool
	ctx      context.Context
	fetched  atomic.Int64 // blobs downloaded

	once sync.Once
	opts []remote.Option
}

// pullTransport refuses plain HTTP to registries that are not on loopback
// unless insecure, as DESIGN "Images" asks.
type pullTransport struct {
	inner    http.RoundTripper
	insecure bool
}

func (t *pullTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.insecure && !IsLoopback(req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &PlainHTTPError{Registry: req.URL.Host}
	}
	return t.inner.RoundTrip(req)
}

func (b *basePuller) remoteOptions() []remote.Option {
	b.once.Do(func() {
		b.opts = []remote.Option{
			remote.WithContext(b.ctx),
			remote.WithAuthFromKeychain(authn.DefaultKeychain),
			remote.WithTransport(&pullTransport{inner: remote.DefaultTransport, insecure: b.insecure}),
			remote.WithUserAgent("outpost/" + version.Version),
		}
	})
	return b.opts
}

// parseBaseRef parses a base reference, letting go-containerregistry try
// plain HTTP for loopback registries or with --insecure.
func parseBaseRef(s string, insecure bool) (name.Reference, error) {
	ref, err := name.ParseReference(s, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("base %q is not an image reference: %w", s, err)
	}
	if !insecure && !IsLoopback(ref.Context().RegistryStr()) {
		return ref, nil
	}
	return name.ParseReference(s, name.WeakValidation, name.Insecure)
}

// resolve returns the base named s for each platform (by platform string).
func (b *basePuller) resolve(s string, platforms []v1.Platform) (map[string]*baseImage, error) {
	ref, err := parseBaseRef(s, b.insecure)
	if err != nil {
		return nil, err
	}
	var top v1.Descriptor
	var topRaw []byte
	cached := false
	if !b.pull {
		if d, err := b.c.Descriptor(ref); err == nil {
			if raw, err := b.c.Bytes(d.Digest); err == nil {
				top, topRaw, cached = d, raw, true
			}
		}
	}
	if !cached {
		rd, err := remote.Get(ref, b.remoteOptions()...)
		if err != nil {
			return nil, b.pullErr(ref, err)
		}
		top, topRaw = rd.Descriptor, rd.Manifest
		top.Platform, top.Annotations = nil, nil
		if _, err := b.c.putBlob(topRaw, top.MediaType); err != nil {
			return nil, err
		}
		b.fetched.Add(1)
	}

	out := map[string]*baseImage{}
	for _, p := range platforms {
		img, err := b.forPlatform(ref, top, topRaw, p)
		if err != nil {
			return nil, err
		}
		out[p.String()] = img
	}
	if !cached {
		// Recorded only now that the platforms used are all in the cache.
		if err := b.c.Tag(ref, top, "base"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// forPlatform picks p's image from the base (an index or one image) and
// makes sure its manifest, config and layers are in the cache.
func (b *basePuller) forPlatform(ref name.Reference, top v1.Descriptor, topRaw []byte, p v1.Platform) (*baseImage, error) {
	manifestRaw := topRaw
	single := !top.MediaType.IsIndex()
	if !single {
		im, err := v1.ParseIndexManifest(bytes.NewReader(topRaw))
		if err != nil {
			return nil, fmt.Errorf("base %s: read its index: %w", ref, err)
		}
		var child *v1.Descriptor
		var have []string
		for i, d := range im.Manifests {
			if d.Platform == nil || d.Platform.OS == "unknown" || !d.MediaType.IsImage() {
				continue // attestations and the like
			}
			have = append(have, normalizePlatform(*d.Platform).String())
			if child == nil && platformMatches(*d.Platform, p) {
				child = &im.Manifests[i]
			}
		}
		if child == nil {
			return nil, &PlatformError{Base: ref.String(), Want: p.String(), Have: have}
		}
		raw, err := b.c.Bytes(child.Digest)
		if err != nil {
			rd, err := remote.Get(ref.Context().Digest(child.Digest.String()), b.remoteOptions()...)
			if err != nil {
				return nil, b.pullErr(ref, err)
			}
			raw = rd.Manifest
			if h, _, _ := v1.SHA256(bytes.NewReader(raw)); h != child.Digest {
				return nil, fmt.Errorf("base %s: the manifest for %s has digest %s, not the %s its index names", ref, p, h, child.Digest)
			}
			if _, err := b.c.putBlob(raw, child.MediaType); err != nil {
				return nil, err
			}
			b.fetched.Add(1)
		}
		manifestRaw = raw
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifestRaw))
	if err != nil {
		return nil, fmt.Errorf("base %s: read its manifest: %w", ref, err)
	}
	if err := b.ensure(ref, m.Config); err != nil {
		return nil, err
	}
	cfgRaw, err := b.c.Bytes(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return nil, fmt.Errorf("base %s: read its config: %w", ref, err)
	}
	if single {
		have := normalizePlatform(v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant})
		if !platformMatches(have, p) {
			return nil, &PlatformError{Base: ref.String(), Want: p.String(), Have: []string{have.String()}}
		}
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("base %s: its config lists %d layers, its manifest %d", ref, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}

	// Layers: fetched in parallel, each checked against its digest.
	var wg sync.WaitGroup
	errs := make([]error, len(m.Layers))
	sem := make(chan struct{}, 4)
	for i, l := range m.Layers {
		if b.c.HasBlob(l.Digest, l.Size) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = b.ensure(ref, l)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	img := &baseImage{config: cfg}
	for _, l := range m.Layers {
		l.MediaType = ociLayerType(l.MediaType)
		img.layers = append(img.layers, l)
	}
	return img, nil
}

// ensure puts blob d of ref's repository into the cache unless it is there.
func (b *basePuller) ensure(ref name.Reference, d v1.Descriptor) error {
	if b.c.HasBlob(d.Digest, d.Size) {
		return nil
	}
	l, err := remote.Layer(ref.Context().Digest(d.Digest.String()), b.remoteOptions()...)
	if err != nil {
		return b.pullErr(ref, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return b.pullErr(ref, err)
	}
	defer rc.Close()
	if err := b.c.putStream(rc, d); err != nil {
		var ce *CacheError
		if errors.As(err, &ce) {
			return err
		}
		return b.pullErr(ref, err)
	}
	b.fetched.Add(1)
	return nil
}

// ociLayerType gives a docker layer media type's OCI twin (same bytes), so
// that a build on a docker base is a consistent OCI image.
func ociLayerType(mt types.MediaType) types.MediaType {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	case types.DockerForeignLayer:
		return types.OCIRestrictedLayer
	}
	return mt
}

// PlatformError says that a base image lacks a platform the build asks for.
type PlatformError struct {
	Base string
	Want string
	Have []string
}

func (e *PlatformError) Error() string {
	have := "none"
	if len(e.Have) > 0 {
		have = strings.Join(e.Have, ", ")
	}
	return fmt.Sprintf("base image %s has no %s image; it has: %s", e.Base, e.Want, have)
}

// Hint says what to do.
func (e *PlatformError) Hint() string {
	return fmt.Sprintf("Build only for the platforms the base has (platforms: in module.yaml, or --platform), or pick a base that has %s.", e.Want)
}

// pullErr explains a failure to pull a base: an unreachable registry
// (exit code 5), refused credentials, plain HTTP not allowed.
func (b *basePuller) pullErr(ref name.Reference, err error) error {
	host := ref.Context().RegistryStr()
	var plain *PlainHTTPError
	var terr *transport.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &plain):
		return fmt.Errorf("pull base %s: %w", ref, plain)
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden):
		return fmt.Errorf("pull base %s: %w", ref, &AuthError{Registry: host, Repository: ref.Context().RepositoryStr(), Status: terr.StatusCode, Source: DescribeCredentials(ref.Context(), authn.DefaultKeychain), Err: terr})
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		return fmt.Errorf("pull base %s: the registry has no such image (%w)", ref, err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("pull base %s: %w", ref, &PlainHTTPError{Registry: host})
	case netUnreachable(err):
		return fmt.Errorf("pull base %s: %w", ref, &UnavailableError{Registry: host, Err: err})
	}
	return fmt.Errorf("pull base %s: %w", ref, err)
}

// netUnreachable reports whether err means the registry could not be
// reached.
func netUnreachable(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	return errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.ECONNRESET) || (errors.As(err, &op) && op.Op == "dial")
}
