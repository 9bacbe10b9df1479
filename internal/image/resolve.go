package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/version"
)

// ResolveOptions tune Resolve. The zero value is usable.
type ResolveOptions struct {
	// Insecure allows plain HTTP to a registry that is not on loopback,
	// as PushOptions.Insecure does.
	Insecure bool
	// Keychain finds credentials (default authn.DefaultKeychain).
	Keychain authn.Keychain
}

// resolveBackoff retries a HEAD or GET less than a push does: a deploy
// waiting on a registry that is down should say so soon.
var resolveBackoff = remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3, Cap: 2 * time.Second}

// Resolve returns the digest of the manifest (or index) ref names at its
// registry now. A reference that carries a digest is returned as it is,
// without the network. It asks with HEAD, and with GET when the registry
// does not answer HEAD with a digest, with the credentials, transport and
// plain-HTTP rules of Push.
//
// Errors: those of Push (*UnavailableError, *AuthError, *PlainHTTPError),
// and *NotFoundError when the registry has no such tag.
func Resolve(ctx context.Context, ref name.Reference, opts ResolveOptions) (v1.Hash, error) {
	if d, ok := ref.(name.Digest); ok {
		return v1.NewHash(d.DigestStr())
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	r := ref
	if opts.Insecure || IsLoopback(ref.Context().RegistryStr()) {
		var err error
		if r, err = insecureRef(ref); err != nil {
			return v1.Hash{}, fmt.Errorf("resolve %s: %w", ref, err)
		}
	}
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithTransport(&pushTransport{inner: baseTransport, insecure: opts.Insecure}),
		remote.WithRetryBackoff(resolveBackoff),
		remote.WithUserAgent("outpost/" + version.Version),
	}
	desc, err := remote.Head(r, ropts...)
	if err != nil && !unreachable(err) && ctx.Err() == nil {
		// Some registries answer HEAD without Docker-Content-Digest, or not
		// at all; GET also brings the registry's error message.
		var gd *remote.Descriptor
		if gd, err = remote.Get(r, ropts...); err == nil {
			desc = &gd.Descriptor
		}
	}
	if err != nil {
		return v1.Hash{}, classifyResolveError(err, ref, kc)
	}
	return desc.Digest, nil
}

// NotFoundError is returned by Resolve when the registry has no manifest
// for the reference. It is of kind errdefs.ErrNotFound.
type NotFoundError struct {
	Ref string
	Err error // the registry's answer
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("the registry has no image %s: %v", e.Ref, e.Err)
}
func (e *NotFoundError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errdefs.ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == errdefs.ErrNotFound }

// Hint says what to check.
func (e *NotFoundError) Hint() string {
	return "Check the repository and tag, and push the image first (outpost push, or outpost build --push)."
}

func classifyResolveError(err error, ref name.Reference, kc authn.Keychain) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return &NotFoundError{Ref: ref.String(), Err: terr}
	}
	err = classifyPushError(err, ref.Context(), kc)
	var aerr *AuthError
	if errors.As(err, &aerr) {
		aerr.Pull = true
	}
	return err
}
