package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/image"
)

// TestInitMatchesFixture keeps init's scaffold and the reference sample in
// fixtures/modules/tempsensor the same.
func TestInitMatchesFixture(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	dir := t.TempDir()
	if code, _, errOut := run(t, "init", dir); code != 0 {
		t.Fatalf("init: %d %s", code, errOut)
	}
	fixture := filepath.Join("..", "..", "fixtures", "modules", "tempsensor")
	for _, name := range []string{"module.yaml", "go.mod", "go.sum", "main.go"} {
		want, err := os.ReadFile(filepath.Join(fixture, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "modules", "tempsensor", name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: init makes something else than %s; keep init.go's templates and the fixture the same", name, filepath.Join(fixture, name))
		}
	}
}

func TestInit(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	dir := filepath.Join(t.TempDir(), "edge")
	code, out, errOut := run(t, "init", dir, "--name", "pump", "-o", "json")
	if code != 0 {
		t.Fatalf("init: %d %s", code, errOut)
	}
	var res initResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Module != "pump" || len(res.Files) != 6 {
		t.Fatalf("init -o json: %q %v", out, err)
	}
	if !strings.Contains(errOut, "Next: outpost build") {
		t.Errorf("no next step on stderr: %q", errOut)
	}

	m, err := image.LoadModule(filepath.Join(dir, "modules", "pump"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "pump" || m.Repository != "localhost:5000/pump" || m.Build.Kind != image.KindGo ||
		strings.Join(m.Platforms, ",") != "linux/amd64,linux/arm64,linux/arm/v7" {
		t.Errorf("module.yaml: %+v", m)
	}
	if gomod, _ := os.ReadFile(filepath.Join(dir, "modules", "pump", "go.mod")); !strings.HasPrefix(string(gomod), "module pump\n\ngo 1.26.0\n") {
		t.Errorf("go.mod: %q", gomod)
	}
	data, err := os.ReadFile(filepath.Join(dir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	man, warnings, err := deployment.Parse(data, "deployment.yaml")
	if err != nil || len(warnings) > 0 {
		t.Fatalf("deployment.yaml: %v %v", err, warnings)
	}
	if mod, ok := man.Modules["pump"]; !ok || mod.Image != "localhost:5000/pump:1.0" || mod.Env["INTERVAL"] != "5" {
		t.Errorf("deployment: %+v", man.Modules)
	}

	// A second init writes nothing over what is there.
	before, _ := os.ReadFile(filepath.Join(dir, "modules", "pump", "main.go"))
	os.WriteFile(filepath.Join(dir, "modules", "pump", "main.go"), []byte("package main // mine"), 0o644)
	code, _, errOut = run(t, "init", dir, "--name", "pump")
	if code != ExitFailure || !strings.Contains(errOut, "already exist") || !strings.Contains(errOut, "main.go") {
		t.Fatalf("second init: %d %q", code, errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "modules", "pump", "main.go")); string(got) != "package main // mine" || len(before) == 0 {
		t.Fatal("init overwrote a file")
	}
	if _, err := os.Stat(filepath.Join(dir, "modules", "pump2")); !os.IsNotExist(err) {
		t.Fatal("stray files")
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"init", dir, "--name", "Pump"}, `--name "Pump"`},
		{[]string{"init", dir, "--name", "a/b"}, `--name "a/b"`},
		{[]string{"init", "a", "b"}, "takes at most one DIR"},
	} {
		if code, _, errOut := run(t, tc.args...); code != ExitUsage || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%q: %d %q", tc.args, code, errOut)
		}
	}
}
