package agent

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/outpost-edge/outpost/internal/imagestore"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// moduleImage is what an instance is made from: an image the image store
// pulled and unpacked, or, on a runtime that keeps images itself (docker),
// what its engine has.
type moduleImage struct {
	Digest string // of the platform image's manifest; the engine's image id when it knows no digest
	Rootfs string // the unpacked root; "" for an engine's image
	Config v1.Config
}

func fromStore(img *imagestore.Image) *moduleImage {
	return &moduleImage{Digest: img.Digest.String(), Rootfs: img.Rootfs, Config: img.Config}
}

func fromEngine(img runtime.EngineImage) *moduleImage {
	d := img.Digest
	if d == "" {
		d = img.ID
	}
	return &moduleImage{Digest: d, Config: img.Config}
}

// image returns the image of d. A restart of the same desired state reuses
// the image it pulled; a new desired state pulls again (a tag may have
// moved). When the registry cannot be reached, an image pulled before is
// used.
func (s *supervisor) image(ctx context.Context, d desiredModule) (*moduleImage, error) {
	reuse := s.img != nil && s.imgHash == d.Hash
	if p, ok := s.rt().(runtime.ImagePuller); ok {
		return s.engineImage(ctx, p, d, reuse)
	}
	if reuse {
		if img, err := s.a.cfg.Images.Get(d.Image); err == nil {
			return fromStore(img), nil
		}
	}
	img, err := s.a.cfg.Images.Pull(s.a.pullCtx, d.Image, d.Credentials)
	if err != nil {
		var ue *imagestore.UnavailableError
		if errors.As(err, &ue) {
			if cached, gerr := s.a.cfg.Images.Get(d.Image); gerr == nil {
				s.a.log.Warn("registry unavailable: using the cached image", "module", s.name, "image", d.Image)
				return fromStore(cached), nil
			}
		}
		return nil, err
	}
	return fromStore(img), nil
}

// engineImage has the runtime's engine pull d's image, with the credentials
// the image store would use.
func (s *supervisor) engineImage(ctx context.Context, p runtime.ImagePuller, d desiredModule, reuse bool) (*moduleImage, error) {
	if reuse {
		if img, err := p.InspectImage(ctx, d.Image); err == nil {
			return fromEngine(img), nil
		}
	}
	cfg, host, source, err := s.a.cfg.Images.RegistryAuth(ctx, d.Image, d.Credentials)
	if err != nil {
		return nil, err
	}
	var auth *runtime.RegistryAuth
	if cfg != nil {
		auth = &runtime.RegistryAuth{Username: cfg.Username, Password: cfg.Password,
			IdentityToken: cfg.IdentityToken, ServerAddress: host}
	}
	img, err := p.PullImage(s.a.pullCtx, d.Image, auth)
	if err != nil {
		// The engine's errors do not say whether the registry was down or
		// the image is gone; either way an image it has is better than none.
		if cached, ierr := p.InspectImage(ctx, d.Image); ierr == nil {
			s.a.log.Warn("pull failed: using the image the engine has", "module", s.name, "image", d.Image, "err", err)
			return fromEngine(cached), nil
		}
		return nil, fmt.Errorf("%w; credentials used: %s", err, source)
	}
	return fromEngine(img), nil
}

// cachedImage returns d's image as pulled before, without pulling: for an
// adopted instance, whose health check comes from its image.
func (s *supervisor) cachedImage(ctx context.Context, d desiredModule) (*moduleImage, error) {
	if p, ok := s.rt().(runtime.ImagePuller); ok {
		img, err := p.InspectImage(ctx, d.Image)
		if err != nil {
			return nil, err
		}
		return fromEngine(img), nil
	}
	img, err := s.a.cfg.Images.Get(d.Image)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", d.Image, err)
	}
	return fromStore(img), nil
}
