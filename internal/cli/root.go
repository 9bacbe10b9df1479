// Package cli holds outpost's commands. Main is the one place that prints
// errors and chooses exit codes; each command fills an options struct from
// its flags and calls a run function.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/suggest"
	"github.com/outpost-edge/outpost/internal/version"
)

// Factory carries what commands share: the streams, the configuration and
// the clock. It is filled before a command runs.
type Factory struct {
	IO  *IOStreams
	Now func() time.Time

	cfg    *viper.Viper
	source config.Source
}

// Config returns the configuration of the running command (flags > env >
// file > defaults).
func (f *Factory) Config() *viper.Viper {
	if f.cfg == nil {
		f.cfg = viper.New()
	}
	return f.cfg
}

// Main runs outpost with the process's arguments and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, System(), os.Args[1:])
}

// Run runs outpost with args on ios and returns the exit code.
func Run(ctx context.Context, ios *IOStreams, args []string) int {
	f := &Factory{IO: ios, Now: time.Now}
	root := NewRootCmd(f)
	root.SetArgs(args)
	root.SetIn(ios.In)
	root.SetOut(ios.Out)
	root.SetErr(ios.ErrOut)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	var silent *SilentError
	if errors.As(err, &silent) {
		return code
	}
	fmt.Fprintf(ios.ErrOut, "Error: %v\n", err)
	if hint := hintFor(err); hint != "" {
		fmt.Fprintln(ios.ErrOut, hint)
	}
	if code == ExitUsage && cmd != nil {
		fmt.Fprintf(ios.ErrOut, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// NewRootCmd builds the command tree.
func NewRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "outpost",
		Short: "Build, deploy and run edge modules: images, instances, identities, twins, offline",
		Long: `outpost is an open, light toolkit for edge modules in one binary.

It builds module images without a Docker daemon and pushes them to any OCI
registry; runs a hub that holds device and module identities, twins and
deployments; and runs a daemon on each device that keeps its modules running,
online or off. It speaks Azure IoT Edge's wire formats, so modules written with
Microsoft's Azure IoT SDKs run unchanged.

` + exitCodesHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
		CompletionOptions: cobra.CompletionOptions{
			DisableDefaultCmd: true,
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return f.load(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.String("config", "", "config file (default: "+defaultConfigHelp()+"; env OUTPOST_CONFIG)")
	pf.String("hub", "", "hub connection string (env OUTPOST_CONNECTION_STRING)")
	pf.String("ca", "", "the hub's CA certificate file (env OUTPOST_CA)")
	pf.StringP("output", "o", "table", "output format: table, json or yaml")
	pf.Bool("no-color", false, "never colour the output (also env NO_COLOR); status words in tables are coloured only on a terminal")
	// Defined here so that cobra does not take -v for it.
	root.Flags().Bool("version", false, "print outpost's version (as outpost version does)")

	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &FlagError{Err: err}
	})
	root.AddCommand(
		newVersionCmd(f),
		newCompletionCmd(f),
		newQuickstartCmd(f),
		newHubCmd(f),
		newDeployCmd(f),
		newDeploymentCmd(f),
		newDeviceCmd(f),
		newModuleCmd(f),
		newTokenCmd(f, nil),
		newTwinCmd(f),
		newQueryCmd(f, nil),
		newMethodCmd(f),
		newBuildCmd(f), newInitCmd(f),
		newRegistryCmd(f),
		newPushCmd(f),
		newDaemonCmd(f, nil), newListCmd(f), newLogsCmd(f), newRestartCmd(f), newStatusCmd(f), newCheckCmd(f),
		newMessagesCmd(f),
		newTuiCmd(f, nil),
		newDevCmd(f),
	)
	root.SetHelpCommand(newHelpCmd())
	root.Version = versionLine(version.Get())
	root.SetVersionTemplate("outpost {{.Version}}\n")
	requireSubcommands(root)
	addCompletions(f, root)
	return root
}

// requireSubcommands makes every command group (a command with subcommands
// and nothing to run itself) print its help when called alone, and refuse
// an unknown subcommand with a usage error that suggests the nearest one.
// Left to cobra, a group prints its help and exits 0 whatever follows it.
func requireSubcommands(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = unknownSubcommand
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		requireSubcommands(sub)
	}
}

// unknownSubcommand is the argument check of a command group: any argument
// is a subcommand it does not have.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	var names []string
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
			names = append(names, sub.Aliases...)
		}
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := suggest.Closest(args[0], names); s != "" {
		msg += fmt.Sprintf(": did you mean %q?", s)
	}
	return &FlagError{Err: errors.New(msg)}
}

// defaultConfigHelp names the default config files the same way on every
// machine, so that the generated reference does not depend on who made it.
func defaultConfigHelp() string {
	return "$XDG_CONFIG_HOME/outpost/config.yaml, then /etc/outpost/config.yaml"
}

// load reads the configuration for cmd and checks the global flags.
func (f *Factory) load(cmd *cobra.Command) error {
	file, _ := cmd.Flags().GetString("config")
	if file != "" {
		abs, err := filepath.Abs(file)
		if err != nil {
			return fmt.Errorf("config file %s: %w", file, err)
		}
		file = abs
	}
	v, src, err := config.LoadSection(file, KnownKeys(cmd.Root()), cmd.Flags(), configSection(cmd))
	if err != nil {
		return err
	}
	if err := absPaths(v, src, cmd.Flags(), configSection(cmd)); err != nil {
		return err
	}
	f.cfg, f.source = v, src
	switch o := v.GetString("output"); o {
	case "table", "json", "yaml":
	default:
		return flagErrorf("invalid --output %q: use table, json or yaml", o)
	}
	if v.GetBool("no-color") {
		f.IO.SetNoColor()
	}
	return nil
}

// pathKeys are the configuration keys that name files and directories.
var pathKeys = []string{"data", "mgmt-socket", "workload-dir", "ca", "cache", "device-ca-cert", "device-ca-key"}

// absPaths makes the relative paths of pathKeys absolute, once, before a
// command runs, so that a path means the same to every part of outpost
// whatever directory that part works in (the process runtime starts modules
// in their own directories; the hub prints its CA file's path for use
// elsewhere). A path from the config file is relative to the file's
// directory, as kubeconfig's are; one from a flag or the environment, to the
// working directory.
func absPaths(v *viper.Viper, src config.Source, flags *pflag.FlagSet, section string) error {
	for _, key := range pathKeys {
		p := v.GetString(key)
		if p == "" || filepath.IsAbs(p) {
			continue
		}
		from, env := "--"+key, config.EnvVar(key)
		if section != "" && os.Getenv(config.EnvVar(section+"-"+key)) != "" {
			env = config.EnvVar(section + "-" + key) // read before the plain name
		}
		switch fl := flags.Lookup(key); {
		case fl != nil && fl.Changed:
		case os.Getenv(env) != "":
			from = env
		case src.File != "" && v.InConfig(key):
			from = "key " + key + " of " + src.File
			p = filepath.Join(filepath.Dir(src.File), p)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("%s: make %s absolute: %w", from, p, err)
		}
		v.Set(key, abs)
	}
	return nil
}

// sectionAnnotation on a command (or a parent) names its section of the
// config file (see config.Sections).
const sectionAnnotation = "outpost/config-section"

// configSection returns the config file section of cmd, "" for none.
func configSection(cmd *cobra.Command) string {
	for c := cmd; c != nil; c = c.Parent() {
		if s := c.Annotations[sectionAnnotation]; s != "" {
			return s
		}
	}
	return ""
}

// KnownKeys returns every key a config file may set (the flag names of the
// whole command tree, under their config key) with the flag's value type.
func KnownKeys(root *cobra.Command) map[string]string {
	keys := map[string]string{}
	var walk func(c *cobra.Command)
	add := func(fl *pflag.Flag) {
		if fl.Name != "config" && fl.Name != "help" && fl.Name != "version" {
			keys[config.KeyFor(fl.Name)] = fl.Value.Type()
		}
	}
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return keys
}

// exactArgs is cobra.ExactArgs with a message that names what is expected.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return flagErrorf("%s takes %s (got %d argument%s)", cmd.CommandPath(), what, len(args), plural(len(args)))
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with a message that names what is expected.
func rangeArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return flagErrorf("%s takes %s (got %d argument%s)", cmd.CommandPath(), what, len(args), plural(len(args)))
		}
		return nil
	}
}

// noArgs rejects positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return flagErrorf("%s takes no arguments (got %q)", cmd.CommandPath(), args[0])
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
