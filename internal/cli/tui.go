package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/tui/app"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/hubview"
)

// tuiMode is which side the terminal UI looks at.
type tuiMode int

const (
	tuiHub   tuiMode = iota // the hub: fleet, device, twin
	tuiLocal                // the device's daemon, over its management socket
)

type tuiOptions struct {
	Target       target // zero for the fleet (or the device-local root)
	MgmtSocket   string
	SocketForced bool // --mgmt-socket (or its env/config key) was given
}

func newTuiCmd(f *Factory, runF func(*tuiOptions) error) *cobra.Command {
	opts := &tuiOptions{}
	cmd := &cobra.Command{
		Use:   "tui [DEVICE[/MODULE]]",
		Short: "Browse the fleet and edit twins live, or inspect this device offline, in the terminal",
		Long: `Open outpost's terminal UI.

With a hub connection string (--hub, OUTPOST_CONNECTION_STRING or
connection-string in the config file; an operator's shared access policy
string, as for every hub command): the fleet, each device's modules and their
twins, updated live as the hub changes; desired properties and tags are edited
in place and sent with If-Match. DEVICE opens that device, DEVICE/MODULE that
module's twin.

With --mgmt-socket, or with no hub connection string on a device whose daemon
answers on its management socket: the device-local view (the link to the hub,
the outbox, the cached twins, the modules and their logs), which works with
the hub unreachable.

It needs a terminal (exit code 2 otherwise: use outpost twin watch, outpost
status -o json or outpost list in scripts). ? shows every key; docs/tui.md
lists them.`,
		Example: `  outpost tui
  outpost tui dev-1
  outpost tui dev-1/tempsensor
  outpost tui --mgmt-socket ./device/mgmt.sock`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return flagErrorf("%s takes at most one DEVICE or DEVICE/MODULE (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				t, err := parseTarget(args[0], moduleOptional)
				if err != nil {
					return err
				}
				opts.Target = t
			}
			v := f.Config()
			opts.MgmtSocket = v.GetString("mgmt-socket")
			opts.SocketForced = cmd.Flags().Changed("mgmt-socket") || os.Getenv(config.EnvVar("mgmt-socket")) != "" ||
				v.InConfig("mgmt-socket")
			if runF != nil {
				return runF(opts)
			}
			return tuiRun(cmd, f, opts)
		},
	}
	addMgmtSocketFlag(cmd)
	return cmd
}

// errNoTerminal is the error of a tui whose output is not a terminal.
var errNoTerminal = &ExitError{Code: ExitUsage,
	Err:  errors.New("outpost tui needs a terminal, and its standard output is not one"),
	Hint: "run it in a terminal (ssh -t for a remote one); in scripts, use `outpost twin get|watch`, `outpost status -o json` or `outpost list`"}

// chooseTUIMode decides which view to open: the device-local one when the
// socket is forced, or when there is no operator's hub string and the
// daemon answers; the hub's when there is an operator's string.
func chooseTUIMode(connString string, socketForced bool, socketAnswers func() bool) (tuiMode, error) {
	if socketForced {
		return tuiLocal, nil
	}
	operator := false
	if s := strings.TrimSpace(connString); s != "" {
		if cs, err := identity.ParseConnectionString(s); err != nil || cs.Kind() == identity.KindService {
			operator = true // a bad string gets HubClient's error
		}
	}
	if operator {
		return tuiHub, nil
	}
	if socketAnswers() {
		return tuiLocal, nil
	}
	if connString != "" {
		return tuiHub, nil // HubClient says why a device's string does not do
	}
	return 0, &ExitError{Code: ExitFailure,
		Err:  fmt.Errorf("nothing to open: no hub connection string, and no daemon answers on %s", mgmtclient.DefaultSocket),
		Hint: "pass --hub (or set OUTPOST_CONNECTION_STRING) to an operator's connection string to browse the hub (`outpost hub credentials` prints the owner's), or --mgmt-socket PATH for a device's daemon"}
}

// socketAnswers reports whether something accepts connections on the unix
// socket at path.
func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func tuiRun(cmd *cobra.Command, f *Factory, opts *tuiOptions) error {
	if !f.IO.IsTerminal() {
		return errNoTerminal
	}
	ctx := cmd.Context()
	mode, err := chooseTUIMode(f.Config().GetString("connection-string"), opts.SocketForced,
		func() bool { return socketAnswers(opts.MgmtSocket) })
	if err != nil {
		return err
	}
	c := common.New(ctx, f.IO.Color(), f.Now)
	var (
		root   common.Component
		target string
	)
	switch mode {
	case tuiLocal:
		mc := mgmtclient.New(opts.MgmtSocket)
		target = "device " + mc.Socket()
		if root, err = localRoot(c, mc, opts.Target); err != nil {
			return err
		}
	default:
		hc, err := f.HubClient()
		if err != nil {
			return err
		}
		target = "hub " + hc.HostName()
		root = hubview.Root(c, hc, opts.Target.Device, opts.Target.Module)
	}
	m := app.New(c, target, root)
	if err := app.Run(ctx, m, f.IO.In, f.IO.Out); err != nil {
		return fmt.Errorf("tui: %w", err)
	}
	return nil
}
