package repotest

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// goreleaserConfig is the part of .goreleaser.yaml these tests read.
type goreleaserConfig struct {
	Builds []struct {
		ID     string   `yaml:"id"`
		GOOS   []string `yaml:"goos"`
		GOARCH []string `yaml:"goarch"`
		GOARM  []string `yaml:"goarm"`
		Ignore []struct {
			GOOS   string `yaml:"goos"`
			GOARCH string `yaml:"goarch"`
		} `yaml:"ignore"`
	} `yaml:"builds"`
	NFPMs []nfpmConfig `yaml:"nfpms"`
}

// nfpmConfig is what .goreleaser.yaml's nfpms and scripts/package/nfpm.yaml
// share.
type nfpmConfig struct {
	PackageName string        `yaml:"package_name"`
	Name        string        `yaml:"name"`
	Vendor      string        `yaml:"vendor"`
	Homepage    string        `yaml:"homepage"`
	Maintainer  string        `yaml:"maintainer"`
	Description string        `yaml:"description"`
	License     string        `yaml:"license"`
	Section     string        `yaml:"section"`
	Priority    string        `yaml:"priority"`
	Recommends  []string      `yaml:"recommends"`
	Bindir      string        `yaml:"bindir"`
	IDs         []string      `yaml:"ids"`
	Contents    []nfpmContent `yaml:"contents"`
	Scripts     map[string]string
}

type nfpmContent struct {
	Src      string `yaml:"src"`
	Dst      string `yaml:"dst"`
	Type     string `yaml:"type"`
	Packager string `yaml:"packager"`
	FileInfo struct {
		Mode int `yaml:"mode"`
	} `yaml:"file_info"`
}

// repoRoot is the directory of go.mod above the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for ; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if dir == filepath.Dir(dir) {
			t.Fatal("no go.mod above the test's directory")
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// releaseTargets are the GOOS/GOARCH[/vN] goreleaser builds.
func releaseTargets(t *testing.T, cfg goreleaserConfig, id string) []string {
	t.Helper()
	var targets []string
	for _, b := range cfg.Builds {
		if b.ID != id {
			continue
		}
	next:
		for _, goos := range b.GOOS {
			for _, goarch := range b.GOARCH {
				for _, ig := range b.Ignore {
					if ig.GOOS == goos && ig.GOARCH == goarch {
						continue next
					}
				}
				if goarch == "arm" {
					for _, v := range b.GOARM {
						targets = append(targets, goos+"/arm/v"+v)
					}
					continue
				}
				targets = append(targets, goos+"/"+goarch)
			}
		}
	}
	slices.Sort(targets)
	return targets
}

// TestCrossCompileTargets checks that scripts/test cross-compiles exactly
// the targets .goreleaser.yaml builds, and that they include the three
// device platforms (the daemon's; outpost init builds modules for them).
func TestCrossCompileTargets(t *testing.T) {
	root := repoRoot(t)
	var cfg goreleaserConfig
	readYAML(t, filepath.Join(root, ".goreleaser.yaml"), &cfg)
	want := releaseTargets(t, cfg, "outpost")
	for _, device := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		if !slices.Contains(want, device) {
			t.Errorf(".goreleaser.yaml does not build %s, a device platform", device)
		}
	}

	script, err := os.ReadFile(filepath.Join(root, "scripts", "test"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^for target in (.*); do$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("scripts/test: no `for target in …; do` line: where does it cross-compile ./cmd/outpost?")
	}
	got := strings.Fields(string(m[1]))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("scripts/test cross-compiles %v; .goreleaser.yaml builds %v: make them the same", got, want)
	}
	// The daemon binary (the runtimes' shim too): the daemon's platforms, each
	// cross-compiled with outpost; and the optional shim binary, which is not released.
	daemon := releaseTargets(t, cfg, "outpost-daemon")
	for _, device := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		if !slices.Contains(daemon, device) {
			t.Errorf(".goreleaser.yaml does not build outpost-daemon for %s, a device platform", device)
		}
	}
	for _, cmd := range []string{"./cmd/outpost-daemon", "./cmd/outpost-shim"} {
		if !strings.Contains(string(script), "go build -o /dev/null "+cmd) {
			t.Errorf("scripts/test does not cross-compile %s", cmd)
		}
	}
}

// TestPackageConfigs checks that scripts/package/nfpm.yaml, from which
// scripts/check-package builds the .deb it checks, describes the package
// .goreleaser.yaml releases.
func TestPackageConfigs(t *testing.T) {
	root := repoRoot(t)
	var cfg goreleaserConfig
	readYAML(t, filepath.Join(root, ".goreleaser.yaml"), &cfg)
	if len(cfg.NFPMs) != 1 {
		t.Fatalf(".goreleaser.yaml has %d nfpms, want 1", len(cfg.NFPMs))
	}
	rel := cfg.NFPMs[0]
	var check nfpmConfig
	readYAML(t, filepath.Join(root, "scripts", "package", "nfpm.yaml"), &check)

	// The binaries: goreleaser puts its builds' in bindir; nfpm.yaml lists them.
	if !slices.Equal(rel.IDs, []string{"outpost", "outpost-daemon"}) {
		t.Errorf(".goreleaser.yaml's nfpms package the builds %v, want [outpost outpost-daemon] (outpost daemon executes outpost-daemon beside it)", rel.IDs)
	}
	for _, bin := range []string{"outpost", "outpost-daemon"} {
		i := slices.IndexFunc(check.Contents, func(c nfpmContent) bool { return c.Dst == filepath.Join(rel.Bindir, bin) })
		if i < 0 {
			t.Fatalf("scripts/package/nfpm.yaml does not install %s/%s", rel.Bindir, bin)
		}
		check.Contents = slices.Delete(check.Contents, i, i+1)
	}
	rel.IDs = nil
	check.PackageName, check.Name = check.Name, "" // nfpm says name, goreleaser package_name
	rel.Bindir = ""
	if !reflect.DeepEqual(rel, check) {
		t.Errorf("scripts/package/nfpm.yaml and the nfpms of .goreleaser.yaml differ:\n%+v\n%+v", check, rel)
	}

	// What the package installs is where systemd, the shells and the daemon look.
	dsts := map[string]nfpmContent{}
	for _, c := range rel.Contents {
		if c.Src != "" {
			if _, err := os.Stat(filepath.Join(root, c.Src)); err != nil && !strings.HasPrefix(c.Src, "completions/") {
				t.Errorf("%s (for %s): %v", c.Src, c.Dst, err)
			}
		}
		dsts[c.Dst] = c
	}
	for _, dst := range []string{"/usr/lib/systemd/system/outpost.service", "/etc/outpost/config.yaml",
		"/usr/share/bash-completion/completions/outpost", "/usr/share/fish/vendor_completions.d/outpost.fish"} {
		if _, ok := dsts[dst]; !ok {
			t.Errorf("the package does not install %s", dst)
		}
	}
	if c := dsts["/etc/outpost/config.yaml"]; c.Type != "config|noreplace" || c.FileInfo.Mode != 0o600 {
		t.Errorf("/etc/outpost/config.yaml: type %q, mode %o; want config|noreplace and 0600 (it holds the device key)", c.Type, c.FileInfo.Mode)
	}
}

// TestPackagedConfig checks the config file the package installs: all
// comments (the daemon runs on its defaults until one is set), and showing
// every key of the daemon under a daemon: section.
func TestPackagedConfig(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "scripts", "package", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Content) != 0 {
		t.Errorf("scripts/package/config.yaml sets keys: it must be all comments")
	}
	// Uncommented, it is a daemon: section with the daemon's keys.
	var un strings.Builder
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		in = in || strings.HasPrefix(line, "# daemon:")
		if in && !strings.HasPrefix(line, "#   #") {
			un.WriteString(strings.TrimPrefix(line, "# ") + "\n")
		}
	}
	var cfg struct {
		Daemon map[string]any `yaml:"daemon"`
	}
	if err := yaml.Unmarshal([]byte(un.String()), &cfg); err != nil {
		t.Fatalf("scripts/package/config.yaml uncommented: %v\n%s", err, un.String())
	}
	for _, key := range []string{"connection-string", "ca", "data", "runtime", "mgmt-socket", "gateway-hostname",
		"workload-dir", "broker-listen", "restart-backoff", "restart-backoff-max", "restart-reset-after", "image-gc-age", "log-level"} {
		if _, ok := cfg.Daemon[key]; !ok {
			t.Errorf("scripts/package/config.yaml does not show daemon.%s", key)
		}
	}
}
