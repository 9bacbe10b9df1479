package image

import (
	"archive/tar"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestDockerfileParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, df string
		want     []string
	}{
		{"run", "FROM scratch\nCOPY a /a\nRUN go build ./...\n", []string{
			"Dockerfile:3: RUN is not supported: outpost builds images without a Docker daemon and without emulating other CPUs",
			"build: {go: ./cmd/NAME}", "build: {files: [...]}"}},
		{"run continued", "FROM scratch\n\n# a comment\nRUN apk add \\\n    curl\nRUN x\n", []string{"Dockerfile:4: RUN is not supported", "Dockerfile:6: RUN is not supported"}},
		{"multi-stage", "FROM golang:1.26 AS build\nCOPY . /src\nFROM scratch\n", []string{"Dockerfile:3: a second FROM: multi-stage builds are not supported"}},
		{"copy from", "FROM scratch\nCOPY --from=build /app /app\n", []string{"Dockerfile:2: COPY --from=build: multi-stage builds are not supported"}},
		{"unknown", "FROM scratch\nCOPPY a /a\n", []string{"Dockerfile:2: unknown instruction COPPY (did you mean COPY?)"}},
		{"before from", "ENV A=b\nFROM scratch\n", []string{"Dockerfile:1: ENV before FROM"}},
		{"no from", "# nothing\n", []string{"Dockerfile: no FROM"}},
		{"shell", "FROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\n", []string{"Dockerfile:2: SHELL is not supported yet"}},
		{"healthcheck", "FROM scratch\nHEALTHCHECK CMD true\n", []string{"Dockerfile:2: HEALTHCHECK is not supported yet"}},
		{"from platform", "FROM --platform=$BUILDPLATFORM alpine\n", []string{"Dockerfile:1: FROM --platform is not supported"}},
		{"from words", "FROM alpine AS\n", []string{"Dockerfile:1: FROM takes an image and an optional AS name"}},
		{"copy flag", "FROM scratch\nCOPY --exclude=*.md . /app\n", []string{"Dockerfile:2: COPY: unsupported flag --exclude"}},
		{"heredoc", "FROM scratch\nCOPY <<EOF /a\nhello\nEOF\n", []string{"Dockerfile:2: COPY with a here-document is not supported"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDockerfile([]byte(tc.df), "Dockerfile")
			var me *ModuleError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want a *ModuleError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// evalDockerfile evaluates df in a module dir holding files, for p, on an
// empty base config.
func evalDockerfile(t *testing.T, files map[string]string, df string, p string) (*v1.ConfigFile, []dfStep, error) {
	t.Helper()
	files["Dockerfile"] = df
	dir := writeTree(t, files)
	dir, _ = filepath.EvalSymlinks(dir)
	d, err := parseDockerfile([]byte(df), "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := ParsePlatform(p)
	cfg := &v1.ConfigFile{Config: v1.Config{Env: []string{"PATH=/bin", "BASE=base"}, Cmd: []string{"base-cmd"}}}
	steps, err := d.eval(dir, pl, cfg)
	return cfg, steps, err
}

// stepEntries lists a step's layer as "name mode uid:gid [-> link]".
func stepEntries(s dfStep) []string {
	var out []string
	for _, e := range s.files.sorted() {
		line := e.name + " " + strings.TrimPrefix(modeString(e.mode), "0")
		if e.uid != 0 || e.gid != 0 {
			line += " " + itoa(e.uid) + ":" + itoa(e.gid)
		}
		if e.typ == tar.TypeSymlink {
			line += " -> " + e.link
		}
		if e.typ == tar.TypeDir {
			line += " dir"
		}
		out = append(out, line)
	}
	return out
}

func modeString(m int64) string {
	const digits = "01234567"
	return string([]byte{'0', digits[m>>6&7], digits[m>>3&7], digits[m&7]})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestDockerfileEval(t *testing.T) {
	files := map[string]string{
		"bin/amd64/app": "#!amd64",
		"bin/arm64/app": "#!arm64",
		"conf/a.yaml":   "a",
		"conf/sub/b":    "b",
		"conf/link":     "symlink:a.yaml",
		"README.md":     "readme",
		"NOTES.md":      "notes",
	}
	cfg, steps, err := evalDockerfile(t, files, `# syntax=docker/dockerfile:1
FROM scratch
ARG TARGETARCH
ARG VERSION=1.2 \
    NAME="my app"
ENV APP_HOME=/opt/app PATH=$PATH:/opt/app/bin
ENV GREETING hello world
LABEL org.opencontainers.image.version=$VERSION "org.example.name"="${NAME}"
WORKDIR $APP_HOME
COPY --chmod=0700 bin/${TARGETARCH}/app bin/
COPY conf ./conf
COPY --chown=1000:1001 *.md docs/
ADD ["README.md", "/readme.txt"]
EXPOSE 8080 53/udp
VOLUME ["/data"]
USER 1000:1000
STOPSIGNAL SIGINT
ENTRYPOINT ["/opt/app/bin/app"]
CMD --serve ${BASE:-none}
`, "linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if want := []string{"PATH=/bin:/opt/app/bin", "BASE=base", "APP_HOME=/opt/app", "GREETING=hello world"}; !reflect.DeepEqual(c.Env, want) {
		t.Errorf("Env = %q, want %q", c.Env, want)
	}
	if want := map[string]string{"org.opencontainers.image.version": "1.2", "org.example.name": "my app"}; !reflect.DeepEqual(c.Labels, want) {
		t.Errorf("Labels = %v", c.Labels)
	}
	if c.WorkingDir != "/opt/app" || c.User != "1000:1000" || c.StopSignal != "SIGINT" {
		t.Errorf("WorkingDir %q User %q StopSignal %q", c.WorkingDir, c.User, c.StopSignal)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("ExposedPorts = %v", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok {
		t.Errorf("Volumes = %v", c.Volumes)
	}
	if !reflect.DeepEqual(c.Entrypoint, []string{"/opt/app/bin/app"}) || !reflect.DeepEqual(c.Cmd, []string{"/bin/sh", "-c", "--serve ${BASE:-none}"}) {
		t.Errorf("Entrypoint %q Cmd %q", c.Entrypoint, c.Cmd)
	}
	var layers [][]string
	for _, s := range steps {
		if s.files != nil {
			layers = append(layers, stepEntries(s))
		}
	}
	want := [][]string{
		{"opt 755 dir", "opt/app 755 dir", "opt/app/bin 755 dir", "opt/app/bin/app 700"},
		{"opt 755 dir", "opt/app 755 dir", "opt/app/conf 755 dir", "opt/app/conf/a.yaml 644", "opt/app/conf/link 777 -> a.yaml", "opt/app/conf/sub 755 dir", "opt/app/conf/sub/b 644"},
		{"opt 755 dir", "opt/app 755 dir", "opt/app/docs 755 dir", "opt/app/docs/NOTES.md 644 1000:1001", "opt/app/docs/README.md 644 1000:1001"},
		{"readme.txt 644"},
	}
	if !reflect.DeepEqual(layers, want) {
		t.Errorf("layers:\n got %q\nwant %q", layers, want)
	}
	if len(steps) != 16 || steps[0].createdBy != "ARG TARGETARCH" {
		t.Errorf("%d steps, first %q", len(steps), steps[0].createdBy)
	}
}

func TestDockerfileEntrypointDropsBaseCmd(t *testing.T) {
	cfg, _, err := evalDockerfile(t, map[string]string{}, "FROM scratch\nENTRYPOINT /app --x\n", "linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.Cmd != nil || !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/bin/sh", "-c", "/app --x"}) {
		t.Fatalf("Entrypoint %q Cmd %q", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
}

func TestDockerfileEvalErrors(t *testing.T) {
	files := map[string]string{
		"app":            "x",
		"out":            "symlink:/etc/passwd",
		"dist/ok":        "x",
		"dist/bad":       "symlink:../../secret",
		"dist2/abs":      "symlink:/usr/lib",
		"archive.tar.gz": "\x1f\x8b\x08\x00rest",
	}
	for _, tc := range []struct {
		name, df, want string
	}{
		{"escape", "FROM scratch\n\nCOPY ../secret /s\n", "Dockerfile:3: COPY: ../secret escapes the module directory"},
		{"absolute", "FROM scratch\nCOPY /etc/passwd /p\n", "Dockerfile:2: COPY: /etc/passwd is an absolute path"},
		{"symlink out", "FROM scratch\nCOPY out /p\n", "Dockerfile:2: COPY: out is a symlink to /etc/passwd, outside the module directory"},
		{"dir with a link out", "FROM scratch\nCOPY dist /d/\n", "Dockerfile:2: COPY: dist/bad is a symlink to ../../secret, outside the module directory"},
		{"dir with an absolute link", "FROM scratch\nCOPY dist2 /d/\n", "Dockerfile:2: COPY: dist2/abs is a symlink to the absolute path /usr/lib, outside the module directory"},
		{"missing", "FROM scratch\nCOPY nope /n\n", "Dockerfile:2: COPY: nope does not exist"},
		{"glob none", "FROM scratch\nCOPY *.txt /n/\n", "Dockerfile:2: COPY: *.txt matches no file"},
		{"several to file", "FROM scratch\nCOPY app dist/ok /n\n", "with more than one source the destination must be a directory ending in /"},
		{"one arg", "FROM scratch\nCOPY app\n", "COPY needs at least one source and a destination"},
		{"add url", "FROM scratch\nADD https://example.com/x.tgz /x\n", "Dockerfile:2: ADD https://example.com/x.tgz: remote sources are not supported"},
		{"add archive", "FROM scratch\nADD archive.tar.gz /x/\n", "ADD archive.tar.gz: docker would unpack this gzip archive"},
		{"chown name", "FROM scratch\nCOPY --chown=app:app app /a\n", "--chown=app:app: use numeric ids"},
		{"chmod", "FROM scratch\nCOPY --chmod=rwx app /a\n", "--chmod=rwx: not an octal mode"},
		{"expose", "FROM scratch\nEXPOSE http\n", `Dockerfile:2: EXPOSE: "http" is not a port`},
		{"workdir args", "FROM scratch\nWORKDIR /a /b\n", "WORKDIR takes one argument (got 2)"},
		{"env", "FROM scratch\nENV 1A=b\n", `ENV: "1A" is not a variable name`},
		{"quote", "FROM scratch\nENV A=\"b\n", "ENV: unterminated double quote"},
		{"substitution", "FROM scratch\nENV A=${B/x/y}\n", "unsupported substitution ${B/x/y}"},
		{"cmd empty", "FROM scratch\nCMD\n", "CMD needs a command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := map[string]string{}
			for k, v := range files {
				fs[k] = v
			}
			_, _, err := evalDockerfile(t, fs, tc.df, "linux/amd64")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDockerfileBaseRef(t *testing.T) {
	df, err := parseDockerfile([]byte("ARG REG=localhost:5000\nARG TAG\nFROM ${REG}/base:${TAG:-1} AS final\nCOPY a /a\n"), "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := df.baseRef(v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil || ref != "localhost:5000/base:1" {
		t.Fatalf("baseRef = %q, %v", ref, err)
	}
}

func TestShellWords(t *testing.T) {
	vars := map[string]string{"A": "a b", "EMPTY": ""}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for in, want := range map[string][]string{
		`x y  z`:                   {"x", "y", "z"},
		`"a b" 'c d'`:              {"a b", "c d"},
		`$A`:                       {"a b"},
		`${A}x`:                    {"a bx"},
		`'$A'`:                     {"$A"},
		`"$A"`:                     {"a b"},
		`\$A`:                      {"$A"},
		`${EMPTY:-dflt} ${NOPE-n}`: {"dflt", "n"},
		`${A:+set} ${NOPE:+set}.`:  {"set", "."},
		`k="v \"q\""`:              {`k=v "q"`},
		`$ $1 a$`:                  {"$", "$1", "a$"},
	} {
		got, err := shellWords(in, '\\', lookup)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("shellWords(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
}
