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

// TestInitRegistryAndAddModule: --registry names the images' registry in
// module.yaml and deployment.yaml; init into a solution adds a module to its
// deployment.yaml, keeping the user's comments and order, on the registry
// the solution uses.
func TestInitRegistryAndAddModule(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	dir := filepath.Join(t.TempDir(), "edge")
	code, _, errOut := run(t, "init", dir, "--registry", "127.0.0.1:5077")
	if code != 0 || !strings.Contains(errOut, "registry on 127.0.0.1:5077") {
		t.Fatalf("init --registry: %d %s", code, errOut)
	}
	m, err := image.LoadModule(filepath.Join(dir, "modules", "tempsensor"))
	if err != nil || m.Repository != "127.0.0.1:5077/tempsensor" {
		t.Fatalf("module.yaml: %+v %v", m, err)
	}

	// The user's own touches to the deployment.
	depPath := filepath.Join(dir, "deployment.yaml")
	dep, _ := os.ReadFile(depPath)
	mine := "# the north site's fleet\n" + strings.Replace(string(dep), "    env:\n", "    env:              # readings\n      SITE: north\n", 1)
	if err := os.WriteFile(depPath, []byte(mine), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chmod(depPath, 0o640)

	code, out, errOut := run(t, "init", dir, "--name", "pump", "-o", "json")
	if code != 0 {
		t.Fatalf("init --name pump into the solution: %d %s", code, errOut)
	}
	var res initResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Files) != 5 || len(res.Updated) != 1 || res.Updated[0] != depPath {
		t.Errorf("init -o json: %q %v", out, err)
	}
	got, _ := os.ReadFile(depPath)
	man, warnings, err := deployment.Parse(got, "deployment.yaml")
	if err != nil || len(warnings) > 0 {
		t.Fatalf("deployment.yaml after adding pump: %v %v\n%s", err, warnings, got)
	}
	if man.Modules["pump"].Image != "127.0.0.1:5077/pump:1.0" || man.Modules["tempsensor"].Env["SITE"] != "north" || man.Modules["pump"].Env["INTERVAL"] != "5" {
		t.Errorf("modules after adding pump: %+v\n%s", man.Modules, got)
	}
	s := string(got)
	for _, want := range []string{"# the north site's fleet", "# readings", "# change it to re-create the module"} {
		if !strings.Contains(s, want) {
			t.Errorf("comment %q lost:\n%s", want, s)
		}
	}
	if strings.Index(s, "tempsensor:") > strings.Index(s, "pump:") || strings.Index(s, "schemaVersion") > strings.Index(s, "modules:") {
		t.Errorf("order changed:\n%s", s)
	}
	if fi, _ := os.Stat(depPath); fi.Mode().Perm() != 0o640 {
		t.Errorf("deployment.yaml's mode is %v now", fi.Mode().Perm())
	}
	if m, err := image.LoadModule(filepath.Join(dir, "modules", "pump")); err != nil || m.Repository != "127.0.0.1:5077/pump" {
		t.Errorf("pump's module.yaml: %+v %v", m, err)
	}

	// A module the deployment has already: refused, nothing written.
	before := string(got)
	code, _, errOut = run(t, "init", dir, "--name", "tempsensor")
	if code != ExitFailure || !strings.Contains(errOut, "already") {
		t.Errorf("init tempsensor again: %d %s", code, errOut)
	}
	os.RemoveAll(filepath.Join(dir, "modules", "pump"))
	code, _, errOut = run(t, "init", dir, "--name", "pump")
	if code != ExitFailure || !strings.Contains(errOut, "has a module pump already") {
		t.Errorf("init pump, in the deployment but not on disk: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "modules", "pump")); !os.IsNotExist(err) {
		t.Error("init wrote the module though the deployment has it")
	}
	if after, _ := os.ReadFile(depPath); string(after) != before {
		t.Error("a refused init changed deployment.yaml")
	}

	// An Azure IoT Edge manifest is not edited.
	azure := t.TempDir()
	os.WriteFile(filepath.Join(azure, "deployment.yaml"), []byte(`{"modulesContent": {"$edgeAgent": {}}}`), 0o644)
	if code, _, errOut := run(t, "init", azure, "--name", "pump"); code != ExitFailure || !strings.Contains(errOut, "Azure IoT Edge manifest") {
		t.Errorf("init into an Azure manifest's solution: %d %s", code, errOut)
	}

	for _, reg := range []string{"http://localhost:5000", "localhost:5000/team", "local host"} {
		if code, _, errOut := run(t, "init", t.TempDir(), "--registry", reg); code != ExitUsage || !strings.Contains(errOut, "--registry") {
			t.Errorf("--registry %q: %d %s", reg, code, errOut)
		}
	}
}
