package image

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// What became of a layer.
const (
	layerPushed  = "pushed"
	layerExists  = "exists"
	layerMounted = "mounted"
	layerStopped = "stopped" // the push failed before it was done
)

// pushLayer is one layer's progress.
type pushLayer struct {
	digest v1.Hash
	size   int64
	sent   atomic.Int64
	result atomic.Pointer[layerResult] // set once, when it is done
	bar    *mpb.Bar
}

type layerResult struct {
	status string
	from   string // the repository it was mounted from
}

func (l *pushLayer) done() (status, from string) {
	if r := l.result.Load(); r != nil {
		return r.status, r.from
	}
	return "", ""
}

// pushTracker follows the layers of one push: how many bytes each has sent
// (through the layers' readers) and what became of it (through the
// requests: a HEAD that found it, a mount, the PUT that committed it).
type pushTracker struct {
	w      io.Writer
	tty    bool
	layers map[v1.Hash]*pushLayer
	order  []*pushLayer
	bars   *mpb.Progress

	mu sync.Mutex // serialises lines written to w
}

// newPushTracker returns nil when opts want no progress.
func newPushTracker(t remote.Taggable, opts PushOptions) *pushTracker {
	if opts.Progress == nil {
		return nil
	}
	pt := &pushTracker{w: opts.Progress, tty: opts.TTY, layers: map[v1.Hash]*pushLayer{}}
	pt.collect(t)
	if pt.tty && len(pt.order) > 0 {
		pt.bars = mpb.New(mpb.WithOutput(opts.Progress), mpb.WithAutoRefresh())
		for _, l := range pt.order {
			l.bar = pt.bars.AddBar(0,
				mpb.PrependDecorators(decor.Name(shortDigest(l.digest), decor.WC{C: decor.DindentRight | decor.DextraSpace})),
				mpb.AppendDecorators(decor.Any(l.describe, decor.WC{W: 21, C: decor.DindentRight})),
			)
			l.bar.SetTotal(max(l.size, 1), false)
		}
	}
	return pt
}

// collect lists the distributable layers of an image or of each image of
// an index, once each, in order.
func (pt *pushTracker) collect(t remote.Taggable) {
	switch a := t.(type) {
	case v1.ImageIndex:
		im, err := a.IndexManifest()
		if err != nil {
			return
		}
		for _, d := range im.Manifests {
			switch {
			case d.MediaType.IsImage():
				if img, err := a.Image(d.Digest); err == nil {
					pt.collect(img)
				}
			case d.MediaType.IsIndex():
				if idx, err := a.ImageIndex(d.Digest); err == nil {
					pt.collect(idx)
				}
			}
		}
	case v1.Image:
		ls, err := a.Layers()
		if err != nil {
			return
		}
		for _, l := range ls {
			mt, err := l.MediaType()
			if err != nil || !mt.IsDistributable() {
				continue
			}
			d, err := l.Digest()
			if err != nil {
				continue // a streaming layer: not known before it is sent
			}
			if _, ok := pt.layers[d]; ok {
				continue
			}
			size, _ := l.Size()
			pl := &pushLayer{digest: d, size: size}
			pt.layers[d] = pl
			pt.order = append(pt.order, pl)
		}
	}
}

// observe watches the registry's answers for what became of each layer.
func (pt *pushTracker) observe(req *http.Request, resp *http.Response) {
	p := req.URL.Path
	switch {
	case req.Method == http.MethodHead && resp.StatusCode == http.StatusOK && strings.Contains(p, "/blobs/"):
		pt.finish(p[strings.LastIndex(p, "/")+1:], layerExists, "")
	case req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated && req.URL.Query().Get("mount") != "":
		pt.finish(req.URL.Query().Get("mount"), layerMounted, req.URL.Query().Get("from"))
	case req.Method == http.MethodPut && resp.StatusCode == http.StatusCreated && req.URL.Query().Get("digest") != "":
		pt.finish(req.URL.Query().Get("digest"), layerPushed, "")
	}
}

func (pt *pushTracker) finish(digest, status, from string) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return
	}
	l := pt.layers[h]
	if l == nil || !l.result.CompareAndSwap(nil, &layerResult{status: status, from: from}) {
		return
	}
	if l.bar != nil {
		l.bar.SetCurrent(max(l.size, 1))
		l.bar.SetTotal(-1, true)
		return
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	fmt.Fprintf(pt.w, "%s: %s\n", shortDigest(l.digest), l.describe(decor.Statistics{}))
}

// close ends the progress: after a push that succeeded, layers nobody
// asked about were already there (the registry had the manifest).
func (pt *pushTracker) close(err error) {
	for _, l := range pt.order {
		if err == nil {
			pt.finish(l.digest.String(), layerExists, "")
		} else if l.bar != nil && l.result.CompareAndSwap(nil, &layerResult{status: layerStopped}) {
			l.bar.Abort(false)
		}
	}
	if pt.bars != nil {
		pt.bars.Wait()
	}
}

// describe is the text beside a layer: its state and size.
func (l *pushLayer) describe(decor.Statistics) string {
	switch s, from := l.done(); s {
	case layerPushed:
		return "pushed " + humanBytes(l.size)
	case layerMounted:
		if from != "" {
			return "mounted from " + from
		}
		return s
	case layerExists:
		return "exists"
	case layerStopped:
		if n := l.sent.Load(); n > 0 {
			return "stopped at " + humanBytes(n)
		}
		return "not pushed"
	}
	if n := l.sent.Load(); n > 0 {
		return humanBytes(n) + " / " + humanBytes(l.size)
	}
	return "waiting"
}

// wrap returns t with layers whose readers count the bytes sent, for the
// bars. Mountable layers stay mountable, streaming layers are left alone.
func (pt *pushTracker) wrap(t remote.Taggable) remote.Taggable {
	switch a := t.(type) {
	case v1.ImageIndex:
		return &trackedIndex{imageIndex: a, pt: pt}
	case v1.Image:
		return &trackedImage{Image: a, pt: pt}
	}
	return t
}

func (pt *pushTracker) wrapLayer(l v1.Layer) v1.Layer {
	if ml, ok := l.(*remote.MountableLayer); ok {
		return &remote.MountableLayer{Layer: pt.wrapLayer(ml.Layer), Reference: ml.Reference}
	}
	if _, ok := l.(*stream.Layer); ok {
		return l
	}
	d, err := l.Digest()
	if err != nil {
		return l
	}
	pl := pt.layers[d]
	if pl == nil || pl.bar == nil {
		return l
	}
	return &trackedLayer{Layer: l, pl: pl}
}

// imageIndex lets trackedIndex embed a v1.ImageIndex under another field
// name than its ImageIndex method.
type imageIndex = v1.ImageIndex

type trackedIndex struct {
	imageIndex
	pt *pushTracker
}

func (i *trackedIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := i.imageIndex.Image(h)
	if err != nil {
		return nil, err
	}
	return &trackedImage{Image: img, pt: i.pt}, nil
}

func (i *trackedIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	idx, err := i.imageIndex.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return &trackedIndex{imageIndex: idx, pt: i.pt}, nil
}

// Layer passes through an index's non-image children.
func (i *trackedIndex) Layer(h v1.Hash) (v1.Layer, error) {
	if wl, ok := i.imageIndex.(interface {
		Layer(v1.Hash) (v1.Layer, error)
	}); ok {
		return wl.Layer(h)
	}
	return nil, fmt.Errorf("index child %s is neither an image nor an index", h)
}

func (i *trackedIndex) Descriptor() (*v1.Descriptor, error) { return partial.Descriptor(i.imageIndex) }

type trackedImage struct {
	v1.Image
	pt *pushTracker
}

func (i *trackedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for n, l := range ls {
		out[n] = i.pt.wrapLayer(l)
	}
	return out, nil
}

func (i *trackedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return i.pt.wrapLayer(l), nil
}

// ConfigLayer keeps the inner image's config layer (mountable, if it was).
func (i *trackedImage) ConfigLayer() (v1.Layer, error) { return partial.ConfigLayer(i.Image) }

func (i *trackedImage) Descriptor() (*v1.Descriptor, error) { return partial.Descriptor(i.Image) }

type trackedLayer struct {
	v1.Layer
	pl *pushLayer
}

func (l *trackedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	l.pl.sent.Store(0) // a retry starts the blob again
	l.pl.bar.SetCurrent(0)
	return &countingReader{ReadCloser: rc, pl: l.pl}, nil
}

type countingReader struct {
	io.ReadCloser
	pl *pushLayer
}

func (r *countingReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	if n > 0 {
		sent := r.pl.sent.Add(int64(n))
		r.pl.bar.SetCurrent(min(sent, r.pl.size))
	}
	return n, err
}

// shortDigest is a digest's first 12 hex digits, as docker shows them.
func shortDigest(h v1.Hash) string {
	if len(h.Hex) > 12 {
		return h.Hex[:12]
	}
	return h.Hex
}

// humanBytes formats a size in binary units ("40.0 MiB").
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
