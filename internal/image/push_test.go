package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/image/registrytest"
)

// fastBackoff makes retries quick, so that a test that sees a wait knows
// it came from Retry-After.
func fastBackoff(t *testing.T) {
	old := pushBackoff
	pushBackoff = remote.Backoff{Duration: 10 * time.Millisecond, Factor: 1.5, Steps: 8}
	t.Cleanup(func() { pushBackoff = old })
}

func randomImage(t testing.TB, layerSize int64, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(layerSize, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func randomIndex(t testing.TB) v1.ImageIndex {
	t.Helper()
	idx, err := random.Index(64<<10, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func push(t testing.TB, ref string, a remote.Taggable, opts PushOptions) (v1.Hash, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return Push(ctx, mustRef(t, ref), a, opts)
}

func mustPush(t testing.TB, ref string, a remote.Taggable, opts PushOptions) v1.Hash {
	t.Helper()
	h, err := push(t, ref, a, opts)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return h
}

// checkImage pulls ref back and checks it is img: same manifest digest,
// same layer and config digests, layers readable.
func checkImage(t testing.TB, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	got, err := remote.Image(mustRef(t, ref), opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	wantD, _ := img.Digest()
	gotD, err := got.Digest()
	if err != nil || gotD != wantD {
		t.Fatalf("pull %s: digest %s (%v), pushed %s", ref, gotD, err, wantD)
	}
	wantL, _ := img.Layers()
	gotL, err := got.Layers()
	if err != nil || len(gotL) != len(wantL) {
		t.Fatalf("pull %s: %d layers (%v), pushed %d", ref, len(gotL), err, len(wantL))
	}
	for i := range wantL {
		w, _ := wantL[i].Digest()
		g, _ := gotL[i].Digest()
		if w != g {
			t.Errorf("pull %s: layer %d is %s, pushed %s", ref, i, g, w)
		}
	}
	// Reading a layer verifies its digest.
	rc, err := gotL[0].Compressed()
	if err == nil {
		_, err = bytes.NewBuffer(nil).ReadFrom(rc)
		rc.Close()
	}
	if err != nil {
		t.Errorf("pull %s: read layer 0: %v", ref, err)
	}
}

func checkIndex(t testing.TB, ref string, idx v1.ImageIndex, opts ...remote.Option) {
	t.Helper()
	got, err := remote.Index(mustRef(t, ref), opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	wantD, _ := idx.Digest()
	if gotD, err := got.Digest(); err != nil || gotD != wantD {
		t.Fatalf("pull %s: digest %s (%v), pushed %s", ref, gotD, err, wantD)
	}
	im, _ := idx.IndexManifest()
	repo := mustRef(t, ref).Context()
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, repo.Digest(d.Digest.String()).String(), img, opts...)
	}
}

// registries runs fn against both real registries.
func registries(t *testing.T, fn func(t *testing.T, addr string)) {
	t.Run("in-process", func(t *testing.T) { fn(t, registrytest.InProcess(t).Addr) })
	t.Run("distribution", func(t *testing.T) {
		fn(t, registrytest.Distribution(t, registrytest.DistributionOptions{}).Addr)
	})
}

func TestPushAndPullBack(t *testing.T) {
	registries(t, func(t *testing.T, addr string) {
		img := randomImage(t, 256<<10, 4)
		ref := addr + "/outpost/sensor:1.0"
		got := mustPush(t, ref, img, PushOptions{})
		if want, _ := img.Digest(); got != want {
			t.Errorf("Push returned %s, the image is %s", got, want)
		}
		checkImage(t, ref, img)

		idx := randomIndex(t)
		ref = addr + "/outpost/multi:1.0"
		got = mustPush(t, ref, idx, PushOptions{Jobs: 2})
		if want, _ := idx.Digest(); got != want {
			t.Errorf("Push returned %s, the index is %s", got, want)
		}
		checkIndex(t, ref, idx)

		// By digest, too.
		d, _ := img.Digest()
		ref = addr + "/outpost/bydigest@" + d.String()
		mustPush(t, ref, img, PushOptions{})
		checkImage(t, ref, img)
		if _, err := push(t, addr+"/outpost/bydigest@"+mustDigest(t, idx).String(), img, PushOptions{}); err == nil || !strings.Contains(err.Error(), "the image's digest is") {
			t.Errorf("push to a digest that is not the image's: %v", err)
		}
	})
}

func mustDigest(t testing.TB, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestPushUnchangedOnlyHEADs: the second push of an image asks and sends
// nothing but a ping and HEADs.
func TestPushUnchangedOnlyHEADs(t *testing.T) {
	backends := map[string]func(t *testing.T) string{
		"in-process": func(t *testing.T) string { return registrytest.InProcess(t).Addr },
		"distribution": func(t *testing.T) string {
			return registrytest.Distribution(t, registrytest.DistributionOptions{}).Addr
		},
	}
	for _, bname := range []string{"in-process", "distribution"} {
		t.Run(bname, func(t *testing.T) {
			p := registrytest.NewProxy(t, backends[bname](t))
			for _, a := range []remote.Taggable{randomImage(t, 64<<10, 3), randomIndex(t)} {
				ref := p.Ref("outpost/again:1")
				mustPush(t, ref, a, PushOptions{})
				p.Reset()
				mustPush(t, ref, a, PushOptions{})
				reqs := p.Requests()
				if len(reqs) == 0 {
					t.Fatal("no requests seen")
				}
				for _, r := range reqs {
					if r.Method != http.MethodHead && !(r.Method == http.MethodGet && r.Path == "/v2/") {
						t.Errorf("second push sent %s", r)
					}
				}
				// Same image under a new tag: blobs are HEADed, none sent.
				p.Reset()
				mustPush(t, p.Ref("outpost/again:2"), a, PushOptions{})
				for _, r := range p.Requests() {
					if r.Method == http.MethodPatch || r.Method == http.MethodPost {
						t.Errorf("push under a new tag sent %s", r)
					}
				}
			}
		})
	}
}

// TestPushRetries: a registry that answers 500, 503 and 429 with
// Retry-After a few times is pushed to in the end, and each Retry-After
// was waited for.
func TestPushRetries(t *testing.T) {
	fastBackoff(t)
	p := registrytest.NewInProcessProxy(t)
	p.Fail(registrytest.Match(http.MethodGet, "/v2/"), registrytest.Fault{Status: 503, RetryAfter: "1"})
	p.Fail(registrytest.Match(http.MethodHead, "/blobs/"),
		registrytest.Fault{Status: 500},
		registrytest.Fault{Status: 429, RetryAfter: "1"})
	p.Fail(registrytest.Match(http.MethodPatch, "/blobs/uploads/"), registrytest.Fault{Status: 502})
	p.Fail(registrytest.Match(http.MethodPut, "/blobs/uploads/"), registrytest.Fault{Status: 429, RetryAfter: "2"})
	p.Fail(registrytest.Match(http.MethodPut, "/manifests/"), registrytest.Fault{Status: 503, RetryAfter: "1"})

	img := randomImage(t, 128<<10, 2)
	ref := p.Ref("outpost/flaky:1")
	// One job: requests go one after the other, so "the next request"
	// is the retry.
	mustPush(t, ref, img, PushOptions{Jobs: 1})
	checkImage(t, ref, img)

	reqs := p.Requests()
	faults := 0
	for i, r := range reqs {
		if !r.Faulted {
			continue
		}
		faults++
		var wait time.Duration
		switch {
		case r.Status == 429 && r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/"):
			wait = 2 * time.Second
		case r.Status == 429 || r.Status == 503:
			wait = time.Second
		default:
			continue
		}
		if i+1 >= len(reqs) {
			t.Fatalf("no request after %s answered %d", r, r.Status)
		}
		next := reqs[i+1]
		if gap := next.Start.Sub(r.End); gap < wait {
			t.Errorf("%s answered %d with Retry-After %s; the next request (%s) came %s later", r, r.Status, wait, next, gap)
		}
	}
	if faults != 6 {
		t.Errorf("%d faults answered, want 6:\n%v", faults, reqs)
	}
}

// TestPushRetriesInParallel: faults while several blobs go up at once.
func TestPushRetriesInParallel(t *testing.T) {
	fastBackoff(t)
	p := registrytest.NewInProcessProxy(t)
	p.Fail(registrytest.Match(http.MethodPatch, "/blobs/uploads/"),
		registrytest.Fault{Status: 500}, registrytest.Fault{Status: 503}, registrytest.Fault{Status: 429, RetryAfter: "1"})
	img := randomImage(t, 128<<10, 5)
	start := time.Now()
	ref := p.Ref("outpost/flaky:par")
	mustPush(t, ref, img, PushOptions{Jobs: 4})
	if d := time.Since(start); d < time.Second {
		t.Errorf("push took %s; the registry asked to wait 1s", d)
	}
	checkImage(t, ref, img)
}

func TestPushGivesUp(t *testing.T) {
	fastBackoff(t)
	p := registrytest.NewInProcessProxy(t)
	var faults []registrytest.Fault
	for range 20 {
		faults = append(faults, registrytest.Fault{Status: 500})
	}
	p.Fail(registrytest.Match(http.MethodHead, "/blobs/"), faults...)
	_, err := push(t, p.Ref("outpost/down:1"), randomImage(t, 1024, 1), PushOptions{Jobs: 1})
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("push to a registry that always answers 500: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"3", 3 * time.Second, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"99999999999", maxRetryAfter, true},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestPushAuth: the CNCF registry with basic auth through an htpasswd
// file, credentials from a docker config.json.
func TestPushAuth(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.docker/config.json of the machine's
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	reg := registrytest.Distribution(t, registrytest.DistributionOptions{Users: map[string]string{"edge": "s3cret"}})
	img := randomImage(t, 64<<10, 2)
	ref := reg.Ref("outpost/private:1")

	t.Run("no credentials", func(t *testing.T) {
		t.Setenv("DOCKER_CONFIG", t.TempDir())
		_, err := push(t, ref, img, PushOptions{})
		var ae *AuthError
		if !errors.As(err, &ae) || !ae.Source.Anonymous() {
			t.Fatalf("push without credentials: %v (%T)", err, errors.Unwrap(err))
		}
		if !strings.Contains(err.Error(), "requires credentials and none were found") || !strings.Contains(ae.Hint(), "docker login "+reg.Addr) {
			t.Errorf("push without credentials: %v; hint %q", err, ae.Hint())
		}
	})

	t.Run("config.json", func(t *testing.T) {
		registrytest.DockerConfig(t, reg.Addr, "edge", "s3cret")
		mustPush(t, ref, img, PushOptions{})
		checkImage(t, ref, img, remote.WithAuth(&authn.Basic{Username: "edge", Password: "s3cret"}))
		// The second push, with credentials, only HEADs (and succeeds).
		mustPush(t, ref, img, PushOptions{})
	})

	t.Run("wrong password", func(t *testing.T) {
		file := registrytest.DockerConfig(t, reg.Addr, "edge", "wrong")
		_, err := push(t, reg.Ref("outpost/private:2"), img, PushOptions{})
		var ae *AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("push with a wrong password: %v", err)
		}
		if ae.Source.Kind != "config" || ae.Source.File != file || !strings.Contains(err.Error(), "rejected the credentials from docker config file "+file) {
			t.Errorf("push with a wrong password: %v (source %+v)", err, ae.Source)
		}
		if !strings.Contains(ae.Hint(), "docker login "+reg.Addr) {
			t.Errorf("hint %q", ae.Hint())
		}
	})

	t.Run("credential helper", func(t *testing.T) {
		// A docker credential helper is a program on PATH that answers
		// "get" with the credentials for the server named on stdin.
		bin := t.TempDir()
		helper := "#!/bin/sh\n[ \"$1\" = get ] || exit 1\ncat >/dev/null\necho '{\"Username\":\"edge\",\"Secret\":\"" + "%s" + "\"}'\n"
		dir := t.TempDir()
		file := filepath.Join(dir, "config.json")
		if err := os.WriteFile(file, []byte(`{"credHelpers": {"`+reg.Addr+`": "outposttest"}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DOCKER_CONFIG", dir)
		t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		writeHelper := func(secret string) {
			if err := os.WriteFile(filepath.Join(bin, "docker-credential-outposttest"), fmt.Appendf(nil, helper, secret), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		writeHelper("s3cret")
		mustPush(t, reg.Ref("outpost/helped:1"), img, PushOptions{})
		writeHelper("nope")
		_, err := push(t, reg.Ref("outpost/helped:2"), img, PushOptions{})
		var ae *AuthError
		if !errors.As(err, &ae) || ae.Source.Kind != "helper" || !strings.Contains(err.Error(), "credential helper docker-credential-outposttest (credHelpers in "+file+")") {
			t.Fatalf("push with a helper's wrong password: %v", err)
		}
	})
}

// TestPushRegistryDies: the registry goes away in the middle of a layer:
// a clear error that names it, exit code 5; pushing again to a registry
// that is back completes.
func TestPushRegistryDies(t *testing.T) {
	fastBackoff(t)
	img := randomImage(t, 12<<20, 1)

	t.Run("in-process", func(t *testing.T) {
		backend := registrytest.InProcess(t)
		p := registrytest.NewProxy(t, backend.Addr)
		p.KillAfter(3<<20, nil)
		_, err := push(t, p.Ref("outpost/big:1"), img, PushOptions{})
		checkDied(t, err, p.Addr)
		if up := p.Uploaded(); up >= 12<<20 {
			t.Errorf("the proxy forwarded %d bytes before it died", up)
		}
		// The registry is back (behind a new front).
		p2 := registrytest.NewProxy(t, backend.Addr)
		mustPush(t, p2.Ref("outpost/big:1"), img, PushOptions{})
		checkImage(t, p2.Ref("outpost/big:1"), img)
	})

	t.Run("distribution", func(t *testing.T) {
		reg := registrytest.Distribution(t, registrytest.DistributionOptions{})
		mustPush(t, reg.Ref("outpost/small:1"), randomImage(t, 1024, 1), PushOptions{})
		p := registrytest.NewProxy(t, reg.Addr)
		p.KillAfter(3<<20, reg.Kill) // the registry process dies too
		_, err := push(t, p.Ref("outpost/big:1"), img, PushOptions{})
		checkDied(t, err, p.Addr)

		// Started again on the same storage and address.
		reg = registrytest.Distribution(t, reg.Options())
		ref := reg.Ref("outpost/big:1")
		mustPush(t, ref, img, PushOptions{})
		checkImage(t, ref, img)
	})
}

func checkDied(t *testing.T, err error, addr string) {
	t.Helper()
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("push to a registry that died: %v (want an UnavailableError)", err)
	}
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "registry "+addr+" is unreachable") || !strings.Contains(ue.Hint(), addr) {
		t.Errorf("push to a registry that died: %v; hint %q", err, ue.Hint())
	}
}

func TestPushRegistryDown(t *testing.T) {
	addr := registrytest.FreeAddr(t)
	start := time.Now()
	_, err := push(t, addr+"/outpost/x:1", randomImage(t, 1024, 1), PushOptions{})
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("push to nothing: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("push to nothing took %s to fail", d)
	}
}

// TestPushMount: layers of an image pulled from another repository of the
// same registry are mounted, not uploaded (the CNCF registry mounts).
func TestPushMount(t *testing.T) {
	reg := registrytest.Distribution(t, registrytest.DistributionOptions{})
	base := randomImage(t, 256<<10, 2)
	mustPush(t, reg.Ref("outpost/base:1"), base, PushOptions{})

	p := registrytest.NewProxy(t, reg.Addr)
	pulled, err := remote.Image(mustRef(t, p.Ref("outpost/base:1")))
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	ref := p.Ref("outpost/app:1")
	p.Reset()
	mustPush(t, ref, pulled, PushOptions{Progress: &progress})
	checkImage(t, ref, base)
	mounted := 0
	for _, r := range p.Requests() {
		if r.Method == http.MethodPost && strings.Contains(r.RawQuery, "mount=") && r.Status == http.StatusCreated {
			mounted++
		}
		if r.Method == http.MethodPatch {
			t.Errorf("a layer was uploaded: %s", r)
		}
	}
	if mounted != 3 { // two layers and the config
		t.Errorf("%d blobs mounted, want 3: %v", mounted, p.Requests())
	}
	if n := strings.Count(progress.String(), ": mounted from outpost/base\n"); n != 2 {
		t.Errorf("progress says %d layers were mounted:\n%s", n, progress.String())
	}
}

// TestPushMountFallback: when the registry declines a mount, the layers
// are uploaded.
func TestPushMountFallback(t *testing.T) {
	reg := registrytest.Distribution(t, registrytest.DistributionOptions{})
	base := randomImage(t, 64<<10, 2)
	mustPush(t, reg.Ref("outpost/base:1"), base, PushOptions{})
	p := registrytest.NewProxy(t, reg.Addr)
	pulled, err := remote.Image(mustRef(t, p.Ref("outpost/base:1")))
	if err != nil {
		t.Fatal(err)
	}
	isMount := func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" }
	p.Fail(isMount, registrytest.Fault{Status: 404}, registrytest.Fault{Status: 404}, registrytest.Fault{Status: 404})
	p.Reset()
	mustPush(t, p.Ref("outpost/app:1"), pulled, PushOptions{})
	checkImage(t, p.Ref("outpost/app:1"), base)
	var declined, uploaded int
	for _, r := range p.Requests() {
		if r.Method == http.MethodPost && strings.Contains(r.RawQuery, "mount=") && r.Faulted {
			declined++
		}
		if r.Method == http.MethodPatch {
			uploaded++
		}
	}
	if declined != 3 || uploaded != 3 {
		t.Errorf("%d mounts declined, %d blobs uploaded; want 3 and 3: %v", declined, uploaded, p.Requests())
	}
}

func TestPushProgressLines(t *testing.T) {
	reg := registrytest.InProcess(t)
	img := randomImage(t, 64<<10, 3)
	var out bytes.Buffer
	ref := reg.Ref("outpost/lines:1")
	mustPush(t, ref, img, PushOptions{Progress: &out})
	ls, _ := img.Layers()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(ls) {
		t.Fatalf("%d progress lines for %d layers:\n%s", len(lines), len(ls), out.String())
	}
	re := regexp.MustCompile(`^[0-9a-f]{12}: pushed \d+\.\d KiB$`)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("progress line %q", l)
		}
	}
	out.Reset()
	mustPush(t, ref, img, PushOptions{Progress: &out})
	if n := strings.Count(out.String(), ": exists\n"); n != len(ls) {
		t.Errorf("second push:\n%s", out.String())
	}
}

func TestPushProgressBars(t *testing.T) {
	reg := registrytest.InProcess(t)
	for _, a := range []remote.Taggable{randomImage(t, 512<<10, 3), randomIndex(t)} {
		var out bytes.Buffer
		ref := reg.Ref("outpost/bars:1")
		mustPush(t, ref, a, PushOptions{Progress: &out, TTY: true})
		s := out.String()
		if !strings.Contains(s, "pushed") || !strings.Contains(s, "KiB") {
			t.Errorf("bars:\n%s", s)
		}
		if idx, ok := a.(v1.ImageIndex); ok {
			checkIndex(t, ref, idx)
		} else {
			checkImage(t, ref, a.(v1.Image))
		}
	}
}

func TestPushPlainHTTPOnlyToLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost:5000": true, "localhost": true, "127.0.0.1:5000": true, "127.1.2.3": true,
		"[::1]:5000": true, "::1": true, "192.168.1.10:5000": false, "10.0.0.1": false,
		"registry.example:5000": false, "localhost.example.com": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v", host, got)
		}
	}
	// The transport refuses plain HTTP to other hosts before any dialling.
	inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	for _, tc := range []struct {
		url      string
		insecure bool
		refused  bool
	}{
		{"http://192.168.1.10:5000/v2/", false, true},
		{"http://registry.example/v2/", false, true},
		{"http://192.168.1.10:5000/v2/", true, false},
		{"http://127.0.0.1:5000/v2/", false, false},
		{"https://registry.example/v2/", false, false},
	} {
		tr := &pushTransport{inner: inner, insecure: tc.insecure}
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		_, err := tr.RoundTrip(req)
		var pe *PlainHTTPError
		if refused := errors.As(err, &pe); refused != tc.refused {
			t.Errorf("%s (insecure %v): %v", tc.url, tc.insecure, err)
		}
	}
	// A registry that speaks only HTTP, pushed to without --insecure under a
	// name that is not loopback: refused with a hint.
	err := classifyPushError(fmt.Errorf("Get %q: http: server gave HTTP response to HTTPS client", "https://reg.example/v2/"), mustRef(t, "reg.example/x:1").Context(), nil)
	var pe *PlainHTTPError
	if !errors.As(err, &pe) || !strings.Contains(pe.Hint(), "--insecure") {
		t.Errorf("classify: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDescribeCredentials(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	repo := mustRef(t, "reg.example:5000/team/app:1").Context()
	if s := DescribeCredentials(repo, nil); s.Kind != "anonymous" || s.File != "" || !strings.Contains(s.String(), "no docker config file") {
		t.Errorf("no config: %+v %s", s, s)
	}
	file := filepath.Join(home, ".docker", "config.json")
	os.MkdirAll(filepath.Dir(file), 0o700)
	for _, tc := range []struct{ json, kind, helper string }{
		{`{"auths": {"reg.example:5000": {"auth": "eDp5"}}}`, "config", ""},
		{`{"auths": {"https://reg.example:5000/v2/": {"auth": "eDp5"}}}`, "config", ""},
		{`{"auths": {"other.example": {"auth": "eDp5"}}}`, "anonymous", ""},
		{`{"credsStore": "pass", "auths": {"reg.example:5000": {}}}`, "store", "pass"},
		{`{"credsStore": "pass", "credHelpers": {"reg.example:5000": "ecr-login"}}`, "helper", "ecr-login"},
	} {
		os.WriteFile(file, []byte(tc.json), 0o600)
		s := DescribeCredentials(repo, authn.DefaultKeychain)
		if s.Kind != tc.kind || s.Helper != tc.helper || s.File != file || !strings.Contains(s.String(), file) {
			t.Errorf("%s: %+v (%s)", tc.json, s, s)
		}
	}
	if s := DescribeCredentials(repo, authn.NewMultiKeychain()); s.Kind != "keychain" {
		t.Errorf("another keychain: %+v", s)
	}
}
