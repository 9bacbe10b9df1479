package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/pgzip"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/sdk"
)

const fixtureDir = "../../fixtures/modules/tempsensor"

// copyFixture copies the tempsensor sample into a new directory.
func copyFixture(t testing.TB) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(fixtureDir)); err != nil {
		t.Fatal(err)
	}
	// the Go SDK, as outpost init writes it next to the module
	if err := sdk.WriteModule(filepath.Join(dst, sdk.Dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// needGo skips tests that compile when there is no Go toolchain.
func needGo(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH")
	}
}

func build(t testing.TB, dir string, opts BuildOptions) *Result {
	t.Helper()
	if opts.CacheDir == "" {
		t.Fatal("tests build into their own cache")
	}
	res, err := Build(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("build %s: %v", dir, err)
	}
	return res
}

// tarFile is one member of a layer.
type tarFile struct {
	hdr  *tar.Header
	data []byte
}

// layerMembers reads a layer's tar.
func layerMembers(t testing.TB, l v1.Layer) []tarFile {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []tarFile
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out = append(out, tarFile{h, data})
	}
}

func lastLayer(t testing.TB, img v1.Image) v1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		t.Fatalf("layers: %v %v", ls, err)
	}
	return ls[len(ls)-1]
}

func configOf(t testing.TB, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func digestOf(t testing.TB, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestBuildTempsensorOnePlatform(t *testing.T) {
	needGo(t)
	cache := t.TempDir()
	res := build(t, copyFixture(t), BuildOptions{CacheDir: cache, Platforms: []string{"linux/amd64"}})
	if res.Index != nil || res.Image == nil || len(res.Platforms) != 1 {
		t.Fatalf("one platform: index %v image %v platforms %v", res.Index, res.Image, res.Platforms)
	}
	if res.Reference.String() != "localhost:5000/tempsensor:1.0" || res.Digest != digestOf(t, res.Image) || res.Platforms[0].Digest != res.Digest {
		t.Fatalf("reference %s digest %s platforms %+v", res.Reference, res.Digest, res.Platforms)
	}
	if err := validate.Image(res.Image); err != nil {
		t.Fatal(err)
	}
	if mt, _ := res.Image.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type %s", mt)
	}
	cfg := configOf(t, res.Image)
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || cfg.Variant != "" || !cfg.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("config: %s/%s/%s created %v", cfg.OS, cfg.Architecture, cfg.Variant, cfg.Created)
	}
	if !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/tempsensor"}) || !reflect.DeepEqual(cfg.Config.Env, []string{defaultPath, "INTERVAL=5"}) {
		t.Errorf("entrypoint %q env %q", cfg.Config.Entrypoint, cfg.Config.Env)
	}
	if len(cfg.History) != 1 || cfg.History[0].CreatedBy == "" {
		t.Errorf("history %+v", cfg.History)
	}

	members := layerMembers(t, lastLayer(t, res.Image))
	if len(members) != 1 {
		t.Fatalf("the layer holds %d files, want the binary alone", len(members))
	}
	h := members[0].hdr
	if h.Name != "tempsensor" || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) {
		t.Errorf("binary's header: %+v", h)
	}
	f, err := elf.NewFile(bytes.NewReader(members[0].data))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("machine %v", f.Machine)
	}

	// The binary runs here.
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		bin := filepath.Join(t.TempDir(), "tempsensor")
		if err := os.WriteFile(bin, members[0].data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-once").Output()
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		var reading struct {
			Machine struct{ Temperature float64 }
		}
		if err := json.Unmarshal(out, &reading); err != nil || reading.Machine.Temperature == 0 {
			t.Fatalf("output %q: %v", out, err)
		}

		// Readings every INTERVAL; SIGTERM stops it cleanly.
		cmd := exec.Command(bin)
		cmd.Env = []string{"INTERVAL=0.05"}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil || bytes.Count(stdout.Bytes(), []byte("\n")) < 2 || !strings.Contains(stderr.String(), "stopping") {
			t.Fatalf("run with INTERVAL=0.05 then SIGTERM: %v\nstdout %q\nstderr %q", err, stdout.String(), stderr.String())
		}
	}

	// The cache is an OCI layout other tools read, with the image under its
	// reference.
	c, err := OpenCache(cache)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Lookup("localhost:5000/tempsensor:1.0")
	if err != nil || digestOf(t, got.(v1.Image)) != res.Digest {
		t.Fatalf("Lookup: %v", err)
	}
	if got, err := c.Lookup("localhost:5000/tempsensor@" + res.Digest.String()); err != nil || digestOf(t, got.(v1.Image)) != res.Digest {
		t.Fatalf("Lookup by digest: %v", err)
	}
	if _, err := c.Lookup("localhost:5000/tempsensor:2.0"); !errors.Is(err, ErrNotInCache) {
		t.Fatalf("Lookup of another tag: %v", err)
	}
	lp, err := layout.FromPath(cache)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, _ := ii.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[AnnotationRefName] != "localhost:5000/tempsensor:1.0" {
		t.Fatalf("index.json: %+v", im.Manifests)
	}
	limg, err := lp.Image(res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(limg); err != nil {
		t.Fatalf("go-containerregistry's layout reads a broken image: %v", err)
	}
}

func TestBuildThreePlatforms(t *testing.T) {
	needGo(t)
	res := build(t, copyFixture(t), BuildOptions{CacheDir: t.TempDir()}) // module.yaml's three
	if res.Index == nil || res.Image != nil || res.Digest != digestOf(t, res.Index) {
		t.Fatalf("three platforms: index %v image %v digest %s", res.Index, res.Image, res.Digest)
	}
	if err := validate.Index(res.Index); err != nil { // also checks each config against its descriptor's platform
		t.Fatal(err)
	}
	im, err := res.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		platform v1.Platform
		machine  elf.Machine
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, elf.EM_X86_64},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, elf.EM_AARCH64},
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, elf.EM_ARM},
	}
	if len(im.Manifests) != len(want) || im.MediaType != types.OCIImageIndex {
		t.Fatalf("index: %+v", im)
	}
	for i, w := range want {
		d := im.Manifests[i]
		if d.Platform == nil || !reflect.DeepEqual(*d.Platform, w.platform) || d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest %d: %+v, want platform %v", i, d, w.platform)
			continue
		}
		if res.Platforms[i].Platform != w.platform.String() || res.Platforms[i].Digest != d.Digest {
			t.Errorf("result platform %d: %+v", i, res.Platforms[i])
		}
		img, err := res.Index.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg := configOf(t, img)
		if cfg.OS != w.platform.OS || cfg.Architecture != w.platform.Architecture || cfg.Variant != w.platform.Variant {
			t.Errorf("%v: config says %s/%s/%s", w.platform, cfg.OS, cfg.Architecture, cfg.Variant)
		}
		f, err := elf.NewFile(bytes.NewReader(layerMembers(t, lastLayer(t, img))[0].data))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != w.machine {
			t.Errorf("%v: the binary is for %v", w.platform, f.Machine)
		}
	}
}

// touchAll sets every file's time in dir and its modes' non-execute bits,
// as another checkout on another machine might.
func touchAll(t testing.TB, dir string, when time.Time, private bool) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && private {
			fi, _ := d.Info()
			mode := os.FileMode(0o600)
			if fi.Mode()&0o100 != 0 {
				mode = 0o700
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBuildReproducible(t *testing.T) {
	needGo(t)
	a, b := copyFixture(t), copyFixture(t)
	touchAll(t, a, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC), false)
	touchAll(t, b, time.Now(), true)
	ra := build(t, a, BuildOptions{CacheDir: t.TempDir(), Platforms: []string{"linux/amd64", "linux/arm64"}})
	rb := build(t, b, BuildOptions{CacheDir: t.TempDir(), Platforms: []string{"linux/amd64", "linux/arm64"}})
	if ra.Digest != rb.Digest {
		t.Fatalf("two copies built in %s and %s give %s and %s", a, b, ra.Digest, rb.Digest)
	}

	// SOURCE_DATE_EPOCH sets every time.
	epoch := int64(1700000000)
	rc := build(t, a, BuildOptions{CacheDir: t.TempDir(), Platforms: []string{"linux/amd64"}, SourceDateEpoch: epoch})
	cfg := configOf(t, rc.Image)
	if !cfg.Created.Time.Equal(time.Unix(epoch, 0)) || !cfg.History[0].Created.Time.Equal(time.Unix(epoch, 0)) {
		t.Errorf("created %v, history %v", cfg.Created, cfg.History)
	}
	if m := layerMembers(t, lastLayer(t, rc.Image)); !m[0].hdr.ModTime.Equal(time.Unix(epoch, 0)) {
		t.Errorf("file time %v", m[0].hdr.ModTime)
	}
	if rc.Digest == ra.Platforms[0].Digest {
		t.Error("another SOURCE_DATE_EPOCH gave the same digest")
	}
}

func TestBuildFilesReproducible(t *testing.T) {
	files := map[string]string{
		"module.yaml":      "name: web\nrepository: localhost:5000/web\nbuild:\n  files:\n    - {src: dist/, dst: /app/}\n    - {src: run.sh, dst: /usr/local/bin/}\nentrypoint: [/usr/local/bin/run.sh]\n",
		"run.sh":           "#!/bin/sh\nexec /app/server\n",
		"dist/index.html":  "<h1>hi</h1>",
		"dist/css/a.css":   "body{}",
		"dist/current":     "symlink:css",
		"dist/bin/server":  "#!/bin/true\n",
		"dist/empty/.keep": "",
	}
	a, b := writeTree(t, files), writeTree(t, files)
	touchAll(t, a, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC), false)
	touchAll(t, b, time.Now(), true)
	ra := build(t, a, BuildOptions{CacheDir: t.TempDir()})
	rb := build(t, b, BuildOptions{CacheDir: t.TempDir()})
	if ra.Digest != rb.Digest {
		t.Fatalf("two copies give %s and %s", ra.Digest, rb.Digest)
	}
	var got []string
	for _, m := range layerMembers(t, lastLayer(t, ra.Image)) {
		line := m.hdr.Name + " " + modeString(m.hdr.Mode)
		if m.hdr.Linkname != "" {
			line += " -> " + m.hdr.Linkname
		}
		if m.hdr.Uid != 0 || m.hdr.Gid != 0 || m.hdr.Uname != "" || !m.hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: uid %d gid %d uname %q time %v", m.hdr.Name, m.hdr.Uid, m.hdr.Gid, m.hdr.Uname, m.hdr.ModTime)
		}
		got = append(got, line)
	}
	want := []string{
		"app/ 0755", "app/bin/ 0755", "app/bin/server 0755", "app/css/ 0755", "app/css/a.css 0644",
		"app/current 0777 -> css", "app/empty/ 0755", "app/empty/.keep 0644", "app/index.html 0644",
		"usr/ 0755", "usr/local/ 0755", "usr/local/bin/ 0755", "usr/local/bin/run.sh 0755",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer:\n got %q\nwant %q", got, want)
	}
}

func TestBuildFilesEscapingSymlink(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"module.yaml":   "name: web\nrepository: localhost:5000/web\nbuild:\n  files:\n    - {src: dist, dst: /app/}\n",
		"dist/ok":       "x",
		"dist/sub/leak": "symlink:../../../secret",
	})
	_, err := Build(context.Background(), dir, BuildOptions{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "module.yaml:5: build.files[0]: dist/sub/leak is a symlink to ../../../secret, outside the module directory") {
		t.Fatalf("err = %v", err)
	}
}

// TestRebuildOneLineChange: an unchanged rebuild reuses the layer from the
// cache; a one-line change rebuilds only the binary's layer.
func TestRebuildOneLineChange(t *testing.T) {
	needGo(t)
	dir, cache := copyFixture(t), t.TempDir()
	opts := BuildOptions{CacheDir: cache, Platforms: []string{"linux/amd64"}}
	first := build(t, dir, opts)
	if first.Stats.LayersBuilt != 1 || first.Stats.LayersCached != 0 {
		t.Fatalf("first build: %+v", first.Stats)
	}
	again := build(t, dir, opts)
	if again.Digest != first.Digest || again.Stats.LayersBuilt != 0 || again.Stats.LayersCached != 1 {
		t.Fatalf("unchanged rebuild: digest %s (was %s), %+v", again.Digest, first.Digest, again.Stats)
	}
	changeOneLine(t, dir)
	changed := build(t, dir, opts)
	if changed.Digest == first.Digest || changed.Stats.LayersBuilt != 1 || changed.Stats.LayersCached != 0 {
		t.Fatalf("one-line change: digest %s, %+v", changed.Digest, changed.Stats)
	}
	if changed.Stats.GoBuild <= 0 || changed.Stats.Own() <= 0 || len(changed.Stats.Phases) < 3 {
		t.Errorf("stats: %+v", changed.Stats)
	}
}

// changeOneLine changes a constant in the module's main.go.
func changeOneLine(t testing.TB, dir string) {
	t.Helper()
	p := filepath.Join(dir, "main.go")
	src, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("60 - 39*math.Cos(phase)")
	if !bytes.Contains(src, old) {
		old = []byte("61 - 39*math.Cos(phase)")
		src = bytes.Replace(src, old, []byte("60 - 39*math.Cos(phase)"), 1)
	} else {
		src = bytes.Replace(src, old, []byte("61 - 39*math.Cos(phase)"), 1)
	}
	if err := os.WriteFile(p, src, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRebuildDockerfileOneLayer(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"module.yaml": "name: web\nrepository: localhost:5000/web\nbuild: {dockerfile: Dockerfile}\n",
		"Dockerfile":  "FROM scratch\nCOPY static/ /srv/static/\nCOPY config.json /etc/web/\nENTRYPOINT [\"/srv/web\"]\n",
		"static/a":    strings.Repeat("static ", 1000),
		"config.json": `{"v": 1}`,
	})
	cache := t.TempDir()
	first := build(t, dir, BuildOptions{CacheDir: cache})
	if first.Stats.LayersBuilt != 2 {
		t.Fatalf("first: %+v", first.Stats)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"v": 2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	second := build(t, dir, BuildOptions{CacheDir: cache})
	if second.Stats.LayersBuilt != 1 || second.Stats.LayersCached != 1 {
		t.Fatalf("after changing one file: %+v", second.Stats)
	}
	l1, _ := first.Image.Layers()
	l2, _ := second.Image.Layers()
	if digestOf(t, l1[0]) != digestOf(t, l2[0]) || digestOf(t, l1[1]) == digestOf(t, l2[1]) {
		t.Fatal("the unchanged layer changed, or the changed one did not")
	}
	cfg := configOf(t, second.Image)
	if len(cfg.History) != 3 || !cfg.History[2].EmptyLayer || cfg.History[0].CreatedBy != "COPY static/ /srv/static/" {
		t.Errorf("history: %+v", cfg.History)
	}
	if err := validate.Image(second.Image); err != nil {
		t.Fatal(err)
	}
}

// baseRegistry serves a multi-platform base image (linux/amd64 and
// linux/arm64, docker media types, like most bases) from an in-process
// registry on loopback and counts the requests it gets.
type baseRegistry struct {
	srv      *httptest.Server
	ref      string
	requests atomic.Int64
	images   map[string]v1.Image
}

func newBaseRegistry(t testing.TB, platforms ...string) *baseRegistry {
	t.Helper()
	br := &baseRegistry{images: map[string]v1.Image{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	br.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		br.requests.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(br.srv.Close)
	var idx v1.ImageIndex = empty.Index
	for _, ps := range platforms {
		p, _ := ParsePlatform(ps)
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := img.ConfigFile()
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
		cfg.Config.Env = []string{"PATH=/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
		cfg.Config.WorkingDir = "/home/nonroot"
		cfg.Config.User = "65532"
		cfg.Config.Cmd = []string{"/bin/base"}
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
		br.images[ps] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	br.ref = strings.TrimPrefix(br.srv.URL, "http://") + "/base/static:nonroot"
	ref, err := name.ParseReference(br.ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	br.requests.Store(0)
	return br
}

// withBase makes a copy of the fixture built on base.
func withBase(t testing.TB, base string) string {
	t.Helper()
	dir := copyFixture(t)
	p := filepath.Join(dir, "module.yaml")
	y, _ := os.ReadFile(p)
	y = bytes.Replace(y, []byte("base: scratch"), []byte("base: "+base), 1)
	if err := os.WriteFile(p, y, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBuildOnBaseImage(t *testing.T) {
	needGo(t)
	br := newBaseRegistry(t, "linux/amd64", "linux/arm64")
	dir, cache := withBase(t, br.ref), t.TempDir()
	opts := BuildOptions{CacheDir: cache, Platforms: []string{"linux/amd64", "linux/arm64"}}
	first := build(t, dir, opts)
	if br.requests.Load() == 0 || first.Stats.BaseBlobsPulled == 0 {
		t.Fatalf("the base was not pulled: %d requests, %+v", br.requests.Load(), first.Stats)
	}
	if err := validate.Index(first.Index); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		img := platformImage(t, first, p)
		base := br.images[p]
		bl, _ := base.Layers()
		il, _ := img.Layers()
		if len(il) != len(bl)+1 {
			t.Fatalf("%s: %d layers, want the base's %d and the binary", p, len(il), len(bl))
		}
		for i := range bl {
			if digestOf(t, bl[i]) != digestOf(t, il[i]) {
				t.Errorf("%s: layer %d is not the base's", p, i)
			}
			if mt, _ := il[i].MediaType(); mt != types.OCILayer {
				t.Errorf("%s: layer %d has media type %s", p, i, mt)
			}
		}
		cfg := configOf(t, img)
		if !reflect.DeepEqual(cfg.Config.Env, []string{"PATH=/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "INTERVAL=5"}) ||
			cfg.Config.User != "65532" || cfg.Config.WorkingDir != "/home/nonroot" || cfg.Config.Cmd != nil ||
			!reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/tempsensor"}) {
			t.Errorf("%s: config %+v", p, cfg.Config)
		}
		baseCfg := configOf(t, base)
		if len(cfg.History) != len(baseCfg.History)+1 || len(cfg.RootFS.DiffIDs) != len(bl)+1 {
			t.Errorf("%s: history %d diffIDs %d", p, len(cfg.History), len(cfg.RootFS.DiffIDs))
		}
	}

	// The second build, after a one-line change, asks the registry nothing:
	// the base is in the cache. Only the binary's layer changes.
	br.requests.Store(0)
	changeOneLine(t, dir)
	second := build(t, dir, opts)
	if n := br.requests.Load(); n != 0 || second.Stats.BaseBlobsPulled != 0 {
		t.Fatalf("the second build sent %d requests to the base's registry (%+v)", n, second.Stats)
	}
	if second.Stats.LayersBuilt != 2 || second.Digest == first.Digest {
		t.Fatalf("second build: %+v", second.Stats)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		l1, _ := platformImage(t, first, p).Layers()
		l2, _ := platformImage(t, second, p).Layers()
		for i := range l1 {
			same := digestOf(t, l1[i]) == digestOf(t, l2[i])
			if last := i == len(l1)-1; same == last {
				t.Errorf("%s: layer %d changed=%v", p, i, !same)
			}
		}
	}

	// And with the registry gone.
	br.srv.Close()
	third := build(t, dir, opts)
	if third.Digest != second.Digest {
		t.Fatalf("offline build: %s, want %s", third.Digest, second.Digest)
	}
	// --pull needs the registry.
	opts.Pull = true
	_, err := Build(context.Background(), dir, opts)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), strings.Split(br.ref, "/")[0]) {
		t.Fatalf("pull from a stopped registry: %v", err)
	}
}

func platformImage(t testing.TB, r *Result, platform string) v1.Image {
	t.Helper()
	for _, p := range r.Platforms {
		if p.Platform == platform {
			return p.Image
		}
	}
	t.Fatalf("no %s in %+v", platform, r.Platforms)
	return nil
}

func TestBuildBaseLacksPlatform(t *testing.T) {
	br := newBaseRegistry(t, "linux/amd64", "linux/arm64")
	dir := writeTree(t, map[string]string{
		"module.yaml": "name: web\nrepository: localhost:5000/web\nbase: " + br.ref + "\nplatforms: [linux/amd64, linux/arm/v7]\nbuild:\n  files: [{src: a, dst: /a}]\n",
		"a":           "a",
	})
	_, err := Build(context.Background(), dir, BuildOptions{CacheDir: t.TempDir()})
	var pe *PlatformError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "has no linux/arm/v7 image; it has: linux/amd64, linux/arm64") {
		t.Fatalf("err = %v", err)
	}

	// A base that is one image, not an index.
	single := strings.Replace(br.ref, "base/static:nonroot", "base/single:1", 1)
	ref, _ := name.ParseReference(single)
	if err := remote.Write(ref, br.images["linux/arm64"]); err != nil {
		t.Fatal(err)
	}
	dir = writeTree(t, map[string]string{
		"module.yaml": "name: web\nrepository: localhost:5000/web\nbase: " + single + "\nbuild:\n  files: [{src: a, dst: /a}]\n",
		"a":           "a",
	})
	_, err = Build(context.Background(), dir, BuildOptions{CacheDir: t.TempDir()})
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "has no linux/amd64 image; it has: linux/arm64") {
		t.Fatalf("single-image base: %v", err)
	}
	res := build(t, dir, BuildOptions{CacheDir: t.TempDir(), Platforms: []string{"linux/arm64"}})
	if err := validate.Image(res.Image); err != nil {
		t.Fatal(err)
	}
}

func TestBuildBaseUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	dir := writeTree(t, map[string]string{
		"module.yaml": "name: web\nrepository: localhost:5000/web\nbase: " + addr + "/base:1\nbuild:\n  files: [{src: a, dst: /a}]\n",
		"a":           "a",
	})
	_, err := Build(context.Background(), dir, BuildOptions{CacheDir: t.TempDir()})
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Registry != addr || !strings.Contains(err.Error(), "pull base "+addr+"/base:1") {
		t.Fatalf("err = %v", err)
	}
}

func TestCacheReplacesRef(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"module.yaml": "name: web\nrepository: localhost:5000/web\ntag: \"1\"\nbuild:\n  files: [{src: a, dst: /a}]\n",
		"a":           "one",
	})
	cache := t.TempDir()
	r1 := build(t, dir, BuildOptions{CacheDir: cache})
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	r2 := build(t, dir, BuildOptions{CacheDir: cache})
	r3 := build(t, dir, BuildOptions{CacheDir: cache, Tag: "2"})
	c, _ := OpenCache(cache)
	im, err := c.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]v1.Hash{}
	for _, d := range im.Manifests {
		refs[d.Annotations[AnnotationRefName]] = d.Digest
	}
	if len(im.Manifests) != 2 || refs["localhost:5000/web:1"] != r2.Digest || refs["localhost:5000/web:2"] != r3.Digest || r1.Digest == r2.Digest {
		t.Fatalf("index.json: %+v", im.Manifests)
	}
	// The older image's blobs stay, reachable by digest.
	if _, err := c.Lookup("localhost:5000/web@" + r1.Digest.String()); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("OUTPOST_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/tmp/xdg")
	if runtime.GOOS == "linux" && DefaultCacheDir() != "/tmp/xdg/outpost/oci" {
		t.Errorf("DefaultCacheDir = %s", DefaultCacheDir())
	}
	t.Setenv("OUTPOST_CACHE", "/srv/cache")
	if DefaultCacheDir() != "/srv/cache" {
		t.Errorf("DefaultCacheDir = %s", DefaultCacheDir())
	}
}

// checkCacheUsable checks that every entry of the cache's index.json is a
// whole, valid image or index, and that no temporary file is left.
func checkCacheUsable(t testing.TB, cache string) {
	t.Helper()
	c, err := OpenCache(cache)
	if err != nil {
		t.Fatal(err)
	}
	im, err := c.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		a, err := c.Artifact(d)
		if err != nil {
			t.Fatal(err)
		}
		switch a := a.(type) {
		case v1.Image:
			err = validate.Image(a)
		case v1.ImageIndex:
			err = validate.Index(a)
		}
		if err != nil {
			t.Fatalf("%s: %v", d.Annotations[AnnotationRefName], err)
		}
	}
	if left, _ := os.ReadDir(c.tmpDir()); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestCacheWriteFailure fails writes into the cache at each place a build
// writes (layer blob, config, index.json) and checks that the cache stays
// usable and the next build works.
func TestCacheWriteFailure(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"module.yaml": "name: web\nrepository: localhost:5000/web\nplatforms: [linux/amd64, linux/arm64]\nbuild:\n  files: [{src: data, dst: /data}]\n",
		"data":        strings.Repeat("some data ", 100000),
	})
	cache := t.TempDir()
	before := build(t, dir, BuildOptions{CacheDir: cache})
	t.Cleanup(func() { writeHook = nil })
	for i, where := range []string{"layer", "config", "index"} {
		if where == "config" {
			// Only the config changes: the layers come from the cache and
			// the first write is the first platform's config.
			y, _ := os.ReadFile(filepath.Join(dir, "module.yaml"))
			if err := os.WriteFile(filepath.Join(dir, "module.yaml"), append(y, "env: {A: b}\n"...), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(filepath.Join(dir, "data"), []byte(strings.Repeat("other data ", 100000+i)), 0o644); err != nil {
			t.Fatal(err)
		}
		var writes atomic.Int64
		writeHook = func(path string) error {
			n := writes.Add(1)
			switch {
			case where == "layer" && n == 1, // the layer is written first
				where == "config" && n == 2, // the second platform's config, after the first's
				where == "index" && strings.HasSuffix(path, indexFile):
				return syscall.ENOSPC
			}
			return nil
		}
		_, err := Build(context.Background(), dir, BuildOptions{CacheDir: cache})
		writeHook = nil
		var ce *CacheError
		if !errors.As(err, &ce) || !ce.DiskFull() || !strings.Contains(err.Error(), "the disk is full") || ce.Hint() == "" {
			t.Fatalf("%s: err = %v", where, err)
		}
		checkCacheUsable(t, cache)
		c, _ := OpenCache(cache)
		got, err := c.Lookup("localhost:5000/web:latest")
		if err != nil || digestOf(t, got.(v1.ImageIndex)) != before.Digest {
			t.Fatalf("%s: after a failed build the reference moved or broke: %v", where, err)
		}
	}
	after := build(t, dir, BuildOptions{CacheDir: cache})
	if after.Digest == before.Digest {
		t.Fatal("the build after the failures did not make the new image")
	}
	checkCacheUsable(t, cache)
}

// TestCacheFullDisk fills a real (tmpfs) disk; it needs root to mount.
func TestCacheFullDisk(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root on Linux")
	}
	cache := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", cache).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", cache).Run() })
	random := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7919 + i/251*31 + i*i%253)
		}
		return string(b)
	}
	dir := writeTree(t, map[string]string{
		"module.yaml": "name: web\nrepository: localhost:5000/web\nbuild:\n  files: [{src: data, dst: /data}]\n",
		"data":        random(200 << 10),
	})
	before := build(t, dir, BuildOptions{CacheDir: cache})
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte(random(3<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), dir, BuildOptions{CacheDir: cache})
	var ce *CacheError
	if !errors.As(err, &ce) || !ce.DiskFull() {
		t.Fatalf("err = %v", err)
	}
	checkCacheUsable(t, cache)
	c, _ := OpenCache(cache)
	if got, err := c.Lookup("localhost:5000/web"); err != nil || digestOf(t, got.(v1.Image)) != before.Digest {
		t.Fatalf("after the full disk: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	after := build(t, dir, BuildOptions{CacheDir: cache})
	if after.Digest == before.Digest {
		t.Fatal("no new image")
	}
	checkCacheUsable(t, cache)
}

func TestBuildGoErrors(t *testing.T) {
	needGo(t)
	dir := copyFixture(t)
	if err := os.WriteFile(filepath.Join(dir, "broken.go"), []byte("package main\n\nfunc broken() { undefinedThing() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), dir, BuildOptions{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "module.yaml:8: build.go: go build . for linux/") || !strings.Contains(err.Error(), "undefined: undefinedThing") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	_, err = Build(context.Background(), dir, BuildOptions{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "build.go needs the Go toolchain, and `go` is not on PATH") {
		t.Fatalf("without go: %v", err)
	}
}

func TestBuildDockerfileOnBase(t *testing.T) {
	br := newBaseRegistry(t, "linux/amd64", "linux/arm64")
	dir := writeTree(t, map[string]string{
		"module.yaml":   "name: web\nrepository: localhost:5000/web\nplatforms: [linux/amd64, linux/arm64]\nbuild: {dockerfile: Dockerfile}\nenv: {MODE: prod}\n",
		"Dockerfile":    "ARG BASE=" + br.ref + "\nFROM $BASE\nARG TARGETARCH\nENV PATH=$PATH:/app\nCOPY bin/${TARGETARCH}/ /app/\nCMD [\"/app/web\"]\n",
		"bin/amd64/web": "#!amd64",
		"bin/arm64/web": "#!arm64",
	})
	res := build(t, dir, BuildOptions{CacheDir: t.TempDir()})
	if err := validate.Index(res.Index); err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		img := platformImage(t, res, "linux/"+arch)
		cfg := configOf(t, img)
		if !reflect.DeepEqual(cfg.Config.Env, []string{"PATH=/usr/bin:/bin:/app", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "MODE=prod"}) ||
			!reflect.DeepEqual(cfg.Config.Cmd, []string{"/app/web"}) || cfg.Config.User != "65532" {
			t.Errorf("%s: config %+v", arch, cfg.Config)
		}
		m := layerMembers(t, lastLayer(t, img))
		if len(m) != 2 || m[1].hdr.Name != "app/web" || string(m[1].data) != "#!"+arch {
			t.Errorf("%s: layer %v", arch, m)
		}
	}
}

// TestCompressionDeterministic: the compressed bytes do not depend on how
// many blocks are compressed at once (a machine's core count).
func TestCompressionDeterministic(t *testing.T) {
	data := bytes.Repeat([]byte("outpost layers are reproducible; "), 200000)
	var outs [][]byte
	for _, blocks := range []int{1, 2, 7} {
		var buf bytes.Buffer
		z, _ := pgzip.NewWriterLevel(&buf, gzipLevel)
		z.SetConcurrency(gzipBlockSize, blocks)
		z.ModTime = time.Unix(0, 0)
		z.Write(data)
		z.Close()
		outs = append(outs, buf.Bytes())
	}
	if !bytes.Equal(outs[0], outs[1]) || !bytes.Equal(outs[0], outs[2]) {
		t.Fatal("the compressed layer depends on the number of blocks in flight")
	}
}

// TestBasePlainHTTPOnlyToLoopback: a base's registry is spoken to over
// plain HTTP only on loopback, or with --insecure. Nothing is sent.
func TestBasePlainHTTPOnlyToLoopback(t *testing.T) {
	var sent []string
	inner := sentTransport(func(r *http.Request) { sent = append(sent, r.URL.String()) })
	for _, tc := range []struct {
		url      string
		insecure bool
		allowed  bool
	}{
		{"http://127.0.0.1:5000/v2/", false, true},
		{"http://localhost:5000/v2/", false, true},
		{"http://[::1]:5000/v2/", false, true},
		{"https://registry.example/v2/", false, true},
		{"http://192.168.1.10:5000/v2/", false, false},
		{"http://registry.example/v2/", false, false},
		{"http://registry.example/v2/", true, true},
	} {
		sent = nil
		req, _ := http.NewRequest("GET", tc.url, nil)
		_, err := (&pullTransport{inner: inner, insecure: tc.insecure}).RoundTrip(req)
		var pe *PlainHTTPError
		if tc.allowed != (len(sent) == 1) || tc.allowed == errors.As(err, &pe) {
			t.Errorf("%s (insecure %v): sent %v, err %v", tc.url, tc.insecure, sent, err)
		}
	}
}

// sentTransport records requests and answers 404 without a network.
type sentTransport func(*http.Request)

func (f sentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f(r)
	return &http.Response{StatusCode: http.StatusNotFound, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}
