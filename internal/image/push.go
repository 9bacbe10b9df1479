package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-edge/outpost/internal/version"
)

// DefaultPushJobs is how many blobs Push uploads at once unless told
// otherwise (docker pushes 5 at once; crane 4).
const DefaultPushJobs = 6

// PushOptions tune Push. The zero value is usable.
type PushOptions struct {
	// Insecure allows plain HTTP to a registry that is not on loopback.
	// Loopback registries (localhost, 127.0.0.0/8, ::1) may always use
	// plain HTTP. TLS certificates are verified either way.
	Insecure bool
	// Jobs is how many blobs are uploaded at once (default DefaultPushJobs).
	Jobs int
	// Progress is where progress goes (stderr); nil for none.
	Progress io.Writer
	// TTY draws one progress bar per layer on Progress; otherwise Push
	// writes one line per layer as it completes.
	TTY bool
	// Keychain finds credentials (default authn.DefaultKeychain: docker's
	// config.json and its credential helpers).
	Keychain authn.Keychain
}

// pushBackoff is how Push retries: a blob upload is restarted from its
// existence check (never a replayed chunk), a manifest PUT is sent again,
// and a GET or HEAD is replayed; 5 attempts in all, 0.5 s, 1 s, 2 s, 4 s
// apart, or longer when the registry says so with Retry-After.
var pushBackoff = remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 5, Cap: 8 * time.Second}

// Push writes an image or index (remote.Taggable: v1.Image or
// v1.ImageIndex) to ref and returns the pushed digest.
//
// Blobs the registry already has are skipped (HEAD); a layer that carries a
// source repository on the same registry (remote.MountableLayer, as
// remote.Image's layers do) is mounted, with a plain upload when the
// registry declines; blobs are uploaded opts.Jobs at a time; requests that
// fail with 408, 429 or 5xx or a broken connection are retried with
// exponential back-off, and Retry-After holds back every request to that
// registry for as long as it asks (at most a minute).
//
// Errors: *UnavailableError (exit code 5) when the registry cannot be
// reached, *AuthError when it refuses the credentials (it names where they
// came from), *PlainHTTPError when it speaks only plain HTTP and that is
// not allowed.
func Push(ctx context.Context, ref name.Reference, artifact remote.Taggable, opts PushOptions) (v1.Hash, error) {
	digest, err := artifactDigest(artifact)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != digest.String() {
		return v1.Hash{}, fmt.Errorf("push %s: the image's digest is %s", ref, digest)
	}
	host := ref.Context().RegistryStr()
	allowHTTP := opts.Insecure || IsLoopback(host)
	if allowHTTP {
		// Let go-containerregistry try plain HTTP after HTTPS (it does so on
		// its own only for some names, RFC 1918 addresses among them; the
		// transport below refuses those unless allowed).
		if ref, err = insecureRef(ref); err != nil {
			return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
		}
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = DefaultPushJobs
	}

	tracker := newPushTracker(artifact, opts)
	tr := &pushTransport{inner: baseTransport, insecure: opts.Insecure}
	if tracker != nil {
		tr.observe = tracker.observe
		if opts.TTY {
			artifact = tracker.wrap(artifact)
		}
	}
	err = remote.Push(ref, artifact,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithJobs(jobs),
		remote.WithTransport(tr),
		remote.WithRetryBackoff(pushBackoff),
		remote.WithUserAgent("outpost/"+version.Version),
	)
	if tracker != nil {
		tracker.close(err)
	}
	if err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, classifyPushError(err, ref.Context(), kc))
	}
	return digest, nil
}

// artifactDigest returns the digest of t's manifest.
func artifactDigest(t remote.Taggable) (v1.Hash, error) {
	if d, ok := t.(interface{ Digest() (v1.Hash, error) }); ok {
		return d.Digest()
	}
	raw, err := t.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h, err
}

// insecureRef returns ref marked as allowed to use plain HTTP.
func insecureRef(ref name.Reference) (name.Reference, error) {
	repo, err := name.NewRepository(ref.Context().Name(), name.Insecure)
	if err != nil {
		return ref, err
	}
	if d, ok := ref.(name.Digest); ok {
		return repo.Digest(d.DigestStr()), nil
	}
	return repo.Tag(ref.Identifier()), nil
}

// IsLoopback reports whether a registry host ("host" or "host:port") is
// this machine's loopback: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
