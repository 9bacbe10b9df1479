package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// The docker runtime removes the images it pulled once no module has used them for a
// while, as the image store does for runc and process; images it did not pull (loaded or
// pulled by hand) are the engine owner's and are left alone. It keeps what it pulled, and
// when each was last used, in images.json in its state dir: the engine has no labels on
// images and no last-used time. Without a state dir it removes nothing.

const pulledImagesFile = "images.json"

// pulledImage is one image the runtime pulled.
type pulledImage struct {
	Ref      string    `json:"ref"` // as pulled, and as removed
	ID       string    `json:"id"`
	Digest   string    `json:"digest,omitempty"`
	LastUsed time.Time `json:"lastUsed"`
}

// loadPulled reads images.json, by canonical reference; a missing file is none.
func (d *dockerRuntime) loadPulled() (map[string]pulledImage, error) {
	out := map[string]pulledImage{}
	if d.owner == "" {
		return out, nil
	}
	b, err := os.ReadFile(filepath.Join(d.owner, pulledImagesFile))
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	var list []pulledImage
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(d.owner, pulledImagesFile), err)
	}
	for _, p := range list {
		out[canonicalRef(p.Ref)] = p
	}
	return out, nil
}

// savePulled writes images.json whole: a temp file, synced, renamed over it.
func (d *dockerRuntime) savePulled(m map[string]pulledImage) error {
	list := make([]pulledImage, 0, len(m))
	for _, p := range m {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Ref < list[j].Ref })
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.owner, 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(d.owner, pulledImagesFile), append(b, '\n'), 0o600)
}

// usedImage records that ref (as the engine has it, img) was used now. With pulled false
// only an image already recorded is touched.
func (d *dockerRuntime) usedImage(ref string, img EngineImage, pulled bool) error {
	if d.owner == "" {
		return nil
	}
	d.imagesMu.Lock()
	defer d.imagesMu.Unlock()
	m, err := d.loadPulled()
	if err != nil {
		return err
	}
	key := canonicalRef(ref)
	if _, ok := m[key]; !ok && !pulled {
		return nil
	}
	m[key] = pulledImage{Ref: ref, ID: img.ID, Digest: img.Digest, LastUsed: time.Now().UTC()}
	return d.savePulled(m)
}

// GCImages removes the images this runtime pulled that are not in inUse (references, any
// spelling, or "sha256:…" image ids or digests) and were last used more than olderThan
// ago. An image a container still uses (a stopped one included) stays, as the engine
// refuses to remove it. It returns the references removed.
func (d *dockerRuntime) GCImages(ctx context.Context, inUse []string, olderThan time.Duration) ([]string, error) {
	if d.owner == "" {
		return nil, nil
	}
	d.imagesMu.Lock()
	defer d.imagesMu.Unlock()
	m, err := d.loadPulled()
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, u := range inUse {
		u = strings.TrimSpace(u)
		if strings.HasPrefix(u, "sha256:") {
			used[u] = true
		} else {
			used[canonicalRef(u)] = true
		}
	}
	cutoff := time.Now().Add(-olderThan)
	var removed []string
	var errs []error
	changed := false
	for key, p := range m {
		if used[key] || used[p.ID] || (p.Digest != "" && used[p.Digest]) || p.LastUsed.After(cutoff) {
			continue
		}
		err := d.do(ctx, http.MethodDelete, "/images/"+p.Ref, url.Values{"noprune": {"0"}}, nil, nil)
		switch {
		case err == nil:
			removed = append(removed, p.Ref)
		case errors.Is(err, ErrNotFound): // removed by someone else: forget it
		case errors.Is(err, ErrExists): // 409: a container uses it
			continue
		default:
			errs = append(errs, fmt.Errorf("remove image %s: %w", p.Ref, err))
			continue
		}
		delete(m, key)
		changed = true
	}
	if changed {
		if err := d.savePulled(m); err != nil {
			errs = append(errs, err)
		}
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// canonicalRef is ref's full name (registry, repository, tag or digest), as go-containerregistry
// spells it; ref itself when it does not parse.
func canonicalRef(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ref
	}
	return r.Name()
}
