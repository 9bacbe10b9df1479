package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
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
the twin and a SAS token for the module. Run it again with the same --data to
pick up where it left off.`,
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
	return f.Print(res, func(w io.Writer) error {
		fmt.Fprintf(w, "\nModule twin %s/%s:\n", deviceID, moduleID)
		if err := writeJSON(w, json.RawMessage(twinJSON)); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nModule connection string:\n%s\n", modCS)
		fmt.Fprintf(w, "\nSAS token for the module (valid 1h):\n%s\n", token)
		fmt.Fprintf(w, "\nData dir: %s\nServe this hub again with: outpost hub serve --data %s\n", dir, filepath.Join(dir, "hub"))
		return nil
	})
}
