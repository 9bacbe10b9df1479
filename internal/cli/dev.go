package cli

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/devloop"
	"github.com/outpost-edge/outpost/internal/runtime"
)

type devOptions struct {
	Dir        string
	StateDir   string
	Runtime    string
	Device     string
	MgmtSocket string
	Once       bool
}

func newDevCmd(f *Factory) *cobra.Command {
	opts := &devOptions{}
	cmd := &cobra.Command{
		Use:   "dev [DIR]",
		Short: "Watch a solution: build, push, deploy and stream logs on every save",
		Long: `The inner loop of module development, in one command, on the solution in DIR
(default: the current directory; the layout outpost init makes:
modules/*/module.yaml and deployment.yaml).

It starts a hub, an OCI registry and a device daemon, embedded and on loopback
only, with their data in the state dir (--state, default DIR/.outpost: kept
between runs, and out of git by its own .gitignore); builds every module for
the device's platform only, pushes it to that registry, deploys
deployment.yaml with each module's image pinned by digest, and streams every
module's logs, each line prefixed by the module's name (coloured on a
terminal, unless --no-color or NO_COLOR). Then it watches the solution's files
(not .git, .outpost or editors' temporary files): on each save it rebuilds
only the modules whose files changed, pushes and redeploys them, and keeps
streaming; a change to deployment.yaml redeploys. A build error is shown
once, and the loop waits for the next save. After each change it says where
the time went, from the save to the new instance's first line.

q (on a terminal) or Ctrl-C stops it: the daemon stops, every instance it ran
is removed (no process, container or mount is left), and the registry and the
hub stop. --once does one round (build, push, deploy, wait for each module's
first line) and stops the same way, for scripts.

The embedded daemon runs modules as plain processes (--runtime process, no
isolation); as root with runc installed, --runtime runc runs them in
containers. Its log, and the hub's, are in the state dir's dev.log.

With --device, the loop deploys to that device of the hub named by --hub
(OUTPOST_CONNECTION_STRING) instead, builds for the platform its daemon
reported, pushes to the registries module.yaml names, and streams logs when
the device's daemon answers on this machine's --mgmt-socket.`,
		Example: `  outpost init && outpost dev
  outpost dev ./edge --runtime runc       # as root, modules in containers
  outpost dev --once -o json              # one round, then stop
  outpost dev --device edge-1 --hub "$OUTPOST_CONNECTION_STRING" --mgmt-socket /run/outpost/mgmt.sock`,
		Args: atMostOneArg("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = "."
			if len(args) == 1 {
				opts.Dir = args[0]
			}
			switch opts.Runtime {
			case runtime.KindProcess, runtime.KindRunc:
			default:
				return flagErrorf("--runtime %q: the embedded daemon runs modules with process or runc", opts.Runtime)
			}
			if opts.Device == "" && cmd.Flags().Changed("mgmt-socket") {
				return flagErrorf("--mgmt-socket goes with --device (the embedded daemon has its own socket)")
			}
			return devRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().StringVar(&opts.StateDir, "state", "", "state dir: the embedded hub's, registry's and daemon's data (default DIR/"+devloop.StateDirName+")")
	cmd.Flags().StringVar(&opts.Runtime, "runtime", runtime.KindProcess, "the embedded daemon's runtime: process or runc (root)")
	cmd.Flags().StringVar(&opts.Device, "device", "", "deploy to this device of --hub instead of an embedded hub and daemon")
	cmd.Flags().StringVar(&opts.MgmtSocket, "mgmt-socket", "", "with --device: its daemon's management socket on this machine, for the logs")
	cmd.Flags().BoolVar(&opts.Once, "once", false, "one round (build, push, deploy, first log lines), then stop")
	return cmd
}

func devRun(ctx context.Context, f *Factory, opts *devOptions) error {
	cfg := devloop.Config{
		Dir: opts.Dir, StateDir: opts.StateDir, Runtime: opts.Runtime, Once: opts.Once,
		Device: opts.Device, MgmtSocket: opts.MgmtSocket,
		Out: f.IO.Out, Status: f.IO.ErrOut, Color: f.IO.Color(),
	}
	if opts.Device != "" {
		hc, err := f.HubClient()
		if err != nil {
			return err
		}
		cfg.Hub = hc
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !opts.Once {
		stopKeys := watchQuit(f.IO.In, cancel)
		defer stopKeys()
	}
	if err := devloop.Run(ctx, cfg); err != nil {
		dir := opts.StateDir
		if dir == "" {
			dir = filepath.Join(opts.Dir, devloop.StateDirName)
		}
		return withHint(err, "the embedded hub's and daemon's log is "+filepath.Join(dir, "dev.log"))
	}
	return nil
}

// watchQuit calls quit when q is typed on in: at once on a terminal (put in
// cbreak mode until the returned function is called), else at the end of a
// line. Ctrl-C stays a signal.
func watchQuit(in io.Reader, quit func()) (stop func()) {
	restore := func() {}
	if fh, ok := in.(*os.File); ok {
		restore = cbreak(fh)
	}
	go func() {
		r := bufio.NewReader(in)
		for {
			b, err := r.ReadByte()
			if err != nil {
				if err == io.EOF {
					// No more input (a pipe, /dev/null): only Ctrl-C stops.
					return
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if b == 'q' || b == 'Q' {
				quit()
				return
			}
		}
	}()
	return restore
}

// atMostOneArg accepts zero or one positional argument, named what in the
// usage error.
func atMostOneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 1 {
			return flagErrorf("%s takes at most one %s (got %d arguments)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}
