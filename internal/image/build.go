package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BuildOptions tune Build. The zero value builds module.yaml's platforms
// into DefaultCacheDir with every time set to the Unix epoch.
type BuildOptions struct {
	// Platforms replaces module.yaml's platforms (each "os/arch[/variant]",
	// or several joined with commas).
	Platforms []string
	// Tag replaces module.yaml's tag.
	Tag string
	// CacheDir is the local OCI layout (default DefaultCacheDir()).
	CacheDir string
	// Insecure allows plain HTTP to a base image's registry that is not on
	// loopback (loopback registries may always use it).
	Insecure bool
	// SourceDateEpoch is the time, in Unix seconds, of everything in the
	// image: config, history, file times (SOURCE_DATE_EPOCH; default 0).
	SourceDateEpoch int64
	// Log receives progress lines; nil for none.
	Log io.Writer
	// Verbose adds each phase's time and each layer to Log.
	Verbose bool
	// Pull asks the base's registry for its tag again even when the cache
	// holds it (a tag found in the cache is otherwise used as it is, so a
	// second build needs no network).
	Pull bool
}

// Result is what Build made.
type Result struct {
	Module    *Module
	Reference name.Tag
	// Digest is the index's digest for several platforms, else the image
	// manifest's: what the reference points at.
	Digest    v1.Hash
	Index     v1.ImageIndex // nil for one platform
	Image     v1.Image      // for one platform, nil for several
	Platforms []PlatformResult
	Stats     Stats
}

// PlatformResult is one platform's image.
type PlatformResult struct {
	Platform string
	Digest   v1.Hash
	Image    v1.Image
}

// Artifact returns what a push writes: the index, or the image for one
// platform.
func (r *Result) Artifact() remote.Taggable {
	if r.Index != nil {
		return r.Index
	}
	return r.Image
}

// Stats tell where a build's time went and what the layer cache saved.
type Stats struct {
	Total   time.Duration
	GoBuild time.Duration // wall time of the `go build` phase (platforms in parallel)
	Phases  []Phase
	// LayersBuilt were written and compressed; LayersCached were found in
	// the layer cache by the digest of their content (or made once for
	// several platforms) and reused as they were.
	LayersBuilt, LayersCached int
	// BaseBlobsPulled counts the base's blobs fetched from its registry.
	BaseBlobsPulled int
}

// Own is the time outpost adds on top of `go build`.
func (s Stats) Own() time.Duration { return s.Total - s.GoBuild }

// Phase is one phase's wall time.
type Phase struct {
	Name     string
	Duration time.Duration
}

// String prints the phases on one line.
func (s Stats) String() string {
	var parts []string
	for _, p := range s.Phases {
		parts = append(parts, fmt.Sprintf("%s %s", p.Name, fmtDuration(p.Duration)))
	}
	return fmt.Sprintf("%s; total %s, outpost's own %s; layers: %d built, %d cached; base blobs pulled: %d",
		strings.Join(parts, ", "), fmtDuration(s.Total), fmtDuration(s.Own()), s.LayersBuilt, s.LayersCached, s.BaseBlobsPulled)
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// SourceDateEpoch reads SOURCE_DATE_EPOCH from the environment (0 when
// unset).
func SourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds since 1970", s)
	}
	return n, nil
}

// defaultJobs bounds the work done at once: platforms built, layers
// compressed.
func defaultJobs() int { return runtime.GOMAXPROCS(0) }

// Build builds the module in dir (which holds module.yaml) for its
// platforms into the cache, records it there under its reference and
// returns it. One platform makes an image; several make an OCI index of
// them (as docker buildx pushes them). The same inputs give the same
// digests on any machine.
func Build(ctx context.Context, dir string, opts BuildOptions) (*Result, error) {
	t0 := time.Now()
	m, err := LoadModule(dir)
	if err != nil {
		return nil, err
	}
	return buildModule(ctx, m, opts, t0)
}

// BuildModule builds a module already loaded with LoadModule.
func BuildModule(ctx context.Context, m *Module, opts BuildOptions) (*Result, error) {
	return buildModule(ctx, m, opts, time.Now())
}

type builder struct {
	ctx    context.Context
	m      *Module
	opts   BuildOptions
	log    io.Writer
	c      *Cache
	layers *layerMaker
	mtime  time.Time

	mu     sync.Mutex
	phases []Phase
}

func (b *builder) phase(name string, start time.Time) time.Time {
	now := time.Now()
	b.mu.Lock()
	b.phases = append(b.phases, Phase{Name: name, Duration: now.Sub(start)})
	b.mu.Unlock()
	return now
}

func (b *builder) logf(format string, a ...any) {
	fmt.Fprintf(b.log, format+"\n", a...)
}

func (b *builder) verbosef(format string, a ...any) {
	if b.opts.Verbose {
		b.logf(format, a...)
	}
}

// platformOut is what one platform's assembly made.
type platformOut struct {
	desc   v1.Descriptor // the image manifest
	layers []builtLayer
}

func buildModule(ctx context.Context, m *Module, opts BuildOptions, t0 time.Time) (*Result, error) {
	b := &builder{ctx: ctx, m: m, opts: opts, log: opts.Log, mtime: time.Unix(opts.SourceDateEpoch, 0).UTC()}
	if b.log == nil {
		b.log = io.Discard
	}
	plats := m.Platforms
	if len(opts.Platforms) > 0 {
		plats = opts.Platforms
	}
	platforms, err := platformsOf(plats)
	if err != nil {
		return nil, err
	}
	ref, err := m.Reference(opts.Tag)
	if err != nil {
		return nil, fmt.Errorf("%s: tag: %w", m.File, err)
	}
	if b.c, err = OpenCache(opts.CacheDir); err != nil {
		return nil, err
	}
	b.layers = newLayerMaker(b.c, b.mtime)

	var df *dockerfile
	baseName := m.Base
	if m.Build.Kind == KindDockerfile {
		if df, baseName, err = b.loadDockerfile(platforms); err != nil {
			return nil, err
		}
	}
	names := make([]string, len(platforms))
	for i, p := range platforms {
		names[i] = p.String()
	}
	b.logf("building %s (%s) for %s", ref, b.describeBuild(), strings.Join(names, ", "))
	t := b.phase("load", t0)

	// The base is resolved while Go compiles; the first failure of either
	// stops the other.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ctx = cctx
	var bases map[string]*baseImage
	var baseErr error
	var baseWG sync.WaitGroup
	puller := &basePuller{c: b.c, insecure: opts.Insecure, pull: opts.Pull, ctx: cctx}
	if baseName != "scratch" {
		baseWG.Add(1)
		go func() {
			defer baseWG.Done()
			tb := time.Now()
			bases, baseErr = puller.resolve(baseName, platforms)
			if baseErr != nil {
				cancel()
			}
			b.phase("base", tb)
			if n := puller.fetched.Load(); n > 0 {
				b.logf("pulled base %s (%d blobs)", baseName, n)
			}
		}()
	}

	// The files layer is the same for every platform: listed once.
	var filesLayer *layerFiles
	if m.Build.Kind == KindFiles {
		if filesLayer, err = b.filesLayer(); err != nil {
			baseWG.Wait()
			return nil, err
		}
	}
	var goBin, tmp string
	if m.Build.Kind == KindGo {
		if goBin, err = exec.LookPath("go"); err != nil {
			baseWG.Wait()
			return nil, fmt.Errorf("%s: build.go needs the Go toolchain, and `go` is not on PATH: install Go (https://go.dev/dl) or put it on PATH", m.File)
		}
		if tmp, err = os.MkdirTemp("", "outpost-build-"); err != nil {
			baseWG.Wait()
			return nil, err
		}
		defer os.RemoveAll(tmp)
	}

	// Each platform is compiled and then, once the base is there, layered
	// and written: a platform whose binary is ready is layered while the
	// others still compile. Up to 4 compiles run at once even on 2 cores:
	// much of a small build is the single-threaded link, so running them
	// together fills the cores (3 platforms: 1.8× one instead of 2.3×).
	outs := make([]platformOut, len(platforms))
	errs := make([]error, len(platforms))
	compileSem := make(chan struct{}, max(4, defaultJobs()))
	layerSem := make(chan struct{}, defaultJobs())
	var mu sync.Mutex
	var lastCompiled time.Time
	var wg sync.WaitGroup
	tCompile := time.Now()
	for i, p := range platforms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bin string
			if goBin != "" {
				bin = filepath.Join(tmp, strings.ReplaceAll(p.String(), "/", "-"), m.Name)
				compileSem <- struct{}{}
				tc := time.Now()
				err := b.compile(goBin, p, bin)
				<-compileSem
				mu.Lock()
				lastCompiled = time.Now()
				mu.Unlock()
				if err != nil {
					errs[i] = err
					cancel()
					return
				}
				b.verbosef("  go build %s for %s: %s", m.Build.Go, p, fmtDuration(time.Since(tc)))
			}
			baseWG.Wait()
			if baseErr != nil || cctx.Err() != nil {
				return
			}
			layerSem <- struct{}{}
			defer func() { <-layerSem }()
			var base *baseImage
			if bases != nil {
				base = bases[p.String()]
			}
			outs[i], errs[i] = b.assemble(p, base, df, bin, filesLayer)
		}()
	}
	wg.Wait()
	baseWG.Wait()
	var goWall time.Duration
	if goBin != "" {
		goWall = lastCompiled.Sub(tCompile)
		b.phases = append(b.phases, Phase{Name: "go build", Duration: goWall})
		t = lastCompiled
	}
	if err := firstErrors(errs); err != nil && (baseErr == nil || !errors.Is(err, context.Canceled)) {
		return nil, err
	}
	if baseErr != nil {
		return nil, baseErr
	}
	t = b.phase("layers", t)

	res := &Result{Module: m, Reference: ref}
	top := outs[0].desc
	if len(platforms) > 1 {
		idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
		for i, p := range platforms {
			d := outs[i].desc
			d.Platform = &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
			idx.Manifests = append(idx.Manifests, d)
		}
		raw, err := json.Marshal(idx)
		if err != nil {
			return nil, err
		}
		if top, err = b.c.putBlob(raw, types.OCIImageIndex); err != nil {
			return nil, err
		}
	}
	if err := b.c.Tag(ref, top, "build"); err != nil {
		return nil, err
	}
	res.Digest = top.Digest
	for i, p := range platforms {
		img, err := b.c.Image(outs[i].desc.Digest)
		if err != nil {
			return nil, err
		}
		res.Platforms = append(res.Platforms, PlatformResult{Platform: p.String(), Digest: outs[i].desc.Digest, Image: img})
		for _, l := range outs[i].layers {
			if l.Cached {
				res.Stats.LayersCached++
			} else {
				res.Stats.LayersBuilt++
			}
		}
	}
	if len(platforms) > 1 {
		if res.Index, err = b.c.Index(top.Digest); err != nil {
			return nil, err
		}
	} else {
		res.Image = res.Platforms[0].Image
	}
	b.phase("write", t)
	res.Stats.Total = time.Since(t0)
	res.Stats.GoBuild = goWall
	res.Stats.Phases = b.phases
	res.Stats.BaseBlobsPulled = int(puller.fetched.Load())
	b.verbosef("timings: %s", res.Stats)
	return res, nil
}

func (b *builder) describeBuild() string {
	switch b.m.Build.Kind {
	case KindGo:
		return "go build " + b.m.Build.Go
	case KindDockerfile:
		return b.m.Build.Dockerfile
	}
	return fmt.Sprintf("%d files entr%s", len(b.m.Build.Files), map[bool]string{true: "y", false: "ies"}[len(b.m.Build.Files) == 1])
}

// loadDockerfile parses the module's Dockerfile and returns it with its
// base, which must be the same for every platform.
func (b *builder) loadDockerfile(platforms []v1.Platform) (*dockerfile, string, error) {
	file := filepath.Join(b.m.Dir, b.m.Build.Dockerfile)
	data, err := os.ReadFile(filepath.Join(b.m.absDir, b.m.Build.Dockerfile))
	if err != nil {
		return nil, "", err
	}
	df, err := parseDockerfile(data, file)
	if err != nil {
		return nil, "", err
	}
	base := ""
	for _, p := range platforms {
		s, err := df.baseRef(p)
		if err != nil {
			return nil, "", err
		}
		if base != "" && s != base {
			return nil, "", df.problem(df.insts[df.from], fmt.Errorf("FROM names %s for one platform and %s for another; outpost picks each platform from one base's index", base, s))
		}
		base = s
	}
	return df, base, nil
}

// compile cross-compiles the module's main package for p, as ko does:
// CGO off, -trimpath, no symbols and no build id, so that the same sources
// give the same binary wherever they are.
func (b *builder) compile(goBin string, p v1.Platform, out string) error {
	cmd := exec.CommandContext(b.ctx, goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, b.m.Build.Go)
	cmd.Dir = b.m.absDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Env = append(cmd.Env, goEnv(p)...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		msg := strings.TrimSpace(output.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s:%d: build.go: go build %s for %s failed:\n%s", b.m.File, b.m.Build.Line, b.m.Build.Go, p, indent(msg))
	}
	return nil
}

// firstErrors returns the first platform's failure, leaving out the
// cancellations it caused and saying how many more platforms failed.
func firstErrors(errs []error) error {
	var real []error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			real = append(real, err)
		}
	}
	switch len(real) {
	case 0:
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	case 1:
		return real[0]
	}
	return fmt.Errorf("%w\n(and %d more platform%s failed)", real[0], len(real)-1, map[bool]string{true: "", false: "s"}[len(real) == 2])
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// binaryPath is where a go build's binary goes in the image: the
// entrypoint's program when module.yaml names one by absolute path, else
// /NAME.
func (b *builder) binaryPath() string {
	if len(b.m.Entrypoint) > 0 && path.IsAbs(b.m.Entrypoint[0]) {
		return b.m.Entrypoint[0]
	}
	return "/" + b.m.Name
}

// filesLayer lists build.files into one layer.
func (b *builder) filesLayer() (*layerFiles, error) {
	lf := newLayerFiles()
	var problems []Problem
	for i, fc := range b.m.Build.Files {
		if err := copyInto(lf, b.m.absDir, fc.Src, fc.Dst, copyOpts{}, fmt.Sprintf("build.files[%d]", i)); err != nil {
			problems = append(problems, Problem{Line: fc.Line, Message: err.Error()})
		}
	}
	if len(problems) > 0 {
		return nil, &ModuleError{File: b.m.File, Problems: problems}
	}
	return lf, nil
}

// defaultPath is the PATH docker gives images built from scratch.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// assemble makes platform p's image: the base's layers and config, the
// build's layers, module.yaml's settings; it writes config and manifest.
func (b *builder) assemble(p v1.Platform, base *baseImage, df *dockerfile, bin string, filesLayer *layerFiles) (platformOut, error) {
	var out platformOut
	cfg := &v1.ConfigFile{}
	var layers []v1.Descriptor
	if base != nil {
		cfg = base.config.DeepCopy()
		layers = append(layers, base.layers...)
	} else {
		cfg.Config.Env = []string{defaultPath}
	}
	cfg.Container, cfg.Config.Image, cfg.Config.Hostname = "", "", ""
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Created = v1.Time{Time: b.mtime}
	cfg.RootFS.Type = "layers"

	var steps []dfStep
	switch b.m.Build.Kind {
	case KindGo:
		fi, err := os.Stat(bin)
		if err != nil {
			return out, err
		}
		lf := newLayerFiles()
		lf.add(entry{name: b.binaryPath(), typ: tar.TypeReg, mode: 0o755, src: bin, size: fi.Size(), origin: "go build"})
		steps = append(steps, dfStep{createdBy: "outpost build: go build -trimpath -ldflags='-s -w' " + b.m.Build.Go, files: lf})
		if b.m.Entrypoint == nil {
			cfg.Config.Entrypoint = []string{b.binaryPath()}
			cfg.Config.Cmd = nil
		}
	case KindFiles:
		steps = append(steps, dfStep{createdBy: "outpost build: files", files: filesLayer})
	case KindDockerfile:
		dsteps, err := df.eval(b.m.absDir, p, cfg)
		if err != nil {
			return out, err
		}
		steps = dsteps
	}
	b.applyModule(cfg)

	for _, s := range steps {
		h := v1.History{Created: cfg.Created, CreatedBy: s.createdBy, Comment: "outpost"}
		if s.files == nil {
			h.EmptyLayer = true
			cfg.History = append(cfg.History, h)
			continue
		}
		t := time.Now()
		l, err := b.layers.make(s.files.sorted(), s.createdBy)
		if err != nil {
			return out, err
		}
		state := "built"
		if l.Cached {
			state = "cached"
		}
		b.verbosef("  %s layer %s (%s, %s): %s", p, l.Desc.Digest.Hex[:12], humanSize(l.Desc.Size), state, fmtDuration(time.Since(t)))
		out.layers = append(out.layers, l)
		layers = append(layers, l.Desc)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		cfg.History = append(cfg.History, h)
	}

	cfgRaw, err := json.Marshal(cfg)
	if err != nil {
		return out, err
	}
	cfgDesc, err := b.c.putBlob(cfgRaw, types.OCIConfigJSON)
	if err != nil {
		return out, err
	}
	man := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfgDesc, Layers: layers}
	manRaw, err := json.Marshal(man)
	if err != nil {
		return out, err
	}
	out.desc, err = b.c.putBlob(manRaw, types.OCIManifestSchema1)
	return out, err
}

// applyModule sets what module.yaml says on the config, over the base's
// and the Dockerfile's values.
func (b *builder) applyModule(cfg *v1.ConfigFile) {
	m, c := b.m, &cfg.Config
	for _, e := range m.Env {
		c.Env = setEnv(c.Env, e.Name, e.Value)
	}
	if m.Entrypoint != nil {
		c.Entrypoint = m.Entrypoint
		c.Cmd = nil // as docker: a new entrypoint drops the base's command
	}
	if m.Cmd != nil {
		c.Cmd = m.Cmd
	}
	if m.WorkingDir != "" {
		c.WorkingDir = m.WorkingDir
	}
	if m.User != "" {
		c.User = m.User
	}
	for _, l := range m.Labels {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[l.Name] = l.Value
	}
	for _, p := range m.ExposedPorts {
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		c.ExposedPorts[p] = struct{}{}
	}
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
