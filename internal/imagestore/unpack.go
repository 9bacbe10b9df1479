package imagestore

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
	maxSymlinks    = 40 // as Linux's ELOOP limit
)

// applier applies layers, in order, to one rootfs.
type applier struct {
	root   *os.Root
	ref    string
	log    *slog.Logger
	asRoot bool
	buf    []byte

	layer   string          // digest of the layer being applied, for errors
	created map[string]bool // resolved paths this layer made
	parents map[string]bool // ancestors of those
	dirs    map[string]dirMeta
}

// dirMeta is applied to directories once every layer is in: a directory
// stays writable while later entries and layers go into it.
type dirMeta struct {
	mode     fs.FileMode
	mtime    time.Time
	uid, gid int
}

func newApplier(root *os.Root, ref string, log *slog.Logger) *applier {
	return &applier{
		root:   root,
		ref:    ref,
		log:    log,
		asRoot: isRoot(),
		buf:    make([]byte, 256<<10),
		dirs:   map[string]dirMeta{},
	}
}

func (a *applier) unsafe(entry, format string, args ...any) error {
	return &UnsafeEntryError{Ref: a.ref, Layer: a.layer, Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

// decompress returns the uncompressed stream of a layer blob, telling gzip,
// zstd and plain tar apart by their magic numbers.
func decompress(r *bufio.Reader) (io.Reader, func(), error) {
	magic, err := r.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// apply applies one layer's tar stream.
func (a *applier) apply(ctx context.Context, layer string, r io.Reader) error {
	a.layer = layer
	a.created = map[string]bool{}
	a.parents = map[string]bool{}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return fmt.Errorf("image %s: layer %s: read tar: %w", a.ref, layer, err)
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags what cleanName
		// refuses below, naming the entry.
		if err := a.entry(hdr, tr); err != nil {
			var ue *UnsafeEntryError
			if errors.As(err, &ue) {
				return err
			}
			return fmt.Errorf("image %s: layer %s: entry %q: %w", a.ref, layer, hdr.Name, err)
		}
	}
}

// cleanName checks an entry name (or a hard link's target): relative, no
// ".." component. It returns the cleaned path, "." for the root itself.
func cleanName(n string) (string, string) {
	if n == "" {
		return "", "empty name"
	}
	if strings.HasPrefix(n, "/") {
		return "", "absolute path"
	}
	if strings.ContainsRune(n, 0) {
		return "", "NUL byte in name"
	}
	for c := range strings.SplitSeq(n, "/") {
		if c == ".." {
			return "", `path has a ".." component`
		}
	}
	return path.Clean(n), ""
}

func (a *applier) entry(hdr *tar.Header, tr io.Reader) error {
	name, why := cleanName(hdr.Name)
	if why != "" {
		return a.unsafe(hdr.Name, "%s", why)
	}
	dir, base := path.Split(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr.Name, dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		return a.unsafe(hdr.Name, "device node (%s %d:%d); images may not carry device nodes", typeName(hdr.Typeflag), hdr.Devmajor, hdr.Devminor)
	case tar.TypeFifo:
		a.log.Info("image store: skipping a FIFO in a layer", "ref", a.ref, "layer", a.layer, "entry", hdr.Name)
		return nil
	case tar.TypeXGlobalHeader:
		return nil // PAX global records (git archive writes one); nothing to unpack
	case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeLink: // archive/tar reads TypeRegA as TypeReg
	default:
		return a.unsafe(hdr.Name, "unsupported entry type %q", string(hdr.Typeflag))
	}
	if name == "." {
		// The root itself: its mode is the store's, not the layer's.
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return a.unsafe(hdr.Name, "symlink with an empty target")
		}
		if !path.IsAbs(hdr.Linkname) {
			if t := path.Join(path.Dir(name), hdr.Linkname); t == ".." || strings.HasPrefix(t, "../") {
				return a.unsafe(hdr.Name, "symlink target %q escapes the root", hdr.Linkname)
			}
		}
	case tar.TypeLink:
		if _, why := cleanName(hdr.Linkname); why != "" {
			return a.unsafe(hdr.Name, "hard link target %q: %s", hdr.Linkname, why)
		}
	}

	parent, err := a.resolveDir(dir, true)
	if err != nil {
		return err
	}
	target := path.Join(parent, base)

	// Replace what lower layers (or earlier entries) have at target; a
	// directory over a directory merges. Never write through what is there.
	if fi, err := a.root.Lstat(target); err == nil {
		if fi.IsDir() && hdr.Typeflag == tar.TypeDir {
			a.dirs[target] = metaOf(hdr)
			a.markCreated(target)
			return nil
		}
		if err := a.removeAll(target); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := a.root.Mkdir(target, 0o755); err != nil {
			return err
		}
		a.dirs[target] = metaOf(hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		if err := a.writeFile(target, hdr, tr); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := a.root.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
		if a.asRoot {
			if err := a.root.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
				return err
			}
		}
	case tar.TypeLink:
		old, err := a.resolveExisting(path.Clean(hdr.Linkname))
		var fi fs.FileInfo
		if err == nil {
			fi, err = a.root.Lstat(old)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return a.unsafe(hdr.Name, "hard link target %q is not a file in the image", hdr.Linkname)
		}
		if err != nil {
			return a.unsafe(hdr.Name, "hard link target %q: %v", hdr.Linkname, err)
		}
		if fi.IsDir() {
			return a.unsafe(hdr.Name, "hard link target %q is a directory", hdr.Linkname)
		}
		if err := a.root.Link(old, target); err != nil {
			return err
		}
	}
	a.markCreated(target)
	return nil
}

func (a *applier) writeFile(target string, hdr *tar.Header, r io.Reader) error {
	f, err := a.root.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(f, r, a.buf); err != nil {
		f.Close()
		return err
	}
	if a.asRoot {
		// Before the chmod: chown clears setuid and setgid.
		if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Chmod(modeOf(hdr)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if !hdr.ModTime.IsZero() {
		return a.root.Chtimes(target, accessTime(hdr), hdr.ModTime)
	}
	return nil
}

// whiteout applies a whiteout entry: .wh.NAME removes NAME, .wh..wh..opq
// empties its directory, of what lower layers put there.
func (a *applier) whiteout(entry, dir, base string) error {
	// The whiteout's directory is part of this layer, as it is on an
	// overlay filesystem's upper dir.
	parent, err := a.resolveDir(dir, true)
	if err != nil {
		return err
	}
	a.markParents(parent)
	if base == opaqueMarker {
		return a.opaque(parent)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other AUFS metadata (.wh..wh.plnk, …)
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	switch victim {
	case "", ".":
		return a.unsafe(entry, "whiteout of nothing")
	case "..":
		return a.unsafe(entry, "whiteout of the parent directory")
	}
	p := path.Join(parent, victim)
	if a.created[p] {
		return nil // whiteouts hide only lower layers
	}
	return a.removeAll(p)
}

// opaque removes from dir everything this layer did not make.
func (a *applier) opaque(dir string) error {
	d, err := a.root.Open(dir)
	if err != nil {
		return err
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		if !a.created[p] && !a.parents[p] {
			if err := a.removeAll(p); err != nil {
				return err
			}
			continue
		}
		if e.Type().IsDir() {
			if err := a.opaque(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *applier) removeAll(p string) error {
	if err := a.root.RemoveAll(p); err != nil {
		return err
	}
	for d := range a.dirs {
		if d == p || strings.HasPrefix(d, p+"/") {
			delete(a.dirs, d)
		}
	}
	return nil
}

func (a *applier) markCreated(p string) {
	a.created[p] = true
	a.markParents(path.Dir(p))
}

// markParents marks d and its ancestors as holding something of this layer.
func (a *applier) markParents(d string) {
	for ; d != "." && d != "/" && d != ""; d = path.Dir(d) {
		if a.parents[d] {
			break
		}
		a.parents[d] = true
	}
}

// resolveDir resolves the directory dir (a cleaned, relative name) inside the
// rootfs, following symlinks with the rootfs as "/" and ".." stopping at the
// root, as a chroot would. It returns a path without symlinks ("." for the
// root). With create, missing directories are made (mode 0755).
func (a *applier) resolveDir(dir string, create bool) (string, error) {
	var done []string
	todo := splitPath(dir)
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		p := path.Join(append(slices.Clone(done), c)...)
		fi, err := a.root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && create:
			if err := a.root.Mkdir(p, 0o755); err != nil {
				return "", err
			}
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > maxSymlinks {
				return "", fmt.Errorf("%s: too many levels of symbolic links", dir)
			}
			t, err := a.root.Readlink(p)
			if err != nil {
				return "", err
			}
			if path.IsAbs(t) {
				done = done[:0]
			}
			todo = append(splitPath(t), todo...)
			continue
		case !fi.IsDir():
			return "", fmt.Errorf("%s is not a directory", p)
		}
		done = append(done, c)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

// resolveExisting resolves the parent of name in the rootfs; the last
// component is not followed.
func (a *applier) resolveExisting(name string) (string, error) {
	dir, base := path.Split(name)
	parent, err := a.resolveDir(dir, false)
	if err != nil {
		return "", err
	}
	return path.Join(parent, base), nil
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

// finish applies the directories' modes, owners and times, deepest first.
func (a *applier) finish() error {
	dirs := make([]string, 0, len(a.dirs))
	for d := range a.dirs {
		dirs = append(dirs, d)
	}
	slices.SortFunc(dirs, func(x, y string) int { return strings.Count(y, "/") - strings.Count(x, "/") })
	for _, d := range dirs {
		m := a.dirs[d]
		fi, err := a.root.Lstat(d)
		if err != nil || !fi.IsDir() {
			continue
		}
		f, err := a.root.Open(d)
		if err != nil {
			return err
		}
		if a.asRoot {
			err = f.Chown(m.uid, m.gid)
		}
		if err == nil {
			err = f.Chmod(m.mode)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("directory %s: %w", d, err)
		}
		if !m.mtime.IsZero() {
			if err := a.root.Chtimes(d, m.mtime, m.mtime); err != nil {
				return fmt.Errorf("directory %s: %w", d, err)
			}
		}
	}
	return nil
}

func metaOf(hdr *tar.Header) dirMeta {
	return dirMeta{mode: modeOf(hdr), mtime: hdr.ModTime, uid: hdr.Uid, gid: hdr.Gid}
}

// modeOf is the entry's permission bits with setuid, setgid and sticky.
func modeOf(hdr *tar.Header) fs.FileMode {
	m := fs.FileMode(hdr.Mode) & fs.ModePerm
	if hdr.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if hdr.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if hdr.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func accessTime(hdr *tar.Header) time.Time {
	if !hdr.AccessTime.IsZero() {
		return hdr.AccessTime
	}
	return hdr.ModTime
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	}
	return string(t)
}
