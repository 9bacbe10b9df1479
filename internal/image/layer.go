package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/pgzip"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Layer compression. The compressed bytes depend on the compressor, its
// version, level and block size, so all of them are part of the layer
// cache's key: a cache made by another outpost never gives a layer a digest
// that this one would not.
const (
	gzipLevel     = pgzip.BestSpeed
	gzipBlockSize = 1 << 20
)

var compressorID = func() string {
	v := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/klauspost/compress" {
				v = d.Version
				if d.Replace != nil {
					v = d.Replace.Version
				}
			}
		}
	}
	return fmt.Sprintf("pgzip-compress@%s-l%d-b%d", v, gzipLevel, gzipBlockSize)
}()

// entry is one member of a layer's tar.
type entry struct {
	name     string // path in the image, without leading slash
	typ      byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode     int64  // permission bits
	src      string // host file with the content of a regular file
	size     int64
	link     string // symlink target
	uid, gid int
	origin   string // where it came from, for messages ("build.files[0]: dist/app")
}

// normMode gives the mode outpost writes: 0755 for directories and
// executables, 0644 for other files, 0777 for symlinks.
func normMode(typ byte, hostMode os.FileMode) int64 {
	switch typ {
	case tar.TypeDir:
		return 0o755
	case tar.TypeSymlink:
		return 0o777
	}
	if hostMode&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// layerFiles collects a layer's entries: later ones replace earlier ones at
// the same path, and parent directories are added.
type layerFiles struct {
	byName map[string]entry
}

func newLayerFiles() *layerFiles { return &layerFiles{byName: map[string]entry{}} }

func (l *layerFiles) add(e entry) {
	e.name = strings.Trim(path.Clean("/"+e.name), "/")
	if e.name == "" {
		return // the root directory is implied
	}
	if prev, ok := l.byName[e.name]; ok && prev.typ == tar.TypeDir && e.typ == tar.TypeDir && prev.origin != "" && e.origin == "" {
		return // an implied parent does not replace a copied directory
	}
	l.byName[e.name] = e
	for dir := path.Dir(e.name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := l.byName[dir]; ok {
			break
		}
		l.byName[dir] = entry{name: dir, typ: tar.TypeDir, mode: 0o755}
	}
}

// sorted returns the entries in path order.
func (l *layerFiles) sorted() []entry {
	out := make([]entry, 0, len(l.byName))
	for _, e := range l.byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// writeTar writes entries as a tar with every time set to mtime and owners
// normalised: the same entries give the same bytes on any machine.
func writeTar(w io.Writer, entries []entry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     e.name,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  mtime,
			Format:   tar.FormatPAX,
		}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.link
		case tar.TypeReg:
			h.Size = e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if e.typ != tar.TypeReg || e.size == 0 {
			continue
		}
		if err := copyFile(tw, e); err != nil {
			return err
		}
	}
	return tw.Close()
}

// copyFile copies a regular file's content, failing if its size changed
// since it was listed.
func copyFile(w io.Writer, e entry) error {
	f, err := os.Open(e.src)
	if err != nil {
		return fmt.Errorf("%s: %w", e.origin, err)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, e.size))
	if err != nil {
		return err
	}
	if n != e.size {
		return fmt.Errorf("%s changed while the layer was being written (%d bytes, was %d)", e.src, n, e.size)
	}
	return nil
}

// builtLayer describes a layer in the cache.
type builtLayer struct {
	Desc      v1.Descriptor // compressed blob
	DiffID    v1.Hash       // digest of the uncompressed tar
	CreatedBy string
	Cached    bool // found in the layer cache: neither compressed nor written
}

// layerRecord is one entry of the layer cache: a diffID's compressed blob.
type layerRecord struct {
	DiffID v1.Hash `json:"diffID"`
	Digest v1.Hash `json:"digest"`
	Size   int64   `json:"size"`
}

// hashWriter counts and hashes what is written to it.
type hashWriter struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

func (w *hashWriter) hash() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.h.Sum(nil))}
}

// layerMaker makes layers into a cache, each compressed at most once: a
// layer whose uncompressed tar is in the layer cache is reused, and two
// platforms making the same layer at once make it once.
type layerMaker struct {
	c     *Cache
	mtime time.Time

	mu       sync.Mutex
	inflight map[v1.Hash]*layerCall
}

type layerCall struct {
	done chan struct{}
	res  builtLayer
	err  error
}

func newLayerMaker(c *Cache, mtime time.Time) *layerMaker {
	return &layerMaker{c: c, mtime: mtime, inflight: map[v1.Hash]*layerCall{}}
}

// make returns the layer holding entries. The tar is written twice at
// most: once to hash it (the diffID is the cache key) and, on a miss, once
// more through the parallel compressor into the blob store.
func (m *layerMaker) make(entries []entry, createdBy string) (builtLayer, error) {
	hw := &hashWriter{h: sha256.New()}
	if err := writeTar(hw, entries, m.mtime); err != nil {
		return builtLayer{}, err
	}
	diffID := hw.hash()

	m.mu.Lock()
	if call, ok := m.inflight[diffID]; ok {
		m.mu.Unlock()
		<-call.done
		res := call.res
		res.CreatedBy, res.Cached = createdBy, true
		return res, call.err
	}
	call := &layerCall{done: make(chan struct{})}
	m.inflight[diffID] = call
	m.mu.Unlock()

	call.res, call.err = m.makeOnce(entries, diffID)
	close(call.done)
	if call.err != nil {
		m.mu.Lock()
		delete(m.inflight, diffID)
		m.mu.Unlock()
	}
	res := call.res
	res.CreatedBy = createdBy
	return res, call.err
}

func (m *layerMaker) recordPath(diffID v1.Hash) string {
	return filepath.Join(m.c.layerDir(), diffID.Hex+".json")
}

func (m *layerMaker) makeOnce(entries []entry, diffID v1.Hash) (builtLayer, error) {
	if rec, ok := m.lookup(diffID); ok {
		return builtLayer{Desc: v1.Descriptor{MediaType: types.OCILayer, Digest: rec.Digest, Size: rec.Size}, DiffID: diffID, Cached: true}, nil
	}
	bw, err := m.c.newBlobWriter()
	if err != nil {
		return builtLayer{}, err
	}
	defer bw.abort()
	zw, err := pgzip.NewWriterLevel(bw, gzipLevel)
	if err != nil {
		return builtLayer{}, err
	}
	if err := zw.SetConcurrency(gzipBlockSize, max(2, defaultJobs())); err != nil {
		return builtLayer{}, err
	}
	zw.ModTime = time.Unix(0, 0)
	uw := &hashWriter{h: sha256.New()}
	if err := writeTar(io.MultiWriter(zw, uw), entries, m.mtime); err != nil {
		zw.Close()
		return builtLayer{}, err
	}
	if err := zw.Close(); err != nil {
		return builtLayer{}, err
	}
	if got := uw.hash(); got != diffID {
		return builtLayer{}, errors.New("a file changed while its layer was being written; build again")
	}
	digest, size, err := bw.commit(v1.Hash{})
	if err != nil {
		return builtLayer{}, err
	}
	rec := layerRecord{DiffID: diffID, Digest: digest, Size: size}
	b, _ := json.Marshal(rec)
	if err := os.MkdirAll(m.c.layerDir(), 0o755); err != nil {
		return builtLayer{}, m.c.writeErr(err)
	}
	// The record need not be durable: a lost or torn record is a miss, and
	// a record that outlives its blob is ignored by lookup.
	if err := m.c.writeFileAtomic(m.recordPath(diffID), b, false); err != nil {
		return builtLayer{}, err
	}
	return builtLayer{Desc: v1.Descriptor{MediaType: types.OCILayer, Digest: digest, Size: size}, DiffID: diffID}, nil
}

// lookup finds diffID in the layer cache; a record whose blob is missing or
// of the wrong size is a miss.
func (m *layerMaker) lookup(diffID v1.Hash) (layerRecord, bool) {
	b, err := os.ReadFile(m.recordPath(diffID))
	if err != nil {
		return layerRecord{}, false
	}
	var rec layerRecord
	if json.Unmarshal(b, &rec) != nil || rec.DiffID != diffID || !m.c.HasBlob(rec.Digest, rec.Size) {
		return layerRecord{}, false
	}
	return rec, true
}
