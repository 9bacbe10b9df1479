package image

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeTree makes a directory holding files (path → content; a content
// starting with "symlink:" makes a symlink to the rest).
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "symlink:"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadModuleMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadModule(dir)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, "module.yaml")) || !strings.Contains(err.Error(), "outpost init") {
		t.Fatalf("LoadModule of an empty dir: %v", err)
	}
}

func TestParseModule(t *testing.T) {
	dir := writeTree(t, map[string]string{"cmd/x/main.go": "package main"})
	m, err := ParseModule([]byte(`
name: tempsensor
repository: localhost:5000/tempsensor
tag: 1.0
platforms: [linux/amd64, linux/arm64/v8, linux/arm]
build:
  go: cmd/x
entrypoint: [/tempsensor, --verbose]
cmd: [--interval, 5]
env: {INTERVAL: 5, DEBUG: true}
workingDir: /data
user: 1000
labels: {org.example.team: edge}
exposedPorts: [8080, 53/udp]
`), dir, "module.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Module{
		Dir: dir, File: "module.yaml", Name: "tempsensor", Repository: "localhost:5000/tempsensor", Tag: "1.0",
		Platforms:  []string{"linux/amd64", "linux/arm64", "linux/arm/v7"},
		Base:       "scratch",
		Build:      BuildSpec{Kind: KindGo, Go: "./cmd/x", Line: 7},
		Entrypoint: []string{"/tempsensor", "--verbose"}, Cmd: []string{"--interval", "5"},
		Env:        []EnvVar{{"INTERVAL", "5"}, {"DEBUG", "true"}},
		WorkingDir: "/data", User: "1000",
		Labels:       []EnvVar{{"org.example.team", "edge"}},
		ExposedPorts: []string{"8080/tcp", "53/udp"},
		absDir:       m.absDir,
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got  %+v\nwant %+v", m, want)
	}
	ref, err := m.Reference("")
	if err != nil || ref.String() != "localhost:5000/tempsensor:1.0" {
		t.Fatalf("Reference: %v %v", ref, err)
	}
	if ref, _ := m.Reference("2.0"); ref.String() != "localhost:5000/tempsensor:2.0" {
		t.Fatalf("Reference(2.0) = %v", ref)
	}
}

func TestParseModuleDefaults(t *testing.T) {
	dir := writeTree(t, map[string]string{"main.go": "package main"})
	m, err := ParseModule([]byte("name: x\nrepository: localhost:5000/x\nbuild: {go: .}\n"), dir, "module.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m.Tag != "latest" || m.Base != "scratch" || !reflect.DeepEqual(m.Platforms, []string{"linux/amd64"}) || m.Build.Go != "." {
		t.Fatalf("defaults: %+v", m)
	}
}

func TestParseModuleErrors(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"main.go":         "package main",
		"Dockerfile":      "FROM scratch\n",
		"dist/app":        "#!/bin/sh\n",
		"outside-link":    "symlink:/etc",
		"inside-link":     "symlink:dist",
		"dist/up":         "symlink:../..",
		"cmd/x/main.go":   "package main",
		"cmd/x/dir/.keep": "",
	})
	const head = "name: x\nrepository: localhost:5000/x\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string // each must appear in the error
	}{
		{"syntax", "name: x\nrepository: y\n  bad: 1\n", []string{"module.yaml:3: not valid YAML: mapping values are not allowed in this context"}},
		{"empty", "", []string{"module.yaml: the file is empty"}},
		{"not a mapping", "- a\n- b\n", []string{"module.yaml:1: must be a mapping of fields"}},
		{"unknown field", head + "build: {go: .}\nentrypiont: [/x]\n", []string{"module.yaml:4: entrypiont: unknown field (did you mean entrypoint?)"}},
		{"unknown field far", head + "build: {go: .}\nfrobnicate: 1\n", []string{"module.yaml:4: frobnicate: unknown field; known fields here: name, repository"}},
		{"unknown build field", head + "build: {dockerfiel: Dockerfile}\n", []string{"module.yaml:3: build.dockerfiel: unknown field (did you mean dockerfile?)", "module.yaml:3: build: names no build kind"}},
		{"missing name and repo", "build: {go: .}\n", []string{"module.yaml:1: name: missing", "module.yaml:1: repository: missing"}},
		{"missing build", head, []string{"module.yaml:1: build: missing; say how the module is built"}},
		{"two kinds", head + "build:\n  go: .\n  dockerfile: Dockerfile\n", []string{"module.yaml:4: build: gives go and dockerfile; give exactly one build kind"}},
		{"unknown platform", head + "build: {go: .}\nplatforms:\n  - linux/amd64\n  - linux/mips\n", []string{`module.yaml:6: platforms[1]: unknown platform "linux/mips"`, "known platforms: linux/amd64"}},
		{"darwin", head + "build: {go: .}\nplatforms: [darwin/arm64]\n", []string{"macOS has no containers"}},
		{"bad platform", head + "build: {go: .}\nplatforms: [amd64]\n", []string{`platform "amd64" is not os/arch[/variant]`}},
		{"duplicate platform", head + "build: {go: .}\nplatforms: [linux/arm, linux/arm/v7]\n", []string{"platforms[1]: linux/arm/v7 is listed twice"}},
		{"platforms not a list", head + "build: {go: .}\nplatforms: {a: b}\n", []string{"platforms: must be a list"}},
		{"go escapes", head + "build: {go: ../x}\n", []string{"module.yaml:3: build.go: ../x escapes the module directory"}},
		{"go absolute", head + "build: {go: /usr/src/x}\n", []string{"build.go: /usr/src/x is an absolute path"}},
		{"go missing", head + "build: {go: ./cmd/y}\n", []string{"build.go: ./cmd/y is not a directory in the module directory"}},
		{"go symlink out", head + "build: {go: outside-link}\n", []string{"build.go: outside-link is a symlink to /etc, outside the module directory"}},
		{"dockerfile missing", head + "build: {dockerfile: Containerfile}\n", []string{"build.dockerfile: Containerfile is not a file"}},
		{"dockerfile with base", head + "base: alpine\nbuild: {dockerfile: Dockerfile}\n", []string{"module.yaml:3: base: a dockerfile build takes its base from the Dockerfile's FROM"}},
		{"files escape", head + "build:\n  files:\n    - {src: ../../etc/passwd, dst: /etc/passwd}\n", []string{"module.yaml:5: build.files[0].src: ../../etc/passwd escapes the module directory"}},
		{"files symlink out", head + "build:\n  files:\n    - {src: outside-link, dst: /x}\n", []string{"build.files[0].src: outside-link is a symlink to /etc"}},
		{"files symlink to parent", head + "build:\n  files:\n    - {src: dist/up, dst: /x}\n", []string{"build.files[0].src: dist/up is a symlink to", "outside the module directory"}},
		{"files relative dst", head + "build:\n  files:\n    - {src: dist, dst: app/}\n", []string{`build.files[0].dst: "app/" must be an absolute path`}},
		{"files missing src", head + "build:\n  files:\n    - {dst: /app/}\n", []string{"build.files[0].src: missing"}},
		{"files not there", head + "build:\n  files:\n    - {src: nope, dst: /app/}\n", []string{"build.files[0].src: nope does not exist"}},
		{"files empty", head + "build: {files: []}\n", []string{"build.files: must be a list of {src, dst}"}},
		{"repository with tag", "name: x\nrepository: localhost:5000/x:1.0\nbuild: {go: .}\n", []string{"module.yaml:2: repository: \"localhost:5000/x:1.0\" has a tag"}},
		{"bad repository", "name: x\nrepository: Local Host/x\nbuild: {go: .}\n", []string{"module.yaml:2: repository:"}},
		{"bad tag", head + "tag: -bad\nbuild: {go: .}\n", []string{`module.yaml:3: tag: "-bad" is not a tag`}},
		{"bad name", "name: ../x\nrepository: localhost:5000/x\nbuild: {go: .}\n", []string{`module.yaml:1: name: "../x" is not a module name`}},
		{"name not string", "name: [x]\nrepository: localhost:5000/x\nbuild: {go: .}\n", []string{"module.yaml:1: name: must be a string, not a list"}},
		{"bad env", head + "build: {go: .}\nenv: {1X: a}\n", []string{`module.yaml:4: env.1X: "1X" is not an environment variable name`}},
		{"env list", head + "build: {go: .}\nenv: [A=b]\n", []string{"env: must be a mapping of names to values"}},
		{"entrypoint string", head + "build: {go: .}\nentrypoint: /x\n", []string{`entrypoint: must be a list of strings, such as ["/x"]`}},
		{"bad port", head + "build: {go: .}\nexposedPorts: [http, 70000]\n", []string{`exposedPorts[0]: "http" is not a port`, "exposedPorts[1]: port 70000 is out of range"}},
		{"relative workdir", head + "build: {go: .}\nworkingDir: app\n", []string{`workingDir: "app" must be an absolute path`}},
		{"bad base", head + "base: 'UPPER CASE'\nbuild: {go: .}\n", []string{`module.yaml:3: base: "UPPER CASE" is not an image reference`}},
		{"duplicate key", head + "build: {go: .}\nname: y\n", []string{"module.yaml:4: name: given twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseModule([]byte(tc.yaml), dir, "module.yaml")
			var me *ModuleError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v (%T), want a *ModuleError", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]string{
		"linux/amd64":    "linux/amd64",
		"linux/arm64/v8": "linux/arm64",
		"linux/arm":      "linux/arm/v7",
		"linux/arm/v6":   "linux/arm/v6",
		" linux/s390x ":  "linux/s390x",
		"linux/riscv64":  "linux/riscv64",
	} {
		p, err := ParsePlatform(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "linux", "linux/", "linux/mips", "linux/arm/v5", "windows/amd64", "darwin/arm64", "a/b/c/d"} {
		if _, err := ParsePlatform(in); err == nil {
			t.Errorf("ParsePlatform(%q) gave no error", in)
		}
	}
}
