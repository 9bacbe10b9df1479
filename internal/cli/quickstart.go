package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/image"
)

type quickstartOptions struct {
	DataDir string
}

// quickstartResult is what quickstart prints with -o json.
type quickstartResult struct {
	DataDir          string          `json:"dataDir"`
	Hub              string          `json:"hub"`
	Device           string          `json:"device"`
	Module           string          `json:"module"`
	ConnectionString string          `json:"moduleConnectionString"`
	Twin             json.RawMessage `json:"twin"`
	Token            string          `json:"token"`
	Image            string          `json:"image,omitempty"` // the sample module's image, pushed: ref@digest
}

func newQuickstartCmd(f *Factory) *cobra.Command {
	opts := &quickstartOptions{}
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Walk through outpost on embedded defaults",
		Long: `Walk through outpost's concepts with everything embedded: no set-up, no network
beyond loopback.

It starts a hub (HTTPS, its own CA) on a free loopback port with its data in
--data (a new temporary dir by default), and through the hub's REST API, as
any IoT Hub client would: creates a device identity and a module identity with
their keys, patches the module twin's desired properties as an operator,
patches its reported properties with the module's own credentials, and prints
the twin and a SAS token for the module. Then it writes the sample module
(what 'outpost init' makes), builds its image for this machine's architecture
without a Docker daemon, and pushes it to a registry embedded on loopback. Run
it again with the same --data to pick up where it left off.`,
		Example: "  outpost quickstart\n  outpost quickstart --data ./qs -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.DataDir = f.Config().GetString("data")
			return quickstartRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().StringVar(&opts.DataDir, "data", "", "data dir (default: a new temporary dir)")
	return cmd
}

func quickstartRun(ctx context.Context, f *Factory, opts *quickstartOptions) error {
	const deviceID, moduleID = "quickstart-device", "tempsensor"
	status := func(format string, a ...any) { fmt.Fprintf(f.IO.ErrOut, "• "+format+"\n", a...) }

	dir := opts.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "outpost-quickstart-")
		if err != nil {
			return fmt.Errorf("quickstart: %w", err)
		}
		dir = d
	}

	// 1. A hub, embedded, on loopback.
	h, _, err := hub.Open(hub.Config{DataDir: filepath.Join(dir, "hub"), Listen: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("quickstart: start the hub: %w", err)
	}
	defer h.Close()
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- h.Serve(serveCtx) }()
	defer func() { stop(); <-served }()
	creds := h.Credentials()
	status("hub serving https://%s (data %s, CA %s)", h.HostName(), filepath.Join(dir, "hub"), creds.CAFile)

	op, err := hubclient.New(creds.ConnectionString, creds.CAFile)
	if err != nil {
		return err
	}

	// 2. Identities: a device, and a module on it, each with its own keys.
	dev, err := op.CreateDevice(ctx, hubapi.Device{DeviceID: deviceID})
	if errors.Is(err, hubclient.ErrConflict) {
		dev, err = op.GetDevice(ctx, deviceID)
	}
	if err != nil {
		return fmt.Errorf("quickstart: device: %w", err)
	}
	status("device identity %s (generation %s)", dev.DeviceID, dev.GenerationID)
	mod, err := op.CreateModule(ctx, hubapi.Module{DeviceID: deviceID, ModuleID: moduleID})
	if errors.Is(err, hubclient.ErrConflict) {
		mod, err = op.GetModule(ctx, deviceID, moduleID)
	}
	if err != nil {
		return fmt.Errorf("quickstart: module: %w", err)
	}
	modCS := (&identity.ConnectionString{HostName: h.HostName(), DeviceID: deviceID, ModuleID: moduleID, SharedAccessKey: mod.Authentication.SymmetricKey.PrimaryKey}).String()
	status("module identity /devices/%s/modules/%s with its own keys", deviceID, moduleID)

	// 3. The twin: the operator sets desired, the module reports.
	desired := []byte(`{"properties": {"desired": {"interval": 5, "units": "C", "alerts": {"high": 30, "low": -5}}}}`)
	t, err := op.PatchTwin(ctx, deviceID, moduleID, desired, "")
	if err != nil {
		return fmt.Errorf("quickstart: desired patch: %w", err)
	}
	status("desired patch by the operator: desired $version %d, etag %s", t.DesiredVersion(), t.ETag)

	mc, err := hubclient.New(modCS, creds.CAFile)
	if err != nil {
		return err
	}
	reported := []byte(`{"properties": {"reported": {"temperature": 21.5, "interval": 5, "firmware": "1.0.0"}}}`)
	t, err = mc.PatchTwin(ctx, deviceID, moduleID, reported, "")
	if err != nil {
		return fmt.Errorf("quickstart: reported patch: %w", err)
	}
	status("reported patch by the module, with its own SAS token: reported $version %d", t.ReportedVersion())

	token, err := identity.NewSAS(identity.ModuleResource(h.HostName(), deviceID, moduleID), mod.Authentication.SymmetricKey.PrimaryKey, f.Now().Add(time.Hour), "")
	if err != nil {
		return fmt.Errorf("quickstart: token: %w", err)
	}
	twinJSON, err := t.MarshalJSON()
	if err != nil {
		return err
	}
	res := quickstartResult{DataDir: dir, Hub: h.HostName(), Device: deviceID, Module: moduleID, ConnectionString: modCS, Twin: twinJSON, Token: token}

	// 4. The module's image: built without a daemon, pushed to a registry.
	img, err := quickstartImage(ctx, dir, moduleID, status)
	if err != nil {
		return fmt.Errorf("quickstart: image: %w", err)
	}
	res.Image = img
	return f.Print(res, func(w io.Writer) error {
		fmt.Fprintf(w, "\nModule twin %s/%s:\n", deviceID, moduleID)
		if err := writeJSON(w, json.RawMessage(twinJSON)); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nModule connection string:\n%s\n", modCS)
		fmt.Fprintf(w, "\nSAS token for the module (valid 1h):\n%s\n", token)
		if res.Image != "" {
			fmt.Fprintf(w, "\nModule image (built without a daemon, pushed to the embedded registry):\n%s\n", res.Image)
		}
		fmt.Fprintf(w, "\nData dir: %s\nServe this hub again with: outpost hub serve --data %s\n", dir, filepath.Join(dir, "hub"))
		return nil
	})
}

// quickstartImage writes the sample module into dir (unless it is there),
// builds it for linux on this machine's architecture and pushes it to a
// registry started on loopback for the purpose. It needs the Go toolchain;
// without one it says so and builds nothing.
func quickstartImage(ctx context.Context, dir, name string, status func(string, ...any)) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		status("no Go toolchain on PATH: skipping the image build (outpost build compiles Go modules with it)")
		return "", nil
	}
	modDir := filepath.Join(dir, "modules", name)
	for _, file := range []struct{ name, content string }{
		{"module.yaml", initModuleYAML}, {"go.mod", initGoMod}, {"main.go", initMainGo},
	} {
		p := filepath.Join(modDir, file.name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(modDir, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(file.content, "{{NAME}}", name)), 0o644); err != nil {
			return "", err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	reg := ln.Addr().String()
	status("registry serving http://%s (embedded, loopback only)", reg)

	m, err := image.LoadModule(modDir)
	if err != nil {
		return "", err
	}
	m.Repository = reg + "/" + name
	platform := "linux/" + goruntime.GOARCH
	if goruntime.GOARCH == "arm" {
		platform = "linux/arm/v7"
	}
	res, err := image.BuildModule(ctx, m, image.BuildOptions{Platforms: []string{platform}, CacheDir: filepath.Join(dir, "oci")})
	if err != nil {
		return "", err
	}
	status("built %s for %s in %v (outpost's own part: %v)", res.Reference, platform, res.Stats.Total.Round(time.Millisecond), res.Stats.Own().Round(time.Millisecond))
	digest, err := image.Push(ctx, res.Reference, res.Artifact(), image.PushOptions{})
	if err != nil {
		return "", err
	}
	ref := res.Reference.Context().Digest(digest.String()).String()
	status("pushed %s", ref)
	return ref, nil
}
