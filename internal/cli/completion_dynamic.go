package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/runtime"
)

// Dynamic shell completion: device ids, DEVICE/MODULE names and automatic
// deployment ids from the hub (--hub), module names from the local daemon
// (--mgmt-socket), and the values of -o, --runtime and --platform. A
// completion asks at most once, with completionTimeout; when the hub or the
// daemon does not answer it offers nothing and prints nothing (cobra's
// __complete shows its debug lines only with BASH_COMP_DEBUG_FILE).

// completionTimeout bounds what one completion may wait for the hub or the
// daemon: a shell waiting on TAB must not hang.
const completionTimeout = 2 * time.Second

// targetCompletion is what a command's first argument names.
type targetCompletion int

const (
	completeDevice         targetCompletion = iota // DEVICE
	completeDeviceSlash                            // DEVICE/… (module create: a new module's name follows)
	completeDeviceModule                           // DEVICE/MODULE
	completeDeviceOrModule                         // DEVICE[/MODULE]
	completeDeployment                             // an automatic deployment's id
	completeLocalModule                            // a module the local daemon runs
)

// completionsByPath says what the first argument of each command is.
var completionsByPath = map[string]targetCompletion{
	"outpost device show":       completeDevice,
	"outpost device delete":     completeDevice,
	"outpost deploy":            completeDevice,
	"outpost module list":       completeDevice,
	"outpost module create":     completeDeviceSlash,
	"outpost module show":       completeDeviceModule,
	"outpost module delete":     completeDeviceModule,
	"outpost twin watch":        completeDeviceModule,
	"outpost twin get":          completeDeviceOrModule,
	"outpost twin patch":        completeDeviceOrModule,
	"outpost twin edit":         completeDeviceOrModule,
	"outpost token":             completeDeviceOrModule,
	"outpost tui":               completeDeviceOrModule,
	"outpost deployment show":   completeDeployment,
	"outpost deployment delete": completeDeployment,
	"outpost logs":              completeLocalModule,
	"outpost restart":           completeLocalModule,
}

// buildPlatforms are the platforms --platform offers: those outpost's
// releases run on, and those Go builds for that devices commonly are.
var buildPlatforms = []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/riscv64", "linux/ppc64le", "linux/s390x"}

// addCompletions sets the completion functions of the tree under root.
func addCompletions(f *Factory, root *cobra.Command) {
	walkCommands(root, func(c *cobra.Command) {
		if what, ok := completionsByPath[c.CommandPath()]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = f.completeFirstArg(what)
		}
		if c.LocalFlags().Lookup("runtime") != nil {
			_ = c.RegisterFlagCompletionFunc("runtime", fixedCompletions(
				runtime.KindAuto+"\tpick runc as root where installed, else docker, else process",
				runtime.KindRunc+"\tOCI containers (root)",
				runtime.KindDocker+"\ta Docker/Moby engine",
				runtime.KindProcess+"\thost processes, not isolated"))
		}
		if c.LocalFlags().Lookup("platform") != nil {
			_ = c.RegisterFlagCompletionFunc("platform", completePlatforms)
		}
	})
	_ = root.RegisterFlagCompletionFunc("output", fixedCompletions("table", "json", "yaml"))
}

func walkCommands(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walkCommands(sub, fn)
	}
}

func fixedCompletions(choices ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return choices, cobra.ShellCompDirectiveNoFileComp
	}
}

// completePlatforms completes the last of a comma-separated list.
func completePlatforms(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	i := strings.LastIndex(toComplete, ",")
	before, last := toComplete[:i+1], toComplete[i+1:]
	var out []cobra.Completion
	for _, p := range buildPlatforms {
		if strings.HasPrefix(p, last) && !strings.Contains(","+before, ","+p+",") {
			out = append(out, before+p)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// completeFirstArg completes a command's first argument, and nothing after
// it.
func (f *Factory) completeFirstArg(what targetCompletion) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		none := cobra.ShellCompDirectiveNoFileComp
		if len(args) > 0 {
			return nil, none
		}
		// cobra's __complete runs no PreRun: read the configuration (flags,
		// env, file) as the command would.
		if err := f.load(cmd); err != nil {
			cobra.CompDebugln("outpost: "+err.Error(), false)
			return nil, none
		}
		ctx, cancel := context.WithTimeout(cmdContext(cmd), completionTimeout)
		defer cancel()
		out, dir, err := f.completions(ctx, what, toComplete)
		if err != nil {
			cobra.CompDebugln("outpost: "+err.Error(), false)
			return nil, none
		}
		return out, dir
	}
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

func (f *Factory) completions(ctx context.Context, what targetCompletion, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective, error) {
	none := cobra.ShellCompDirectiveNoFileComp
	var out []cobra.Completion
	add := func(s string) {
		if strings.HasPrefix(s, toComplete) {
			out = append(out, s)
		}
	}
	if what == completeLocalModule {
		mods, err := f.MgmtClient().Modules(ctx)
		if err != nil {
			return nil, none, err
		}
		for _, m := range mods {
			add(m.Name)
		}
		return out, none, nil
	}
	hc, err := f.HubClient()
	if err != nil {
		return nil, none, err
	}
	if what == completeDeployment {
		cfgs, err := hc.ListConfigurations(ctx)
		if err != nil {
			return nil, none, err
		}
		for _, c := range cfgs {
			add(c.ID)
		}
		return out, none, nil
	}
	if dev, _, ok := strings.Cut(toComplete, "/"); ok && (what == completeDeviceModule || what == completeDeviceOrModule) {
		mods, err := hc.ListModules(ctx, dev)
		if err != nil {
			return nil, none, err
		}
		for _, m := range mods {
			add(dev + "/" + m.ModuleID)
		}
		return out, none, nil
	}
	devs, err := hc.ListDevices(ctx)
	if err != nil {
		return nil, none, err
	}
	dir := none
	for _, d := range devs {
		switch what {
		case completeDeviceSlash, completeDeviceModule:
			add(d.DeviceID + "/")
			dir |= cobra.ShellCompDirectiveNoSpace
		default:
			add(d.DeviceID)
		}
	}
	return out, dir, nil
}
