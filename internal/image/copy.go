package image

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// copyOpts are the options of one copy into a layer (COPY's flags).
type copyOpts struct {
	chmod    int64 // with hasChmod; else modes are normalised
	hasChmod bool
	uid, gid int
}

// copyInto adds src (a path relative to the module directory dir: a file,
// a directory whose contents are copied, or a symlink to either inside dir)
// at dst in the image, with docker's COPY rules: a file goes to dst, or
// into dst when dst ends with "/"; a directory's contents go into dst.
// Paths that leave dir — "..", absolute paths, symlinks pointing out — are
// errors that name the path. what names the source in messages.
func copyInto(lf *layerFiles, dir, src, dst string, o copyOpts, what string) error {
	rel, err := insideDir(dir, src)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	full, err := filepath.EvalSymlinks(filepath.Join(dir, rel)) // a top-level symlink is followed; insideDir checked where it points
	if err != nil {
		return fmt.Errorf("%s: %s does not exist in the module directory", what, src)
	}
	fi, err := os.Stat(full)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if fi.IsDir() {
		return copyDir(lf, dir, full, dst, o, what)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file or a directory", what, src)
	}
	target := dst
	if strings.HasSuffix(dst, "/") {
		target = path.Join(dst, filepath.Base(full))
	}
	lf.add(fileEntry(target, full, fi, o, what+": "+src))
	return nil
}

func fileEntry(target, full string, fi fs.FileInfo, o copyOpts, origin string) entry {
	mode := normMode(tar.TypeReg, fi.Mode())
	if o.hasChmod {
		mode = o.chmod
	}
	return entry{name: target, typ: tar.TypeReg, mode: mode, src: full, size: fi.Size(), uid: o.uid, gid: o.gid, origin: origin}
}

// copyDir adds the contents of the directory full (inside dir) under dst.
func copyDir(lf *layerFiles, dir, full, dst string, o copyOpts, what string) error {
	dirMode := int64(0o755)
	if o.hasChmod {
		dirMode = o.chmod
	}
	lf.add(entry{name: dst, typ: tar.TypeDir, mode: dirMode, uid: o.uid, gid: o.gid, origin: what})
	return filepath.WalkDir(full, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if p == full {
			return nil
		}
		relInSrc, _ := filepath.Rel(full, p)
		relInModule, _ := filepath.Rel(dir, p)
		target := path.Join(dst, filepath.ToSlash(relInSrc))
		switch t := d.Type(); {
		case t.IsDir():
			lf.add(entry{name: target, typ: tar.TypeDir, mode: dirMode, uid: o.uid, gid: o.gid, origin: what})
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			lf.add(fileEntry(target, p, fi, o, what+": "+relInModule))
		case t&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if filepath.IsAbs(link) || path.IsAbs(link) {
				return fmt.Errorf("%s: %s is a symlink to the absolute path %s, outside the module directory; make it relative, or copy what it points to", what, relInModule, link)
			}
			if !within(dir, filepath.Clean(filepath.Join(filepath.Dir(p), link))) {
				return fmt.Errorf("%s: %s is a symlink to %s, outside the module directory; copy what it points to instead", what, relInModule, link)
			}
			lf.add(entry{name: target, typ: tar.TypeSymlink, mode: 0o777, link: filepath.ToSlash(link), uid: o.uid, gid: o.gid, origin: what})
		default:
			return fmt.Errorf("%s: %s is not a regular file, directory or symlink (%s)", what, relInModule, t.Type())
		}
		return nil
	})
}

// globSources expands a COPY source with wildcards, relative to dir.
// Without wildcards it returns src itself. A pattern matching nothing is
// an error.
func globSources(dir, src string) ([]string, error) {
	if !strings.ContainsAny(src, "*?[") {
		return []string{src}, nil
	}
	if _, err := insideDir(dir, strings.Map(func(r rune) rune {
		if strings.ContainsRune("*?[]", r) {
			return 'x'
		}
		return r
	}, src)); err != nil {
		return nil, err
	}
	matches, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(src)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("%s matches no file in the module directory", src)
	}
	sort.Strings(matches)
	out := make([]string, len(matches))
	for i, m := range matches {
		out[i], _ = filepath.Rel(dir, m)
	}
	return out, nil
}
