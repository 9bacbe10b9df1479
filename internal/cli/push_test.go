package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-edge/outpost/internal/image"
	"github.com/outpost-edge/outpost/internal/image/registrytest"
)

func TestPushArgs(t *testing.T) {
	ios, _, _, _ := TestIO()
	f := &Factory{IO: ios}
	def := image.DefaultPushJobs
	for _, tc := range []struct {
		args []string
		want pushOptions
		err  string
	}{
		{[]string{}, pushOptions{Args: []string{"."}, Jobs: def}, ""},
		{[]string{"modules/a", "localhost:5000/b:1"}, pushOptions{Args: []string{"modules/a", "localhost:5000/b:1"}, Jobs: def}, ""},
		{[]string{"--insecure", "--jobs", "2", "--cache", "/c", "--tag", "dev", "m"}, pushOptions{Args: []string{"m"}, Insecure: true, Jobs: 2, CacheDir: "/c", Tag: "dev"}, ""},
		{[]string{"--jobs", "0"}, pushOptions{}, "invalid --jobs 0"},
		{[]string{"--jobs", "many"}, pushOptions{}, `invalid argument "many" for "--jobs"`},
		{[]string{"--tag", "-x"}, pushOptions{}, `--tag: "-x" is not a tag`},
	} {
		var got *pushOptions
		err := parseCmd(newPushCmdWith(f, func(o *pushOptions) error { got = o; return nil }), tc.args...)
		if checkParseErr(t, tc.args, err, tc.err) && !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q: options %+v, want %+v", tc.args, *got, tc.want)
		}
	}
}

// cacheImage puts a into the local OCI layout cache in dir under ref, as a
// build would.
func cacheImage(t *testing.T, dir, ref string, a any) {
	t.Helper()
	if _, err := image.OpenCache(dir); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	ann := layout.WithAnnotations(map[string]string{image.AnnotationRefName: r.Name()})
	switch a := a.(type) {
	case v1.ImageIndex:
		err = p.AppendIndex(a, ann)
	case v1.Image:
		err = p.AppendImage(a, ann)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestPushRef(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	reg := registrytest.InProcess(t)
	cache := t.TempDir()
	t.Setenv("OUTPOST_CACHE", cache)
	img, _ := random.Image(32<<10, 3)
	idx, _ := random.Index(16<<10, 2, 2)
	imgRef, idxRef := reg.Ref("outpost/sensor:1.0"), reg.Ref("outpost/multi:1.0")
	cacheImage(t, cache, imgRef, img)
	cacheImage(t, cache, idxRef, idx)
	imgD, _ := img.Digest()
	idxD, _ := idx.Digest()

	code, out, errOut := run(t, "push", imgRef)
	if code != 0 {
		t.Fatalf("push: %d %s", code, errOut)
	}
	if out != imgRef+"@"+imgD.String()+"\n" {
		t.Errorf("stdout %q", out)
	}
	lines := regexp.MustCompile(`(?m)^[0-9a-f]{12}: pushed \d+\.\d KiB$`).FindAllString(errOut, -1)
	if !strings.HasPrefix(errOut, "• pushing "+imgRef+"\n") || len(lines) != 3 {
		t.Errorf("stderr %q", errOut)
	}
	if got, err := remote.Image(mustParseRef(t, imgRef)); err != nil || mustDigestOf(t, got) != imgD {
		t.Fatalf("pull back: %v", err)
	}

	// Both, -o json; the image again (it is there: only HEADs, "exists").
	code, out, errOut = run(t, "push", imgRef, idxRef, "-o", "json")
	if code != 0 {
		t.Fatalf("push -o json: %d %s", code, errOut)
	}
	var res []pushResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := []pushResult{{imgRef, imgD.String()}, {idxRef, idxD.String()}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("push -o json: %+v, want %+v", res, want)
	}
	if strings.Count(errOut, ": exists\n") != 3 {
		t.Errorf("stderr %q", errOut)
	}
	if got, err := remote.Index(mustParseRef(t, idxRef)); err != nil || mustDigestOf(t, got) != idxD {
		t.Fatalf("pull back the index: %v", err)
	}

	// By digest: printed as it is.
	dref := reg.Ref("outpost/sensor@" + imgD.String())
	cacheImage(t, cache, dref, img)
	if code, out, errOut := run(t, "push", dref); code != 0 || out != dref+"\n" {
		t.Errorf("push by digest: %d %q %s", code, out, errOut)
	}
}

func TestPushPath(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	reg := registrytest.InProcess(t)
	cache := t.TempDir()
	dir := t.TempDir()
	for _, m := range []string{"a", "b"} {
		d := filepath.Join(dir, "modules", m)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "module.yaml"), []byte("name: "+m+"\nrepository: "+reg.Addr+"/"+m+"\ntag: \"1.0\"\nbuild:\n  files: [{src: data, dst: /data}]\n"), 0o644)
		os.WriteFile(filepath.Join(d, "data"), []byte(m), 0o644)
	}
	a, _ := random.Image(1024, 1)
	b, _ := random.Image(1024, 1)
	cacheImage(t, cache, reg.Ref("a:1.0"), a)
	cacheImage(t, cache, reg.Ref("b:1.0"), b)
	cacheImage(t, cache, reg.Ref("a:dev"), b)

	code, out, errOut := run(t, "push", filepath.Join(dir, "modules", "a"), "--cache", cache, "-o", "json")
	var res pushResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Reference != reg.Ref("a:1.0") || res.Digest != mustDigestOf(t, a).String() {
		t.Fatalf("push PATH: %d %q %s", code, out, errOut)
	}
	// A solution dir pushes each module; --tag picks the build's tag.
	code, out, errOut = run(t, "push", dir, "--cache", cache)
	if code != 0 || out != reg.Ref("a:1.0")+"@"+mustDigestOf(t, a).String()+"\n"+reg.Ref("b:1.0")+"@"+mustDigestOf(t, b).String()+"\n" {
		t.Fatalf("push SOLUTION: %d %q %s", code, out, errOut)
	}
	code, out, errOut = run(t, "push", filepath.Join(dir, "modules", "a", "module.yaml"), "--cache", cache, "--tag", "dev")
	if code != 0 || out != reg.Ref("a:dev")+"@"+mustDigestOf(t, b).String()+"\n" {
		t.Fatalf("push PATH --tag: %d %q %s", code, out, errOut)
	}
}

func TestPushErrors(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	cache := t.TempDir()
	t.Setenv("OUTPOST_CACHE", cache)
	down := registrytest.FreeAddr(t)
	img, _ := random.Image(1024, 1)
	cacheImage(t, cache, down+"/outpost/x:1", img)
	mod := t.TempDir()
	os.WriteFile(filepath.Join(mod, "module.yaml"), []byte("name: m\nrepository: localhost:5000/m\nbuild:\n  files: [{src: a, dst: /a}]\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "a"), []byte("a"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		msg  []string
	}{
		{[]string{"push", down + "/outpost/x:1"}, ExitUnavailable, []string{"registry " + down + " is unreachable", "connection refused", "Check that a registry is running at " + down}},
		{[]string{"push", "localhost:5000/outpost/never:1"}, ExitNotFound, []string{"not in the local image cache", cache, "Build it first"}},
		{[]string{"push", mod}, ExitNotFound, []string{"localhost:5000/m:latest", "not in the local image cache", "Build it first: outpost build " + mod}},
		{[]string{"push", t.TempDir()}, ExitNotFound, []string{"holds no module.yaml"}},
		{[]string{"push", "Not A Ref!"}, ExitNotFound, []string{"neither a module directory nor an image reference"}},
		{[]string{"push", "localhost:5000/x:1", "--tag", "2"}, ExitUsage, []string{"--tag applies to a PATH"}},
	} {
		code, out, errOut := run(t, tc.args...)
		if code != tc.code || out != "" {
			t.Errorf("%q: exit %d, want %d; stdout %q; stderr %s", tc.args, code, tc.code, out, errOut)
		}
		for _, m := range tc.msg {
			if !strings.Contains(errOut, m) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, errOut, m)
			}
		}
	}
}

// TestPushRejectedCredentials: the CLI says where the credentials came
// from and to log in again.
func TestPushRejectedCredentials(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	t.Setenv("HOME", t.TempDir())
	reg := registrytest.Distribution(t, registrytest.DistributionOptions{Users: map[string]string{"edge": "right"}})
	file := registrytest.DockerConfig(t, reg.Addr, "edge", "wrong")
	cache := t.TempDir()
	img, _ := random.Image(1024, 1)
	cacheImage(t, cache, reg.Ref("outpost/x:1"), img)
	code, _, errOut := run(t, "push", reg.Ref("outpost/x:1"), "--cache", cache)
	if code != ExitFailure || !strings.Contains(errOut, "rejected the credentials from docker config file "+file) || !strings.Contains(errOut, "docker login "+reg.Addr) {
		t.Fatalf("push with a wrong password: exit %d: %s", code, errOut)
	}
	registrytest.DockerConfig(t, reg.Addr, "edge", "right")
	if code, _, errOut := run(t, "push", reg.Ref("outpost/x:1"), "--cache", cache); code != 0 {
		t.Fatalf("push with the right password: exit %d: %s", code, errOut)
	}
}

func mustParseRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustDigestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
