package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/deployment"
)

type deployOptions struct {
	Device  string
	File    string
	Resolve resolveOptions
}

// deployResult is what deploy prints with -o json.
type deployResult struct {
	Device   string   `json:"device"`
	Modules  []string `json:"modules"`
	Warnings []string `json:"warnings"`
	// Images are the modules' images as deployed: tags resolved to
	// name:tag@digest unless --no-resolve.
	Images map[string]string `json:"images"`
}

func newDeployCmd(f *Factory) *cobra.Command {
	opts := &deployOptions{}
	cmd := &cobra.Command{
		Use:   "deploy DEVICE -f MANIFEST",
		Short: "Apply a deployment manifest (native or Azure IoT Edge) to a device",
		Long: `Apply a deployment manifest to a device: the modules it runs and their initial
desired properties. The manifest is outpost's native YAML/JSON or an Azure IoT
Edge deployment ({"modulesContent": …}). It is checked here first, so errors
name the file, line and field; parts not supported yet are listed as warnings.

` + resolveHelp,
		Example: "  outpost deploy dev-1 -f deployment.yaml\n  outpost deploy dev-1 -f deployment.amd64.json   # an IoT Edge manifest\n  outpost deploy dev-1 -f deployment.yaml --no-resolve",
		Args:    exactArgs(1, "one DEVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Device = args[0]
			if opts.File == "" {
				return flagErrorf("deploy needs -f MANIFEST (a file, or - for stdin)")
			}
			return deployRun(cmd, f, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.File, "file", "f", "", "the manifest file (- for stdin)")
	addResolveFlags(cmd, &opts.Resolve)
	return cmd
}

func deployRun(cmd *cobra.Command, f *Factory, opts *deployOptions) error {
	data, name, err := f.readInput(opts.File)
	if err != nil {
		return fmt.Errorf("deploy: read manifest: %w", err)
	}
	m, _, err := deployment.Parse(data, name)
	if err != nil {
		var ve *deployment.ValidationError
		if errors.As(err, &ve) {
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("deploy: the manifest is not valid:\n%w", err), Hint: "fix the fields named above and deploy again"}
		}
		return fmt.Errorf("deploy: %w", err)
	}
	body, err := asJSON(data)
	if err != nil {
		return fmt.Errorf("deploy: %s: %w", name, err)
	}
	images := map[string]string{}
	for id, mod := range m.Modules {
		images[id] = mod.Image
	}
	resolved, err := resolveImages(cmd.Context(), f, "deploy", images, opts.Resolve)
	if err != nil {
		return err
	}
	if body, err = deployment.SetImages(body, resolved); err != nil {
		return fmt.Errorf("deploy: %s: %w", name, err)
	}
	maps.Copy(images, resolved)
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	warnings, err := c.ApplyConfiguration(cmd.Context(), opts.Device, body)
	if err != nil {
		return fmt.Errorf("deploy to %s: %w", opts.Device, err)
	}
	for _, w := range warnings {
		fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", w)
	}
	res := deployResult{Device: opts.Device, Modules: slices.Sorted(maps.Keys(m.Modules)), Warnings: warnings, Images: images}
	if res.Warnings == nil {
		res.Warnings = []string{}
	}
	return f.Print(res, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "deployed to %s: %d module%s (%s)\n", opts.Device, len(res.Modules), plural(len(res.Modules)), strings.Join(res.Modules, ", "))
		return err
	})
}

// asJSON returns a YAML or JSON document as JSON.
func asJSON(data []byte) ([]byte, error) { return deployment.ToJSON(data) }
