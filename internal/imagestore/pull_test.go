package imagestore

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/outpost-edge/outpost/internal/errdefs"
)

var ctx = context.Background()

func TestPullSinglePlatformImage(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	img := image(t, v1.Platform{},
		layer(t, mkdir("bin/"), file("bin/app", "v1"), file("etc/motd", "hello"), symlink("bin/sh", "/bin/app")),
		layer(t, file("bin/app", "v2"), entry{Name: "bin/su", Type: 0, Body: "su", Mode: 0o4755}, hardlink("bin/app2", "bin/app")),
	)
	ref := reg.ref("app:1.0")
	reg.push(t, ref, img)

	dir := t.TempDir()
	s := openStore(t, dir)
	got, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, img) || got.Ref != ref {
		t.Errorf("Pull = %s %s, want %s %s", got.Ref, got.Digest, ref, digestOf(t, img))
	}
	if got.Rootfs != filepath.Join(dir, "rootfs", got.Digest.Hex) {
		t.Errorf("Rootfs = %s", got.Rootfs)
	}
	if !slices.Equal(got.Config.Entrypoint, []string{"/app"}) || got.Config.WorkingDir != "/work" || got.Config.User != "1000" || got.Config.Labels["org.example"] != "yes" {
		t.Errorf("Config = %+v", got.Config)
	}
	want := map[string]fileState{
		"bin":      {Kind: "dir", Mode: 0o755},
		"bin/app":  {Kind: "file", Data: sha("v2"), Mode: 0o644},
		"bin/app2": {Kind: "file", Data: sha("v2"), Mode: 0o644},
		"bin/sh":   {Kind: "symlink", Data: "/bin/app"},
		"bin/su":   {Kind: "file", Data: sha("su"), Mode: 0o755 | os.ModeSetuid},
		"etc":      {Kind: "dir", Mode: 0o755},
		"etc/motd": {Kind: "file", Data: sha("hello"), Mode: 0o644},
	}
	if diff := diffTrees(snapshot(t, got.Rootfs), want); diff != "" {
		t.Error(diff)
	}
	// Every blob of the image is in the store, under its digest.
	m, _ := img.Manifest()
	blobs := blobNames(t, dir)
	for _, h := range append([]v1.Hash{got.Digest, m.Config.Digest}, layerDigests(m)...) {
		if !slices.Contains(blobs, h.Hex) {
			t.Errorf("blob %s missing from the store (%v)", h, blobs)
		}
	}
	g, err := s.Get(ref)
	if err != nil || g.Rootfs != got.Rootfs {
		t.Errorf("Get = %v, %v", g, err)
	}
}

// diffTrees says how got differs from want.
func diffTrees(got, want map[string]fileState) string {
	var b strings.Builder
	for k, w := range want {
		if g, ok := got[k]; !ok {
			b.WriteString("missing " + k + "\n")
		} else if g != w {
			b.WriteString("differs " + k + ": got " + g.Kind + " " + g.Data + " " + g.Mode.String() + ", want " + w.Kind + " " + w.Data + " " + w.Mode.String() + "\n")
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			b.WriteString("unexpected " + k + "\n")
		}
	}
	return b.String()
}

// platformIndex pushes an index with one image per platform (each with a
// /platform file naming it) and an attestation-like unknown/unknown entry.
func platformIndex(t *testing.T, reg *testRegistry, ref string, platforms ...v1.Platform) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		img := image(t, p, layer(t, file("platform", platformString(p))))
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	att, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}})
	reg.push(t, ref, idx)
	return idx
}

func TestPullIndexPicksPlatform(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	plats := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "arm", Variant: "v7"}}
	host := HostPlatform()
	if !slices.ContainsFunc(plats, func(p v1.Platform) bool { return platformScore(host, p) >= 0 }) {
		plats = append(plats, host)
	}
	ref := reg.ref("multi:1")
	idx := platformIndex(t, reg, ref, plats...)
	idxDigest, _ := idx.Digest()

	// The host's platform by default.
	s := openStore(t, t.TempDir())
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(img.Rootfs, "platform"))
	if err != nil || platformScore(host, mustPlatform(t, string(b))) < 0 {
		t.Errorf("host pull got platform %q (%v), host is %s", b, err, platformString(host))
	}

	// linux/arm64 when asked, and the arm/v7 image for a v7 device.
	for want, p := range map[string]v1.Platform{
		"linux/arm64":  {OS: "linux", Architecture: "arm64"},
		"linux/arm/v7": {OS: "linux", Architecture: "arm", Variant: "v7"},
	} {
		s := openStore(t, t.TempDir(), WithPlatform(p))
		img, err := s.Pull(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(img.Rootfs, "platform")); string(b) != want {
			t.Errorf("WithPlatform(%s) got the image for %q", want, b)
		}
		if img.Platform.Architecture != p.Architecture {
			t.Errorf("Image.Platform = %+v", img.Platform)
		}
		// The index digest finds it too, offline.
		if g, err := s.Get(idxDigest.String()); err != nil || g.Digest != img.Digest {
			t.Errorf("Get(index digest) = %v, %v", g, err)
		}
	}
}

func mustPlatform(t *testing.T, s string) v1.Platform {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return *p
}

func TestPullWrongPlatform(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := reg.ref("multi:1")
	platformIndex(t, reg, ref, v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"})
	single := reg.ref("single:1")
	reg.push(t, single, image(t, v1.Platform{OS: "linux", Architecture: "arm64"}, layer(t, file("a", "a"))))

	dir := t.TempDir()
	s := openStore(t, dir, WithPlatform(v1.Platform{OS: "linux", Architecture: "riscv64"}))
	_, err := s.Pull(ctx, ref, nil)
	var pe *PlatformError
	if !errors.As(err, &pe) {
		t.Fatalf("Pull = %v, want a PlatformError", err)
	}
	t.Log(err)
	msg := err.Error()
	for _, w := range []string{ref, "linux/riscv64", "linux/amd64, linux/arm64"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not name %q", msg, w)
		}
	}
	if strings.Contains(msg, "unknown") {
		t.Errorf("error %q lists the attestation entry", msg)
	}

	_, err = s.Pull(ctx, single, nil)
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "built for linux/arm64, not for this device's linux/riscv64") {
		t.Errorf("single-platform Pull = %v", err)
	}
	if tmp, rootfs, recs := leftovers(t, dir); len(tmp)+len(rootfs)+len(recs) > 0 {
		t.Errorf("left behind: %v %v %v", tmp, rootfs, recs)
	}
}

func TestTwoRefsShareOneRootfs(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	img := image(t, v1.Platform{}, layer(t, file("app", "same")))
	a, b := reg.ref("one:a"), reg.ref("two:b")
	reg.push(t, a, img)
	reg.push(t, b, img)

	dir := t.TempDir()
	s := openStore(t, dir)
	ia, err := s.Pull(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	gets := reg.blobGetCount()
	ib, err := s.Pull(ctx, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ia.Rootfs != ib.Rootfs || ia.Digest != ib.Digest {
		t.Errorf("rootfs %s and %s, want one", ia.Rootfs, ib.Rootfs)
	}
	if n := reg.blobGetCount() - gets; n != 0 {
		t.Errorf("the second pull downloaded %d blobs, want 0", n)
	}
	if _, rootfs, recs := leftovers(t, dir); len(rootfs) != 1 || len(recs) != 2 {
		t.Errorf("rootfs %v records %v, want 1 and 2", rootfs, recs)
	}
	// Concurrent pulls of one image, under -race.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := s.Pull(ctx, a, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestCorruptBlobFromRegistry(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	l := layer(t, file("big", strings.Repeat("x", 100000)), file("small", "y"))
	img := image(t, v1.Platform{}, l)
	ref := reg.ref("app:bad")
	reg.push(t, ref, img)
	ld, _ := l.Digest()
	reg.setCorrupt(ld)

	dir := t.TempDir()
	s := openStore(t, dir)
	_, err := s.Pull(ctx, ref, nil)
	var de *DigestError
	if !errors.As(err, &de) || de.Want != ld || !strings.Contains(err.Error(), ld.String()) {
		t.Fatalf("Pull = %v, want a digest error for %s", err, ld)
	}
	t.Log(err)
	tmp, rootfs, recs := leftovers(t, dir)
	if len(tmp)+len(rootfs)+len(recs) > 0 {
		t.Errorf("left behind: tmp %v rootfs %v records %v", tmp, rootfs, recs)
	}
	if slices.Contains(blobNames(t, dir), ld.Hex) {
		t.Errorf("the corrupt blob %s is in the store", ld)
	}
	if _, err := s.Get(ref); !isNotPulled(err) {
		t.Errorf("Get after a failed pull = %v", err)
	}
}

func TestOfflineGet(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	img := image(t, v1.Platform{}, layer(t, file("app", "offline")))
	ref := reg.ref("app:1")
	reg.push(t, ref, img)
	d := digestOf(t, img)

	dir := t.TempDir()
	s := openStore(t, dir)
	pulled, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.srv.Close()
	s.Close()

	s = openStore(t, dir) // a daemon restarted while the registry is away
	for _, q := range []string{ref, d.String(), reg.ref("app@" + d.String())} {
		got, err := s.Get(q)
		if err != nil {
			t.Errorf("Get(%s): %v", q, err)
			continue
		}
		if got.Digest != d || got.Rootfs != pulled.Rootfs || got.Config.WorkingDir != "/work" {
			t.Errorf("Get(%s) = %+v", q, got)
		}
	}
	// A pull by digest needs no registry; by tag it does.
	if _, err := s.Pull(ctx, reg.ref("other@"+d.String()), nil); err != nil {
		t.Errorf("Pull by a digest the store has, registry down: %v", err)
	}
	if _, err := s.Pull(ctx, ref, nil); !errors.As(err, new(*UnavailableError)) {
		t.Errorf("Pull by tag, registry down = %v, want UnavailableError", err)
	}
	if _, err := s.Get(reg.ref("app:2")); !isNotPulled(err) {
		t.Errorf("Get(not pulled) = %v", err)
	}
}

func TestRegistryDown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()

	s := openStore(t, t.TempDir())
	start := time.Now()
	_, err := s.Pull(ctx, addr+"/app:1", nil)
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Pull = %v, want an error of kind unavailable", err)
	}
	if !strings.Contains(err.Error(), "registry "+addr+" is unreachable") {
		t.Errorf("error %q does not name %s", err, addr)
	}
	t.Logf("registry down: %v after %v", err, time.Since(start).Round(time.Millisecond))
}

func TestImageNotFound(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	reg.push(t, reg.ref("app:1"), image(t, v1.Platform{}, layer(t, file("a", "a"))))
	s := openStore(t, t.TempDir())
	for _, ref := range []string{reg.ref("app:2"), reg.ref("nothing:1")} {
		_, err := s.Pull(ctx, ref, nil)
		var nf *NotFoundError
		if !errors.As(err, &nf) || !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Pull(%s) = %v, want NotFoundError", ref, err)
			continue
		}
		if want := "image " + ref + " not found in registry " + reg.Addr; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	}
}

func TestCredentials(t *testing.T) {
	reg := newRegistry(t)
	reg.requireBasicAuth("device", "s3cret")
	ref := reg.ref("private:1")
	reg.push(t, ref, image(t, v1.Platform{}, layer(t, file("a", "private"))))

	t.Run("deployment", func(t *testing.T) {
		s := openStore(t, t.TempDir())
		img, err := s.Pull(ctx, ref, []Credential{
			{Address: "other.example.com", Username: "x", Password: "y"},
			{Address: "http://" + reg.Addr + "/", Username: "device", Password: "s3cret"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(img.Rootfs, "a")); string(b) != "private" {
			t.Errorf("a = %q", b)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		s := openStore(t, t.TempDir())
		_, err := s.Pull(ctx, ref, []Credential{{Address: reg.Addr, Username: "device", Password: "nope"}})
		var ae *AuthError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), "registryCredentials for "+reg.Addr+` (username "device")`) || !strings.Contains(err.Error(), reg.Addr) {
			t.Errorf("Pull = %v, want an AuthError naming the deployment's credential", err)
		}
		t.Log(err)
	})
	t.Run("none", func(t *testing.T) {
		s := openStore(t, t.TempDir())
		_, err := s.Pull(ctx, ref, nil)
		var ae *AuthError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), "none (anonymous)") {
			t.Errorf("Pull = %v, want an AuthError saying no credentials were found", err)
		}
		t.Log(err)
	})
	t.Run("docker config", func(t *testing.T) {
		cfg := t.TempDir()
		os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"auths":{"`+reg.Addr+`":{"username":"device","password":"s3cret"}}}`), 0o600)
		t.Setenv("DOCKER_CONFIG", cfg)
		s, err := Open(t.TempDir(), WithLogger(testLogger(t))) // the default keychain
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatalf("Pull with the docker config's credentials: %v", err)
		}
		os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"auths":{"`+reg.Addr+`":{"username":"device","password":"old"}}}`), 0o600)
		_, err = s.Pull(ctx, ref, nil)
		if !errors.As(err, new(*AuthError)) || !strings.Contains(err.Error(), "docker config") {
			t.Errorf("Pull with a stale docker config = %v, want an AuthError naming the docker config", err)
		}
	})
}

func TestPlainHTTPOnlyForLoopbackOrInsecure(t *testing.T) {
	t.Parallel()
	called := false
	g := &plainHTTPGuard{
		base: roundTripFunc(func(*httptest.ResponseRecorder) { called = true }),
		insecure: func(h string) bool {
			return h == "registry.lan:5000"
		},
	}
	for host, ok := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "registry.lan:5000": true,
		"10.0.0.7:5000": false, "192.168.1.2": false, "registry.example.com": false,
	} {
		called = false
		req := httptest.NewRequest("GET", "http://"+host+"/v2/", nil)
		_, err := g.RoundTrip(req)
		if ok && (err != nil || !called) {
			t.Errorf("%s: %v, sent %v; want it sent", host, err, called)
		}
		if !ok && (!errors.As(err, new(*PlainHTTPError)) || called) {
			t.Errorf("%s: %v, sent %v; want it refused before sending", host, err, called)
		}
		req = httptest.NewRequest("GET", "https://"+host+"/v2/", nil)
		if _, err := g.RoundTrip(req); err != nil {
			t.Errorf("https to %s: %v", host, err)
		}
	}
}

type roundTripFunc func(*httptest.ResponseRecorder)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	f(rec)
	return rec.Result(), nil
}

func TestOpenLocksTheDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := Open(dir, WithKeychain(authn.NewMultiKeychain())); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open = %v, want in use", err)
	}
	s.Close()
	s2 := openStore(t, dir)
	s2.Close()
}

func TestPlatformScore(t *testing.T) {
	t.Parallel()
	cases := []struct {
		want, have string
		ok         bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/arm64", false},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm/v7", "linux/arm", true},
		{"linux/arm/v7", "linux/arm/v6", true},
		{"linux/arm/v6", "linux/arm/v7", false},
		{"linux/arm", "linux/arm/v5", true},
		{"windows/amd64", "linux/amd64", false},
	}
	for _, c := range cases {
		w, h := mustPlatform(t, c.want), mustPlatform(t, c.have)
		if got := platformScore(w, h) >= 0; got != c.ok {
			t.Errorf("platformScore(%s, %s) fits = %v, want %v", c.want, c.have, got, c.ok)
		}
	}
}

func TestDamagedStoredBlobIsFetchedAgain(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	shared := layer(t, file("shared", "shared"))
	refA, refB := reg.ref("a:1"), reg.ref("b:1")
	reg.push(t, refA, image(t, v1.Platform{}, shared))
	reg.push(t, refB, image(t, v1.Platform{}, shared, layer(t, file("b", "b"))))
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.Pull(ctx, refA, nil); err != nil {
		t.Fatal(err)
	}
	// Bit rot in the stored blob B reuses.
	sd, _ := shared.Digest()
	p := filepath.Join(dir, "blobs", "sha256", sd.Hex)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o600)

	_, err = s.Pull(ctx, refB, nil)
	var de *DigestError
	if !errors.As(err, &de) || de.Want != sd {
		t.Fatalf("Pull over a damaged blob = %v, want a DigestError for %s", err, sd)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the damaged blob is still in the store: %v", err)
	}
	img, err := s.Pull(ctx, refB, nil)
	if err != nil {
		t.Fatalf("second Pull: %v", err)
	}
	if got := snapshot(t, img.Rootfs); got["shared"].Data != sha("shared") || got["b"].Data != sha("b") {
		t.Errorf("rootfs = %+v", got)
	}
}

func TestWrongDiffID(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	img := image(t, v1.Platform{}, layer(t, file("a", "a")))
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	want := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	cf.RootFS.DiffIDs[0] = want
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.ref("diffid:1")
	reg.push(t, ref, img)
	dir := t.TempDir()
	s := openStore(t, dir)
	_, err = s.Pull(ctx, ref, nil)
	var de *DigestError
	if !errors.As(err, &de) || de.Want != want || !strings.Contains(err.Error(), "layer 1 diffID") {
		t.Fatalf("Pull = %v, want a diffID DigestError", err)
	}
	if tmp, rootfs, recs := leftovers(t, dir); len(tmp)+len(rootfs)+len(recs) > 0 {
		t.Errorf("left behind: tmp %v rootfs %v records %v", tmp, rootfs, recs)
	}
}
