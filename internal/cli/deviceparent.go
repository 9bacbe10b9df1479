package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hubclient"
)

type deviceSetParentOptions struct {
	Device  string
	Parent  string // "" with None
	None    bool
	IfMatch string
}

func newDeviceSetParentCmd(f *Factory, runF func(*deviceSetParentOptions) error) *cobra.Command {
	opts := &deviceSetParentOptions{}
	cmd := &cobra.Command{
		Use:   "set-parent ID (EDGE | --none)",
		Short: "Make a device the child of an edge device, or of none",
		Long: `Make device ID a child of the edge device EDGE, as IoT Hub's parent and
child relationships do: a leaf device then connects through EDGE (its
connection string names EDGE as GatewayHostName); an edge device sits under
EDGE (nested edge). A device has at most one parent, and only an IoT Edge
device can be one. --none removes the device's parent.

The relationship is the device's deviceScope (a leaf device) or parentScopes
(an edge device): the parent's scope, which 'outpost device show EDGE' prints.`,
		Example: `  outpost device set-parent sensor-1 dev-1
  outpost device set-parent sensor-1 --none`,
		Args: rangeArgs(1, 2, "ID and the parent EDGE (or --none)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], deviceOnly)
			if err != nil {
				return err
			}
			opts.Device = t.Device
			switch {
			case len(args) == 2 && opts.None:
				return flagErrorf("give the parent EDGE or --none, not both")
			case len(args) == 1 && !opts.None:
				return flagErrorf("give the parent EDGE, or --none to remove the device's parent")
			case len(args) == 2:
				p, err := parseTarget(args[1], deviceOnly)
				if err != nil {
					return err
				}
				if p.Device == t.Device {
					return flagErrorf("a device cannot be its own parent")
				}
				opts.Parent = p.Device
			}
			if runF != nil {
				return runF(opts)
			}
			return deviceSetParentRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.None, "none", false, "remove the device's parent")
	cmd.Flags().StringVar(&opts.IfMatch, "if-match", "", "change the device only if its etag is still `ETAG`")
	return cmd
}

func deviceSetParentRun(ctx context.Context, f *Factory, opts *deviceSetParentOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	scope := ""
	if opts.Parent != "" {
		if scope, err = parentScope(ctx, c, opts.Parent); err != nil {
			return fmt.Errorf("set the parent of %s: %w", opts.Device, err)
		}
	}
	d, err := c.SetParent(ctx, opts.Device, scope, opts.IfMatch)
	if err != nil {
		return fmt.Errorf("set the parent of %s: %w", opts.Device, notFoundHint(err, target{Device: opts.Device}))
	}
	if opts.Parent == "" {
		f.status("device %s has no parent", d.DeviceID)
	} else {
		f.status("device %s is a child of %s", d.DeviceID, opts.Parent)
	}
	d.Authentication = redactAuth(d.Authentication)
	return f.Print(d, func(io.Writer) error { return nil })
}

// parentScope returns the scope of the edge device id, which its children
// carry.
func parentScope(ctx context.Context, c *hubclient.Client, id string) (string, error) {
	p, err := c.GetDevice(ctx, id)
	if errors.Is(err, hubclient.ErrNotFound) {
		return "", withHint(fmt.Errorf("parent device %s not found", id), "`outpost device list` lists the hub's devices; a parent must be an IoT Edge device")
	}
	if err != nil {
		return "", fmt.Errorf("read parent device %s: %w", id, err)
	}
	if p.Capabilities != nil && !p.Capabilities.IoTEdge {
		return "", withHint(fmt.Errorf("device %s is a leaf device and cannot be a parent", id), "only an IoT Edge device can be a parent: `outpost device create EDGE` makes one")
	}
	if p.DeviceScope == "" {
		return "", fmt.Errorf("the hub returned edge device %s without a deviceScope; is it an older outpost hub? Upgrade it", id)
	}
	return p.DeviceScope, nil
}
