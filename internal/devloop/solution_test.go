package devloop

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIgnored(t *testing.T) {
	for rel, want := range map[string]bool{
		"modules/a/main.go":            false,
		"deployment.yaml":              false,
		"modules/a/sub/x.go":           false,
		".git/index":                   true,
		".outpost/hub/store/x.json":    true,
		"modules/a/.main.go.swp":       true,
		"modules/a/main.go~":           true,
		"modules/a/.#main.go":          true,
		"modules/a/#main.go#":          true,
		"modules/a/4913":               true,
		"modules/a/main.go.tmp.123":    true,
		"modules/a/node_modules/x.js":  true,
		"modules/a/.goutputstream-XYZ": true,
	} {
		if got := ignored(rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSolutionManifest: deployment modules are matched to module.yaml by
// image repository, else by id; others keep their image.
func TestSolutionManifest(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "modules", "pump", "module.yaml"), "name: pump\nrepository: localhost:5000/pump\nbuild:\n  go: .\n")
	writeFile(t, filepath.Join(dir, "modules", "fan", "module.yaml"), "name: fan\nrepository: localhost:5000/fans/fan\nbuild:\n  go: .\n")
	writeFile(t, filepath.Join(dir, DeploymentFile), `schemaVersion: "1.0"
modules:
  pump-a: {image: "localhost:5000/pump:1.0"}
  fan: {image: "example.com/other/fan:2"}
  sensor: {image: "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.0"}
`)
	s, err := loadSolution(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.modules) != 2 || s.modules[0].name != "fan" || s.modules[1].name != "pump" {
		t.Fatalf("modules: %+v", s.modules)
	}
	if m := s.moduleOf(filepath.Join(dir, "modules", "pump", "main.go")); m == nil || m.name != "pump" {
		t.Errorf("moduleOf(pump/main.go) = %v", m)
	}
	if m := s.moduleOf(filepath.Join(dir, "modules", "pumpx", "main.go")); m != nil {
		t.Errorf("moduleOf(pumpx/main.go) = %v, want none", m.name)
	}
	doc, ids, err := s.manifest(map[string]string{"pump": "127.0.0.1:1/pump:1.0@sha256:aa", "fan": "127.0.0.1:1/fans/fan:latest@sha256:bb"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids["pump"], ",") != "pump-a" || strings.Join(ids["fan"], ",") != "fan" || len(ids) != 2 {
		t.Errorf("ids %v", ids)
	}
	var m struct {
		Modules map[string]struct{ Image string } `json:"modules"`
	}
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		"pump-a": "127.0.0.1:1/pump:1.0@sha256:aa",        // by repository
		"fan":    "127.0.0.1:1/fans/fan:latest@sha256:bb", // by id
		"sensor": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.0",
	} {
		if got := m.Modules[id].Image; got != want {
			t.Errorf("%s: image %q, want %q", id, got, want)
		}
	}

	// A deployment that does not parse says where.
	writeFile(t, filepath.Join(dir, DeploymentFile), "schemaVersion: \"1.0\"\nmodules:\n  pump-a: {image: 5}\n")
	if _, _, err := s.manifest(nil); err == nil || !strings.Contains(err.Error(), "pump-a") {
		t.Errorf("bad deployment: %v", err)
	}
}

func TestLoadSolutionErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadSolution(dir); err == nil || !strings.Contains(err.Error(), "outpost init") {
		t.Errorf("empty dir: %v", err)
	}
	writeFile(t, filepath.Join(dir, DeploymentFile), "schemaVersion: \"1.0\"\nmodules: {}\n")
	if _, err := loadSolution(dir); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Errorf("no modules: %v", err)
	}
}

func TestPrinter(t *testing.T) {
	var out, status bytes.Buffer
	p := newPrinter(&out, &status, false, []string{"a", "long"})
	p.line("a", "hello")
	p.line("long", "world")
	if want := "a    | hello\nlong | world\n"; out.String() != want {
		t.Errorf("plain: %q, want %q", out.String(), want)
	}
	out.Reset()
	p = newPrinter(&out, &status, true, []string{"a", "b"})
	p.line("b", "x")
	if want := "\x1b[33mb |\x1b[0m x\n"; out.String() != want {
		t.Errorf("colour: %q, want %q", out.String(), want)
	}
}
