package imagestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// GC removes the images no deployment uses: those whose reference or digest
// is not in inUse and that were last used (pulled, or returned by Get) more
// than olderThan ago. inUse holds image references as deployments name them
// (tags or digests, any spelling) or bare digests "sha256:…". With an image's
// record go its rootfs, unless another record has the same digest, and every
// blob no remaining record needs. Rootfs dirs and blobs that no record
// references at all (left by a pull that was killed) are removed too, unless
// a pull running now needs them. It returns the references of the images
// removed.
func (s *Store) GC(inUse []string, olderThan time.Duration) (removed []string, err error) {
	names := map[string]bool{}
	digests := map[v1.Hash]bool{}
	for _, u := range inUse {
		u = strings.TrimSpace(u)
		if strings.HasPrefix(u, "sha256:") {
			if h, err := v1.NewHash(u); err == nil {
				digests[h] = true
			}
			continue
		}
		r, err := name.ParseReference(u)
		if err != nil {
			s.log.Warn("image store: gc: ignoring an image reference that does not parse", "ref", u, "err", err)
			continue
		}
		names[r.Name()] = true
		if d, ok := r.(name.Digest); ok {
			if h, err := v1.NewHash(d.DigestStr()); err == nil {
				digests[h] = true
			}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("image store is closed")
	}
	cutoff := s.now().Add(-olderThan)
	var errs []error
	for key, r := range s.records {
		used := names[key] || digests[r.Digest] || (r.IndexDigest != nil && digests[*r.IndexDigest])
		if used || r.LastUsed.After(cutoff) {
			continue
		}
		if err := os.Remove(s.recordPath(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		delete(s.records, key)
		removed = append(removed, r.Ref)
		s.log.Info("image store: gc: removed image", "ref", r.Ref, "digest", r.Digest, "lastUsed", r.LastUsed)
	}
	if len(removed) > 0 {
		if err := atomicfile.SyncDir(filepath.Join(s.dir, imagesDir)); err != nil {
			errs = append(errs, err)
		}
	}

	// What the remaining records and the running pulls need.
	keep := map[string]bool{}
	for h := range s.inflight {
		keep[h] = true
	}
	for _, r := range s.records {
		for _, h := range r.blobs() {
			keep[h.Hex] = true
		}
	}
	errs = append(errs, s.sweep(filepath.Join(s.dir, rootfsDir), keep, "rootfs")...)
	errs = append(errs, s.sweep(filepath.Join(s.dir, blobsDir, "sha256"), keep, "blob")...)
	slices.Sort(removed)
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("image store: gc: %w", err)
	}
	return removed, nil
}

// sweep removes the entries of dir named by a digest hex not in keep; temp
// entries of running pulls are left alone. s.mu held.
func (s *Store) sweep(dir string, keep map[string]bool, what string) []error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if strings.Contains(n, tmpMarker) || len(n) != 64 || keep[n] {
			continue
		}
		if err := removeTree(filepath.Join(dir, n)); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Debug("image store: gc: removed "+what, "digest", "sha256:"+n)
	}
	return errs
}
