// Package atomicfile replaces files atomically and durably: the new contents go to a temp
// file in the same directory, which is fsynced, given its mode, renamed over the target,
// and the directory is fsynced. A crash at any moment leaves the old file or the new one,
// never a mix, and once WriteFile returns the new one survives a power loss.
//
// Temp files are named .BASE.tmp-RANDOM; a crash can leave one behind, and IsTemp tells
// them apart for the caller's cleanup. The package imports nothing of outpost, so that
// every part, the store included, can use it.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Marker is in the name of every temp file, between the target's base name and a random
// suffix.
const Marker = ".tmp-"

// Option changes how WriteFile writes.
type Option func(*options)

type options struct{ noSync bool }

// NoSync skips both fsyncs: the replacement stays atomic (readers see the old or the new
// contents) but a power loss may undo it. For files that a reboot makes stale anyway.
func NoSync() Option { return func(o *options) { o.noSync = true } }

// IsTemp reports whether name (a base name) is one of the temp files of WriteFile.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, Marker)
}

// WriteFile replaces path with data, with mode perm (whatever the umask): temp file in
// path's directory, write, chmod, fsync, rename, directory fsync. On error path is as it
// was and the temp file is gone.
func WriteFile(path string, data []byte, perm fs.FileMode, opts ...Option) error {
	f, err := Create(path, perm, opts...)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}

// File is the new contents of a file, written to a temp file beside it: Commit puts it
// in place, Close (without Commit) drops it. Write to it as to any *os.File.
type File struct {
	*os.File
	path string
	perm fs.FileMode
	opts options
	done bool
}

// Create starts replacing path; see File. The file gets mode perm when committed.
func Create(path string, perm fs.FileMode, opts ...Option) (*File, error) {
	f := &File{path: path, perm: perm}
	for _, opt := range opts {
		opt(&f.opts)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+Marker+"*")
	if err != nil {
		return nil, err
	}
	f.File = tmp
	return f, nil
}

// Commit makes the written contents those of the file: chmod, fsync, close, rename over
// it, directory fsync. After an error the file is unchanged and the temp file gone.
func (f *File) Commit() error {
	if f.done {
		return os.ErrClosed
	}
	f.done = true
	tmp := f.File.Name()
	err := f.File.Chmod(f.perm)
	if err == nil && !f.opts.noSync {
		err = f.File.Sync()
	}
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = Rename(tmp, f.path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if f.opts.noSync {
		return nil
	}
	return SyncDir(filepath.Dir(f.path))
}

// Close drops the new contents unless they were committed; it is safe to defer.
func (f *File) Close() error {
	if f.done {
		return nil
	}
	f.done = true
	f.File.Close()
	return os.Remove(f.File.Name())
}

// SyncDir makes the entries of directory dir (renames, creations, removals) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = syncDir(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
