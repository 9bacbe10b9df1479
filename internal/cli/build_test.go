package cli

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestInitThenBuild builds what init makes, for one platform and for the
// three it names, and pushes it to a registry on loopback.
func TestInitThenBuild(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH")
	}
	t.Setenv("OUTPOST_CONFIG", "")
	dir, cache := t.TempDir(), t.TempDir()
	if code, _, errOut := run(t, "init", dir); code != 0 {
		t.Fatalf("init: %s", errOut)
	}

	code, out, errOut := run(t, "build", dir, "--cache", cache, "--platform", "linux/amd64", "-v")
	if code != 0 {
		t.Fatalf("build: %d %s", code, errOut)
	}
	if !strings.HasPrefix(out, "localhost:5000/tempsensor:1.0@sha256:") || strings.Count(out, "\n") != 1 {
		t.Errorf("stdout %q", out)
	}
	if !strings.Contains(errOut, "building localhost:5000/tempsensor:1.0") || !strings.Contains(errOut, "timings: ") || !strings.Contains(errOut, "go build") {
		t.Errorf("stderr (-v) %q", errOut)
	}

	// The solution's module dir and module.yaml name the same module; -o json.
	t.Setenv("OUTPOST_CACHE", cache)
	code, out, errOut = run(t, "build", filepath.Join(dir, "modules", "tempsensor", "module.yaml"), "-o", "json", "--tag", "dev")
	if code != 0 {
		t.Fatalf("build -o json: %d %s", code, errOut)
	}
	var res buildResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Reference != "localhost:5000/tempsensor:dev" || !strings.HasPrefix(res.Digest, "sha256:") || len(res.Platforms) != 3 || res.Platforms[2].Platform != "linux/arm/v7" || res.Pushed {
		t.Fatalf("build -o json: %+v", res)
	}

	// --push, to a registry on loopback.
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	my := filepath.Join(dir, "modules", "tempsensor", "module.yaml")
	y, _ := os.ReadFile(my)
	os.WriteFile(my, []byte(strings.Replace(string(y), "localhost:5000/", host+"/", 1)), 0o644)
	code, out, errOut = run(t, "build", dir, "--push", "-o", "json")
	if code != 0 {
		t.Fatalf("build --push: %d %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Pushed {
		t.Fatalf("build --push -o json: %s %v", out, err)
	}
	ref, _ := name.ParseReference(host + "/tempsensor:1.0")
	desc, err := remote.Head(ref)
	if err != nil || desc.Digest.String() != res.Digest {
		t.Fatalf("the registry has %v (%v), the build said %s", desc, err, res.Digest)
	}
}

func TestBuildSolution(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	dir := t.TempDir()
	for _, m := range []string{"a", "b"} {
		d := filepath.Join(dir, "modules", m)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "module.yaml"), []byte("name: "+m+"\nrepository: localhost:5000/"+m+"\nbuild:\n  files: [{src: data, dst: /data}]\n"), 0o644)
		os.WriteFile(filepath.Join(d, "data"), []byte(m), 0o644)
	}
	code, out, errOut := run(t, "build", dir, "--cache", t.TempDir(), "-o", "json")
	if code != 0 {
		t.Fatalf("build: %d %s", code, errOut)
	}
	var res []buildResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 2 || res[0].Reference != "localhost:5000/a:latest" || res[1].Reference != "localhost:5000/b:latest" {
		t.Fatalf("build of a solution: %s %v", out, err)
	}
}

func TestBuildErrors(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	t.Setenv("OUTPOST_CACHE", t.TempDir())
	empty := t.TempDir()
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "module.yaml"), []byte("name: x\nrepository: localhost:5000/x\nbuild: {go: .}\nplatform: [linux/amd64]\n"), 0o644)
	os.WriteFile(filepath.Join(bad, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644)
	srv := httptest.NewServer(http.NotFoundHandler())
	down := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	offline := t.TempDir()
	os.WriteFile(filepath.Join(offline, "module.yaml"), []byte("name: x\nrepository: localhost:5000/x\nbase: "+down+"/base:1\nbuild:\n  files: [{src: a, dst: /a}]\n"), 0o644)
	os.WriteFile(filepath.Join(offline, "a"), []byte("a"), 0o644)
	run := func(args ...string) (int, string) {
		ios, _, _, errOut := TestIO()
		code := Run(context.Background(), ios, args)
		return code, errOut.String()
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  []string
	}{
		{[]string{"build", filepath.Join(empty, "nope")}, ExitNotFound, []string{"does not exist"}},
		{[]string{"build", empty}, ExitNotFound, []string{"holds no module.yaml and no modules/*/module.yaml", "outpost init " + empty}},
		{[]string{"build", bad}, ExitFailure, []string{filepath.Join(bad, "module.yaml") + ":4: platform: unknown field (did you mean platforms?)", "Fix what is named above"}},
		{[]string{"build", bad, "--platform", "linux/mips"}, ExitUsage, []string{`--platform: unknown platform "linux/mips"`}},
		{[]string{"build", bad, "--tag=-x"}, ExitUsage, []string{`--tag: "-x" is not a tag`}},
		{[]string{"build", offline}, ExitUnavailable, []string{"registry " + down + " is unreachable", "Check that a registry is running at " + down}},
	} {
		code, errOut := run(tc.args...)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d: %s", tc.args, code, tc.code, errOut)
		}
		for _, m := range tc.msg {
			if !strings.Contains(errOut, m) {
				t.Errorf("%q: stderr does not say %q:\n%s", tc.args, m, errOut)
			}
		}
	}
}
