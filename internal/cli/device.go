package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
)

func newDeviceCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Create, list, show and delete device identities on the hub",
		Long: `Manage the device identities of a hub. These commands speak the hub's
service API with an operator's connection string (--hub or
OUTPOST_CONNECTION_STRING; 'outpost hub credentials' prints the owner's) and
trust the hub's CA with --ca (OUTPOST_CA).`,
	}
	cmd.AddCommand(
		newDeviceCreateCmd(f, nil),
		newDeviceListCmd(f, nil),
		newDeviceShowCmd(f, nil),
		newDeviceDeleteCmd(f, nil),
		newDeviceSetParentCmd(f, nil),
	)
	return cmd
}

// deviceWithConnectionString is what device create prints with -o json|yaml.
type deviceWithConnectionString struct {
	hubapi.Device
	ConnectionString string `json:"connectionString"`
}

type deviceCreateOptions struct {
	Device       string
	Status       string
	PrimaryKey   string
	SecondaryKey string
	Edge         bool
	Parent       string
	Gateway      string
}

func newDeviceCreateCmd(f *Factory, runF func(*deviceCreateOptions) error) *cobra.Command {
	opts := &deviceCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create ID",
		Short: "Create a device identity and print its connection string",
		Long: `Create a device identity on the hub and print the device's connection string
(HostName=…;DeviceId=…;SharedAccessKey=…) on stdout. The hub generates the keys
unless --primary-key/--secondary-key give them.

The device is an IoT Edge device (capabilities.iotEdge): it runs an outpost
daemon and takes deployments. --edge=false makes a leaf device instead, one
that connects with its own identity and takes no deployment (IoT Hub's
default for devices created through its REST API and SDKs).

--parent EDGE makes the device a child of the edge device EDGE: a leaf device
then connects through EDGE's daemon, an edge device sits under EDGE (nested
edge). --gateway-hostname HOST puts GatewayHostName=HOST in the connection
string printed, the name the device reaches its edge device by (the edge
daemon's --gateway-hostname); the hub does not know that name, so give it.

With -o json or -o yaml it prints the device as the hub returned it, keys
included, plus connectionString.`,
		Example: `  outpost device create dev-1
  outpost device create dev-2 --status disabled -o json
  outpost device create sensor-1 --edge=false
  outpost device create sensor-2 --edge=false --parent dev-1 --gateway-hostname dev-1.local
  export DEVICE_CONNECTION_STRING=$(outpost device create dev-3)`,
		Args: exactArgs(1, "one device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], deviceOnly)
			if err != nil {
				return err
			}
			opts.Device = t.Device
			switch opts.Status {
			case "enabled", "disabled":
			default:
				return flagErrorf("invalid --status %q: use enabled or disabled", opts.Status)
			}
			if err := validateKeyFlags(opts.PrimaryKey, opts.SecondaryKey); err != nil {
				return err
			}
			if opts.Parent != "" {
				if err := identity.ValidateDeviceID(opts.Parent); err != nil {
					return flagErrorf("invalid --parent: %v", err)
				}
			}
			if err := validateGatewayFlag(opts.Gateway); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return deviceCreateRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Status, "status", "enabled", "the device's `STATUS`: enabled or disabled")
	fl.BoolVar(&opts.Edge, "edge", true, "create an IoT Edge device (false: a leaf device, which takes no deployment)")
	fl.StringVar(&opts.Parent, "parent", "", "make the device a child of the edge device `EDGE`")
	addGatewayFlag(fl, &opts.Gateway)
	addKeyFlags(fl, &opts.PrimaryKey, &opts.SecondaryKey)
	return cmd
}

func deviceCreateRun(ctx context.Context, f *Factory, opts *deviceCreateOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	d := hubapi.Device{DeviceID: opts.Device, Status: opts.Status, Capabilities: &hubapi.Capabilities{IoTEdge: opts.Edge}}
	d.Authentication = sasAuth(opts.PrimaryKey, opts.SecondaryKey)
	if opts.Parent != "" {
		scope, err := parentScope(ctx, c, opts.Parent)
		if err != nil {
			return fmt.Errorf("create device %s: %w", opts.Device, err)
		}
		if opts.Edge {
			d.ParentScopes = []string{scope}
		} else {
			d.DeviceScope = scope
		}
	}
	d, err = c.CreateDevice(ctx, d)
	if errors.Is(err, hubclient.ErrConflict) {
		err = withHint(err, fmt.Sprintf("`outpost device show %s` shows it; `outpost device delete %s` deletes it", opts.Device, opts.Device))
	}
	if err != nil {
		return fmt.Errorf("create device %s: %w", opts.Device, err)
	}
	cs, err := identityConnectionString(c, target{Device: d.DeviceID}, d.Authentication)
	if err != nil {
		return fmt.Errorf("create device %s: %w", opts.Device, err)
	}
	cs = withGateway(cs, opts.Gateway)
	f.status("created device %s (%s)", d.DeviceID, d.Status)
	if opts.Parent != "" && opts.Gateway == "" && !opts.Edge {
		f.status("hint: %s connects through %s: its connection string needs GatewayHostName=<the name it reaches %s by>; --gateway-hostname adds it, as does `outpost device show %s --connection-string --gateway-hostname HOST`", d.DeviceID, opts.Parent, opts.Parent, d.DeviceID)
	}
	return printConnectionString(f, deviceWithConnectionString{Device: d, ConnectionString: cs}, cs)
}

// errShowKeysAndConnectionString is the usage error of show with both flags.
var errShowKeysAndConnectionString = flagErrorf("--show-keys and --connection-string do not go together: pass one (--connection-string prints the primary key within the string)")

// printConnectionString prints cs alone, or v (an identity with its
// connection string) with -o json|yaml.
func printConnectionString(f *Factory, v any, cs string) error {
	return f.Print(v, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, cs)
		return err
	})
}

// identityConnectionString is the connection string of a device or module
// on the hub c talks to, with its primary key.
func identityConnectionString(c *hubclient.Client, t target, auth *hubapi.Authentication) (string, error) {
	if auth == nil || auth.SymmetricKey == nil || auth.SymmetricKey.PrimaryKey == "" {
		return "", fmt.Errorf("the hub returned %s without a symmetric key", t.what())
	}
	cs := &identity.ConnectionString{
		HostName:        c.HostName(),
		DeviceID:        t.Device,
		ModuleID:        t.Module,
		SharedAccessKey: auth.SymmetricKey.PrimaryKey,
		UseInsecureHTTP: c.ConnectionString().UseInsecureHTTP,
	}
	return cs.String(), nil
}

// addGatewayFlag adds --gateway-hostname, the edge device's name in a
// leaf device's connection string.
func addGatewayFlag(fl *pflag.FlagSet, p *string) {
	fl.StringVar(p, "gateway-hostname", "", "put GatewayHostName=`HOST` in the connection string: the name the device reaches its edge device by")
}

func validateGatewayFlag(host string) error {
	if host == "" {
		return nil
	}
	cs := identity.ConnectionString{HostName: "hub", DeviceID: "d", SharedAccessKey: base64.StdEncoding.EncodeToString(make([]byte, 32)), GatewayHostName: host}
	if _, _, err := net.SplitHostPort(host); err == nil || cs.Validate() != nil {
		return flagErrorf("invalid --gateway-hostname %q: a host name or address, without a port (leaf devices dial port 8883)", host)
	}
	return nil
}

// withGateway adds GatewayHostName=host to the connection string cs.
func withGateway(cs, host string) string {
	c, err := identity.ParseConnectionString(cs)
	if host == "" || err != nil {
		return cs
	}
	c.GatewayHostName = host
	return c.String()
}

type deviceListOptions struct{}

func newDeviceListCmd(f *Factory, runF func(*deviceListOptions) error) *cobra.Command {
	opts := &deviceListOptions{}
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the hub's devices",
		Long: `List the hub's devices: id, status, connection state, last activity and parent.
-o json|yaml prints the devices as the hub returned them, keys redacted.`,
		Example: "  outpost device list\n  outpost device list -o json | jq -r '.[].deviceId'",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return deviceListRun(cmd.Context(), f, opts)
		},
	}
}

func deviceListRun(ctx context.Context, f *Factory, _ *deviceListOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	devices, err := c.ListDevices(ctx)
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	if devices == nil {
		devices = []hubapi.Device{}
	}
	for i := range devices {
		devices[i].Authentication = redactAuth(devices[i].Authentication)
	}
	if len(devices) == 0 && f.outputFormat() == "table" {
		f.status("no devices: `outpost device create ID` creates one")
		return nil
	}
	now := f.Now()
	return f.Print(devices, func(w io.Writer) error {
		t := NewTable("ID", "STATUS", "CONNECTION", "LAST ACTIVITY", "PARENT")
		for _, d := range devices {
			t.Row(d.DeviceID, f.IO.ColorStatus(d.Status), f.IO.ColorStatus(orDash(d.ConnectionState)), since(now, d.LastActivityTime), orDash(d.ParentID()))
		}
		return t.Write(w)
	})
}

type deviceShowOptions struct {
	Device           string
	ShowKeys         bool
	ConnectionString bool
	Gateway          string
}

func newDeviceShowCmd(f *Factory, runF func(*deviceShowOptions) error) *cobra.Command {
	opts := &deviceShowOptions{}
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a device identity",
		Long: `Show a device identity. Its keys are redacted in every output format unless
--show-keys is given; -o json|yaml otherwise print the device as the hub
returned it.

--connection-string prints the device's connection string again, as
'outpost device create' did (with -o json|yaml: the device, keys included,
plus connectionString); with --gateway-hostname HOST it carries
GatewayHostName=HOST, for a leaf device that connects through its edge device.`,
		Example: `  outpost device show dev-1
  outpost device show dev-1 --show-keys -o json
  outpost device show sensor-1 --connection-string --gateway-hostname dev-1.local
  outpost daemon --connection-string "$(outpost device show dev-1 --connection-string)" …`,
		Args: exactArgs(1, "one device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], deviceOnly)
			if err != nil {
				return err
			}
			opts.Device = t.Device
			if opts.ShowKeys && opts.ConnectionString {
				return errShowKeysAndConnectionString
			}
			if opts.Gateway != "" && !opts.ConnectionString {
				return flagErrorf("--gateway-hostname goes with --connection-string (it is a part of the connection string)")
			}
			if err := validateGatewayFlag(opts.Gateway); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return deviceShowRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.ShowKeys, "show-keys", false, "show the device's keys")
	cmd.Flags().BoolVar(&opts.ConnectionString, "connection-string", false, "print the device's connection string (with its primary key)")
	addGatewayFlag(cmd.Flags(), &opts.Gateway)
	return cmd
}

func deviceShowRun(ctx context.Context, f *Factory, opts *deviceShowOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	tg := target{Device: opts.Device}
	d, err := c.GetDevice(ctx, opts.Device)
	if err != nil {
		return fmt.Errorf("show device %s: %w", opts.Device, notFoundHint(err, tg))
	}
	if opts.ConnectionString {
		cs, err := identityConnectionString(c, tg, d.Authentication)
		if err != nil {
			return fmt.Errorf("show device %s: %w", opts.Device, err)
		}
		cs = withGateway(cs, opts.Gateway)
		return printConnectionString(f, deviceWithConnectionString{Device: d, ConnectionString: cs}, cs)
	}
	if !opts.ShowKeys {
		d.Authentication = redactAuth(d.Authentication)
	}
	now := f.Now()
	return f.Print(d, func(w io.Writer) error {
		kv := newKV()
		kv.add("device", d.DeviceID)
		kv.add("status", d.Status+reason(d.StatusReason))
		kv.add("connection", orDash(d.ConnectionState)+" since "+stamp(now, d.ConnectionStateUpdatedTime))
		kv.add("last activity", stamp(now, d.LastActivityTime))
		kv.add("generation id", d.GenerationID)
		kv.add("etag", d.ETag)
		if d.Capabilities != nil {
			kv.add("iot edge", fmt.Sprint(d.Capabilities.IoTEdge))
		}
		if d.DeviceScope != "" {
			kv.add("device scope", d.DeviceScope)
		}
		kv.add("parent", orDash(d.ParentID()))
		addAuth(kv, d.Authentication)
		return kv.write(w)
	})
}

type deviceDeleteOptions struct {
	Device  string
	IfMatch string
}

func newDeviceDeleteCmd(f *Factory, runF func(*deviceDeleteOptions) error) *cobra.Command {
	opts := &deviceDeleteOptions{}
	cmd := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "Delete a device identity with its modules and twins",
		Long: `Delete a device identity, with its module identities and all of their twins.
With --if-match the hub deletes it only if its etag is still ETAG (see
'outpost device show'); otherwise it fails with exit code 4. With -o json|yaml
it prints {"action": "deleted", "deviceId": ID}.`,
		Example: "  outpost device delete dev-1\n  outpost device delete dev-1 --if-match \"$(outpost device show dev-1 -o json | jq -r .etag)\"",
		Args:    exactArgs(1, "one device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], deviceOnly)
			if err != nil {
				return err
			}
			opts.Device = t.Device
			if runF != nil {
				return runF(opts)
			}
			return deviceDeleteRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().StringVar(&opts.IfMatch, "if-match", "", "delete only if the device's etag is still `ETAG`")
	return cmd
}

func deviceDeleteRun(ctx context.Context, f *Factory, opts *deviceDeleteOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	if err := c.DeleteDevice(ctx, opts.Device, opts.IfMatch); err != nil {
		return fmt.Errorf("delete device %s: %w", opts.Device, notFoundHint(err, target{Device: opts.Device}))
	}
	return f.done(doneResult{Action: "deleted", DeviceID: opts.Device}, "deleted device %s with its modules and twins", opts.Device)
}

// redactAuth returns a copy of auth with its keys replaced by <redacted>.
func redactAuth(auth *hubapi.Authentication) *hubapi.Authentication {
	if auth == nil || auth.SymmetricKey == nil {
		return auth
	}
	out := *auth
	k := *auth.SymmetricKey
	for _, p := range []*string{&k.PrimaryKey, &k.SecondaryKey} {
		if *p != "" {
			*p = redacted
		}
	}
	out.SymmetricKey = &k
	return &out
}

func addAuth(kv *kvList, auth *hubapi.Authentication) {
	if auth == nil {
		kv.add("authentication", "-")
		return
	}
	kv.add("authentication", auth.Type)
	if k := auth.SymmetricKey; k != nil {
		kv.add("primary key", k.PrimaryKey)
		kv.add("secondary key", k.SecondaryKey)
	}
}

func reason(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// kvList prints "key: value" lines with the values aligned.
type kvList struct{ keys, values []string }

func newKV() *kvList { return &kvList{} }

func (l *kvList) add(k, v string) { l.keys, l.values = append(l.keys, k), append(l.values, v) }

func (l *kvList) write(w io.Writer) error {
	width := 0
	for _, k := range l.keys {
		width = max(width, len(k))
	}
	for i, k := range l.keys {
		if _, err := fmt.Fprintf(w, "%-*s  %s\n", width+1, k+":", l.values[i]); err != nil {
			return err
		}
	}
	return nil
}
