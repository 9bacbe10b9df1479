package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/image"
)

// resolveOptions are the flags of the commands that deploy images by digest.
type resolveOptions struct {
	NoResolve bool
	Insecure  bool
}

// resolveHelp is the part of deploy's and deployment create's help about it.
const resolveHelp = `Each module's image tag is resolved to the digest the registry has for it now,
and deployed as name:tag@sha256:… (the tag stays for humans; the device pulls
and verifies the digest). So pushing a new image under the same tag and
deploying again re-creates the module, with no need to change its version. An
image already pinned by digest is left as it is. Credentials and plain HTTP
follow outpost push: docker's config.json and credential helpers, plain HTTP
for loopback registries or with --insecure. --no-resolve deploys the tags as
written, for a registry the device can reach but this machine cannot.`

func addResolveFlags(cmd *cobra.Command, opts *resolveOptions) {
	cmd.Flags().BoolVar(&opts.NoResolve, "no-resolve", false, "deploy image tags as written instead of the digests they name now")
	cmd.Flags().BoolVar(&opts.Insecure, "insecure", false, "allow plain HTTP to registries that are not on loopback, to resolve tags")
}

// resolveImages resolves the tag of each module's image (module id → image
// reference as written) to name:tag@digest and returns the images that
// changed. Registries are asked at once. what names the command in errors.
func resolveImages(ctx context.Context, f *Factory, what string, images map[string]string, opts resolveOptions) (map[string]string, error) {
	if opts.NoResolve || len(images) == 0 {
		return nil, nil
	}
	insecure := opts.Insecure
	if cfg := f.Config(); !insecure && cfg.IsSet("insecure") {
		insecure = cfg.GetBool("insecure")
	}
	type result struct {
		ref string
		err error
	}
	ids := slices.Sorted(maps.Keys(images))
	results := make([]result, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		ref, err := name.ParseReference(images[id])
		if err != nil {
			results[i].err = err
			continue
		}
		if _, pinned := ref.(name.Digest); pinned {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := image.Resolve(ctx, ref, image.ResolveOptions{Insecure: insecure})
			results[i] = result{ref: images[id] + "@" + d.String(), err: err}
		}()
	}
	wg.Wait()
	out := map[string]string{}
	for i, id := range ids {
		r := results[i]
		if r.err != nil {
			hint := "Or deploy with --no-resolve to keep the tags as written (when the device can reach the registry but this machine cannot)."
			if h := ownHint(r.err); h != "" {
				hint = h + "\n" + hint
			}
			return nil, &ExitError{Code: exitCode(r.err), Err: fmt.Errorf("%s: module %s: resolve the tag of %s: %w", what, id, images[id], r.err), Hint: hint}
		}
		if r.ref != "" {
			out[id] = r.ref
			f.status("• %s: %s", id, shortDigestRef(r.ref))
		}
	}
	return out, nil
}

// shortDigestRef shortens the digest of name[:tag]@sha256:… to 12 hex
// digits, as docker does with ids, for tables and status lines.
func shortDigestRef(ref string) string {
	i := strings.LastIndex(ref, "@sha256:")
	if i < 0 || len(ref) < i+len("@sha256:")+12 {
		return ref
	}
	return ref[:i+len("@sha256:")+12]
}
