package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

func newModuleCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "module",
		Short: "Create, list, show and delete module identities on the hub",
		Long: `Manage module identities: /devices/{deviceId}/modules/{moduleId}, each with
its own keys. Modules are named DEVICE/MODULE. Like 'outpost device', these
commands need an operator's connection string (--hub) and the hub's CA (--ca).`,
	}
	cmd.AddCommand(
		newModuleCreateCmd(f, nil),
		newModuleListCmd(f, nil),
		newModuleShowCmd(f, nil),
		newModuleDeleteCmd(f, nil),
	)
	return cmd
}

// moduleWithConnectionString is what module create prints with -o json|yaml.
type moduleWithConnectionString struct {
	hubapi.Module
	ConnectionString string `json:"connectionString"`
}

type moduleCreateOptions struct {
	Target       target
	ManagedBy    string
	PrimaryKey   string
	SecondaryKey string
}

func newModuleCreateCmd(f *Factory, runF func(*moduleCreateOptions) error) *cobra.Command {
	opts := &moduleCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create DEVICE/MODULE",
		Short: "Create a module identity and print its connection string",
		Long: `Create a module identity on an existing device and print the module's
connection string (HostName=…;DeviceId=…;ModuleId=…;SharedAccessKey=…) on
stdout. The hub generates the keys unless --primary-key/--secondary-key give
them. Ids starting with '$' are for system modules ($edgeAgent, $edgeHub).

With -o json or -o yaml it prints the module as the hub returned it, keys
included, plus connectionString.`,
		Example: `  outpost module create dev-1/tempsensor
  outpost module create dev-1/filter -o json`,
		Args: exactArgs(1, "one DEVICE/MODULE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleRequired)
			if err != nil {
				return err
			}
			opts.Target = t
			if err := validateKeyFlags(opts.PrimaryKey, opts.SecondaryKey); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return moduleCreateRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.ManagedBy, "managed-by", "", "`WHO` manages the module (IoT Hub's managedBy, e.g. iotedge)")
	addKeyFlags(fl, &opts.PrimaryKey, &opts.SecondaryKey)
	return cmd
}

func moduleCreateRun(ctx context.Context, f *Factory, opts *moduleCreateOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	t := opts.Target
	m := hubapi.Module{DeviceID: t.Device, ModuleID: t.Module, ManagedBy: opts.ManagedBy}
	m.Authentication = sasAuth(opts.PrimaryKey, opts.SecondaryKey)
	m, err = c.CreateModule(ctx, m)
	switch {
	case errors.Is(err, hubclient.ErrConflict):
		err = withHint(err, fmt.Sprintf("`outpost module show %s` shows it; `outpost module delete %s` deletes it", t, t))
	case errors.Is(err, hubclient.ErrNotFound):
		err = withHint(err, fmt.Sprintf("create the device first: `outpost device create %s`", t.Device))
	}
	if err != nil {
		return fmt.Errorf("create module %s: %w", t, err)
	}
	cs, err := identityConnectionString(c, t, m.Authentication)
	if err != nil {
		return fmt.Errorf("create module %s: %w", t, err)
	}
	f.status("created module %s", t)
	return printConnectionString(f, moduleWithConnectionString{Module: m, ConnectionString: cs}, cs)
}

type moduleListOptions struct {
	Device string
}

func newModuleListCmd(f *Factory, runF func(*moduleListOptions) error) *cobra.Command {
	opts := &moduleListOptions{}
	return &cobra.Command{
		Use:     "list DEVICE",
		Aliases: []string{"ls"},
		Short:   "List a device's modules",
		Long: `List the module identities of a device: id, connection state, last activity
and who manages it. -o json|yaml prints the modules as the hub returned them,
keys redacted.`,
		Example: "  outpost module list dev-1\n  outpost module list dev-1 -o json | jq -r '.[].moduleId'",
		Args:    exactArgs(1, "one DEVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], deviceOnly)
			if err != nil {
				return err
			}
			opts.Device = t.Device
			if runF != nil {
				return runF(opts)
			}
			return moduleListRun(cmd.Context(), f, opts)
		},
	}
}

func moduleListRun(ctx context.Context, f *Factory, opts *moduleListOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	mods, err := c.ListModules(ctx, opts.Device)
	if err != nil {
		return fmt.Errorf("list modules of %s: %w", opts.Device, notFoundHint(err, target{Device: opts.Device}))
	}
	if mods == nil {
		mods = []hubapi.Module{}
	}
	for i := range mods {
		mods[i].Authentication = redactAuth(mods[i].Authentication)
	}
	if len(mods) == 0 && f.outputFormat() == "table" {
		f.status("device %s has no modules: `outpost module create %s/MODULE` creates one", opts.Device, opts.Device)
		return nil
	}
	now := f.Now()
	return f.Print(mods, func(w io.Writer) error {
		t := NewTable("MODULE", "CONNECTION", "LAST ACTIVITY", "MANAGED BY")
		for _, m := range mods {
			t.Row(m.ModuleID, f.IO.ColorStatus(orDash(m.ConnectionState)), since(now, m.LastActivityTime), orDash(m.ManagedBy))
		}
		return t.Write(w)
	})
}

type moduleShowOptions struct {
	Target           target
	ShowKeys         bool
	ConnectionString bool
}

func newModuleShowCmd(f *Factory, runF func(*moduleShowOptions) error) *cobra.Command {
	opts := &moduleShowOptions{}
	cmd := &cobra.Command{
		Use:   "show DEVICE/MODULE",
		Short: "Show a module identity",
		Long: `Show a module identity. Its keys are redacted in every output format unless
--show-keys is given; -o json|yaml otherwise print the module as the hub
returned it.

--connection-string prints the module's connection string again, as
'outpost module create' did (with -o json|yaml: the module, keys included,
plus connectionString).`,
		Example: `  outpost module show dev-1/tempsensor
  outpost module show 'dev-1/$edgeAgent' --show-keys -o json
  outpost module show dev-1/tempsensor --connection-string`,
		Args: exactArgs(1, "one DEVICE/MODULE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleRequired)
			if err != nil {
				return err
			}
			opts.Target = t
			if opts.ShowKeys && opts.ConnectionString {
				return errShowKeysAndConnectionString
			}
			if runF != nil {
				return runF(opts)
			}
			return moduleShowRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.ShowKeys, "show-keys", false, "show the module's keys")
	cmd.Flags().BoolVar(&opts.ConnectionString, "connection-string", false, "print the module's connection string (with its primary key)")
	return cmd
}

func moduleShowRun(ctx context.Context, f *Factory, opts *moduleShowOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	t := opts.Target
	m, err := c.GetModule(ctx, t.Device, t.Module)
	if err != nil {
		return fmt.Errorf("show module %s: %w", t, notFoundHint(err, t))
	}
	if opts.ConnectionString {
		cs, err := identityConnectionString(c, t, m.Authentication)
		if err != nil {
			return fmt.Errorf("show module %s: %w", t, err)
		}
		return printConnectionString(f, moduleWithConnectionString{Module: m, ConnectionString: cs}, cs)
	}
	if !opts.ShowKeys {
		m.Authentication = redactAuth(m.Authentication)
	}
	now := f.Now()
	return f.Print(m, func(w io.Writer) error {
		kv := newKV()
		kv.add("module", m.DeviceID+"/"+m.ModuleID)
		kv.add("connection", orDash(m.ConnectionState)+" since "+stamp(now, m.ConnectionStateUpdatedTime))
		kv.add("last activity", stamp(now, m.LastActivityTime))
		kv.add("managed by", orDash(m.ManagedBy))
		kv.add("generation id", m.GenerationID)
		kv.add("etag", m.ETag)
		addAuth(kv, m.Authentication)
		return kv.write(w)
	})
}

type moduleDeleteOptions struct {
	Target  target
	IfMatch string
}

func newModuleDeleteCmd(f *Factory, runF func(*moduleDeleteOptions) error) *cobra.Command {
	opts := &moduleDeleteOptions{}
	cmd := &cobra.Command{
		Use:     "delete DEVICE/MODULE",
		Aliases: []string{"rm"},
		Short:   "Delete a module identity and its twin",
		Long: `Delete a module identity and its twin. With --if-match the hub deletes it only
if its etag is still ETAG (see 'outpost module show'); otherwise it fails with
exit code 4. With -o json|yaml it prints {"action": "deleted", "deviceId": …,
"moduleId": …}.`,
		Example: "  outpost module delete dev-1/tempsensor",
		Args:    exactArgs(1, "one DEVICE/MODULE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleRequired)
			if err != nil {
				return err
			}
			opts.Target = t
			if runF != nil {
				return runF(opts)
			}
			return moduleDeleteRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().StringVar(&opts.IfMatch, "if-match", "", "delete only if the module's etag is still `ETAG`")
	return cmd
}

func moduleDeleteRun(ctx context.Context, f *Factory, opts *moduleDeleteOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	t := opts.Target
	if err := c.DeleteModule(ctx, t.Device, t.Module, opts.IfMatch); err != nil {
		return fmt.Errorf("delete module %s: %w", t, notFoundHint(err, t))
	}
	return f.done(doneResult{Action: "deleted", DeviceID: t.Device, ModuleID: t.Module}, "deleted module %s and its twin", t)
}
