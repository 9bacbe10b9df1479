package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

type quickstartOptions struct {
	DataDir string
	HubHost string
}

// quickstartResult is what quickstart prints with -o json.
type quickstartResult struct {
	DataDir string          `json:"dataDir"`
	Device  string          `json:"device"`
	Module  string          `json:"module"`
	Twin    json.RawMessage `json:"twin"`
	Token   string          `json:"token"`
}

func newQuickstartCmd(f *Factory) *cobra.Command {
	opts := &quickstartOptions{}
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Walk through outpost on embedded defaults",
		Long: `Walk through outpost's concepts with everything embedded: no set-up, no network.

It creates a data dir with a store, a device identity and a module identity
with their keys, the module's twin, applies a desired patch (what an operator
sets) and a reported patch (what the module says back), and prints the twin
and a SAS token the module would use. Run it again with --data to pick up
where it left off.`,
		Example: "  outpost quickstart\n  outpost quickstart --data ./qs -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.DataDir = f.Config().GetString("data")
			return quickstartRun(f, opts)
		},
	}
	cmd.Flags().StringVar(&opts.DataDir, "data", "", "data dir (default: a new temporary dir)")
	return cmd
}

func quickstartRun(f *Factory, opts *quickstartOptions) error {
	const deviceID, moduleID = "quickstart-device", "tempsensor"
	if opts.HubHost == "" {
		opts.HubHost = "localhost"
	}
	status := func(format string, a ...any) { fmt.Fprintf(f.IO.ErrOut, "• "+format+"\n", a...) }

	dir := opts.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "outpost-quickstart-")
		if err != nil {
			return fmt.Errorf("quickstart: %w", err)
		}
		dir = d
	}
	st, err := store.Open(dir)
	if err != nil {
		return fmt.Errorf("quickstart: open store: %w", err)
	}
	defer st.Close()
	status("store opened in %s", dir)

	reg := registry.New(st)
	dev, err := reg.CreateDevice(registry.Device{DeviceID: deviceID})
	if errors.Is(err, registry.ErrExists) {
		dev, err = reg.GetDevice(deviceID)
	}
	if err != nil {
		return fmt.Errorf("quickstart: device: %w", err)
	}
	status("device identity %s (generation %s)", dev.DeviceID, dev.GenerationID)

	mod, err := reg.CreateModule(registry.Module{DeviceID: deviceID, ModuleID: moduleID})
	if errors.Is(err, registry.ErrExists) {
		mod, err = reg.GetModule(deviceID, moduleID)
	}
	if err != nil {
		return fmt.Errorf("quickstart: module: %w", err)
	}
	status("module identity /devices/%s/modules/%s with its own keys", deviceID, moduleID)

	now := f.Now
	desired := []byte(`{"interval": 5, "units": "C", "alerts": {"high": 30, "low": -5}}`)
	t, err := reg.UpdateTwin(deviceID, moduleID, "", func(t *twin.Twin) (bool, error) {
		return t.PatchDesired(desired, now().UTC())
	})
	if err != nil {
		return fmt.Errorf("quickstart: desired patch: %w", err)
	}
	status("desired patch applied by the operator: desired $version %d", t.DesiredVersion())

	reported := []byte(`{"temperature": 21.5, "interval": 5, "firmware": "1.0.0"}`)
	t, err = reg.UpdateTwin(deviceID, moduleID, "", func(t *twin.Twin) (bool, error) {
		return t.PatchReported(reported, now().UTC())
	})
	if err != nil {
		return fmt.Errorf("quickstart: reported patch: %w", err)
	}
	status("reported patch applied by the module: reported $version %d", t.ReportedVersion())

	resource := identity.ModuleResource(opts.HubHost, deviceID, moduleID)
	token, err := identity.NewSAS(resource, mod.Authentication.SymmetricKey.PrimaryKey, now().Add(time.Hour), "")
	if err != nil {
		return fmt.Errorf("quickstart: token: %w", err)
	}
	twinJSON, err := t.MarshalJSON()
	if err != nil {
		return err
	}
	res := quickstartResult{DataDir: dir, Device: deviceID, Module: moduleID, Twin: twinJSON, Token: token}
	return f.Print(res, func(w io.Writer) error {
		fmt.Fprintf(w, "\nModule twin %s/%s:\n", deviceID, moduleID)
		if err := writeJSON(w, json.RawMessage(twinJSON)); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nSAS token for the module (valid 1h):\n%s\n", token)
		fmt.Fprintf(w, "\nData dir: %s\n", dir)
		return nil
	})
}
