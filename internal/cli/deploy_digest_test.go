package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/image/registrytest"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// headDigest asks the registry which digest ref's tag names now.
func headDigest(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest.String()
}

// TestDeployByDigest deploys a tag, pushes another image under the same tag
// and deploys the same manifest again (an IoT Edge one the second time): the
// device runs the new digest. Then --no-resolve, an image pinned already,
// and tags that cannot be resolved.
func TestDeployByDigest(t *testing.T) {
	f := agenttest.New(t, "process")
	isolateConfig(t)
	t.Setenv("OUTPOST_CONNECTION_STRING", f.Hub.ConnectionString)
	t.Setenv("OUTPOST_CA", f.Hub.CAFile)
	sock := startDaemon(t, f)
	dir := t.TempDir()
	native := filepath.Join(dir, "deployment.yaml")
	os.WriteFile(native, []byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: "+f.Image+"\n"), 0o644)
	edge := filepath.Join(dir, "deployment.json")
	os.WriteFile(edge, []byte(`{"modulesContent": {"$edgeAgent": {"properties.desired": {
		"schemaVersion": "1.1", "runtime": {"type": "docker", "settings": {}},
		"systemModules": {"edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
			"edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}},
		"modules": {"web": {"type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0",
			"settings": {"image": "`+f.Image+`", "createOptions": "{}"}}}}},
		"$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {}, "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}}`), 0o644)

	// deploy checks what deploy printed and waits for the device to run
	// the image of that digest.
	deploy := func(file, wantImage, wantDigest string, args ...string) (stderr string) {
		t.Helper()
		code, out, errOut := run(t, append([]string{"deploy", "dev", "-f", file, "-o", "json"}, args...)...)
		var res deployResult
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res.Images["web"] != wantImage {
			t.Fatalf("deploy %s %v: %d %v, want image %s\n%s%s", file, args, code, err, wantImage, out, errOut)
		}
		agenttest.Eventually(t, 30*time.Second, "web running "+wantDigest, func() bool {
			code, out, _ := run(t, "list", "--mgmt-socket", sock, "-o", "json")
			var mods []mgmtclient.Module
			return code == 0 && json.Unmarshal([]byte(out), &mods) == nil && len(mods) == 1 &&
				mods[0].Status == "running" && mods[0].Image == wantImage && mods[0].ImageDigest == wantDigest
		})
		agenttest.Eventually(t, 30*time.Second, "$edgeAgent reporting web's image "+wantImage+" and its digest", func() bool {
			rep := f.ModuleReported(t, "web")
			settings, _ := rep["settings"].(map[string]any)
			return settings["image"] == wantImage && settings["imageHash"] == wantDigest && rep["imageDigest"] == wantDigest
		})
		return errOut
	}

	d1 := headDigest(t, f.Image)
	if errOut := deploy(native, f.Image+"@"+d1, d1); !strings.Contains(errOut, "• web: "+f.Image+"@"+d1[:len("sha256:")+12]) {
		t.Errorf("deploy does not say what it resolved: %q", errOut)
	}
	code, out, _ := run(t, "list", "--mgmt-socket", sock)
	if row := tableRow(out, "web"); code != 0 || len(row) < 3 || row[2] != f.Image+"@"+d1[:len("sha256:")+12] {
		t.Errorf("list shows the image as %q, want the tag and the short digest:\n%s", row, out)
	}

	// The same tag, another image: deploying the same manifest again
	// re-creates the module on the new digest, its version unchanged.
	f.PushImage(t, f.Image, "v2")
	d2 := headDigest(t, f.Image)
	if d2 == d1 {
		t.Fatal("the second image has the digest of the first")
	}
	deploy(edge, f.Image+"@"+d2, d2)

	// --no-resolve deploys the tag as written; the device pulls the tag.
	f.PushImage(t, f.Image, "v3")
	d3 := headDigest(t, f.Image)
	if errOut := deploy(native, f.Image, d3, "--no-resolve"); strings.Contains(errOut, "•") {
		t.Errorf("deploy --no-resolve resolved: %q", errOut)
	}
	code, out, _ = run(t, "list", "--mgmt-socket", sock)
	if row := strings.Join(tableRow(out, "web"), " "); code != 0 || !strings.Contains(row, f.Image+" ("+d3[:len("sha256:")+12]+")") {
		t.Errorf("list shows a tag deployed as it is as %q, want the running digest beside it:\n%s", row, out)
	}

	// An image pinned already is left alone, the registry not asked.
	pinned := filepath.Join(dir, "pinned.yaml")
	os.WriteFile(pinned, []byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: "+f.Image+"@"+d1+"\n"), 0o644)
	if errOut := deploy(pinned, f.Image+"@"+d1, d1); strings.Contains(errOut, "•") {
		t.Errorf("deploy of a pinned image resolved it: %q", errOut)
	}

	// Tags that cannot be resolved: the module, the image, the registry's
	// answer and --no-resolve are named, and nothing is deployed.
	missing := filepath.Join(dir, "missing.yaml")
	os.WriteFile(missing, []byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: "+f.Registry+"/mod:nosuch\n"), 0o644)
	code, _, errOut := run(t, "deploy", "dev", "-f", missing)
	for _, want := range []string{"module web", f.Registry + "/mod:nosuch", "MANIFEST_UNKNOWN", "--no-resolve"} {
		if code != ExitNotFound || !strings.Contains(errOut, want) {
			t.Errorf("deploy of a missing tag: exit %d, want %d and %q in:\n%s", code, ExitNotFound, want, errOut)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	os.WriteFile(missing, []byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: "+down+"/mod:1\n"), 0o644)
	code, _, errOut = run(t, "deploy", "dev", "-f", missing)
	for _, want := range []string{"module web", down + "/mod:1", "unreachable", "--no-resolve"} {
		if code != ExitUnavailable || !strings.Contains(errOut, want) {
			t.Errorf("deploy with a registry down: exit %d, want %d and %q in:\n%s", code, ExitUnavailable, want, errOut)
		}
	}
	// A manifest on stdin (-f -) is read, and named "stdin" in what is wrong with it.
	code, _, errOut = runIn(t, "schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: "+f.Registry+"/mod:nosuch\n", "deploy", "dev", "-f", "-")
	if code != ExitNotFound || !strings.Contains(errOut, "module web") || !strings.Contains(errOut, f.Registry+"/mod:nosuch") {
		t.Errorf("deploy -f - of a missing tag: exit %d, want %d, naming the module and image:\n%s", code, ExitNotFound, errOut)
	}
	code, _, errOut = runIn(t, "schemaVersion: \"1.0\"\nmodules:\n  web: {}\n", "deploy", "dev", "-f", "-")
	if code != ExitFailure || !strings.Contains(errOut, "stdin") {
		t.Errorf("deploy -f - of an invalid manifest: exit %d, want %d, naming stdin:\n%s", code, ExitFailure, errOut)
	}
	if m := f.ModuleReported(t, "web"); m["settings"].(map[string]any)["image"] != f.Image+"@"+d1 {
		t.Errorf("a failed resolution deployed something: %v", m)
	}
}

// TestDeploymentCreateByDigest creates an automatic deployment from a
// native manifest: the hub gets the image's tag with its digest; a tag the
// registry lacks is refused before anything is created.
func TestDeploymentCreateByDigest(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	reg := registrytest.InProcess(t)
	ref := reg.Ref("web:1")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	digest := headDigest(t, ref)
	dir := t.TempDir()
	manifest := filepath.Join(dir, "deployment.yaml")
	os.WriteFile(manifest, []byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: "+ref+"\n"), 0o644)
	if code, _, errOut := run(t, "deployment", "create", "prod", "-f", manifest, "--target-condition", "*"); code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	cfg, err := h.Client(t).GetConfiguration(t.Context(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	var mc struct {
		Agent struct {
			Desired struct {
				Modules map[string]struct {
					Settings map[string]string `json:"settings"`
				} `json:"modules"`
			} `json:"properties.desired"`
		} `json:"$edgeAgent"`
	}
	if err := json.Unmarshal(cfg.Content.ModulesContent, &mc); err != nil || mc.Agent.Desired.Modules["web"].Settings["image"] != ref+"@"+digest {
		t.Errorf("the deployment's image: %v, want %s@%s\n%s", err, ref, digest, cfg.Content.ModulesContent)
	}

	os.WriteFile(manifest, []byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: "+reg.Ref("web:2")+"\n"), 0o644)
	code, _, errOut := run(t, "deployment", "create", "missing", "-f", manifest, "--target-condition", "*")
	if code != ExitNotFound || !strings.Contains(errOut, "module web") || !strings.Contains(errOut, "--no-resolve") {
		t.Errorf("create with a missing tag: %d %s", code, errOut)
	}
	if _, err := h.Client(t).GetConfiguration(t.Context(), "missing"); err == nil {
		t.Error("a deployment whose tag could not be resolved was created")
	}
}
