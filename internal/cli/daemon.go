package cli

import (
	"context"
	"errors"
	"log/slog"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// Defaults of the daemon's configuration (DESIGN "Device daemon").
const (
	defaultDataDir      = daemon.DefaultDataDir
	defaultBrokerListen = daemon.DefaultBrokerListen
)

type daemonOptions struct {
	ConnectionString string
	CAFile           string
	DataDir          string
	Runtime          string
	MgmtSocket       string
	BrokerListen     string
	GatewayHostName  string
	WorkloadDir      string
	DeviceCACert     string
	DeviceCAKey      string
	BackoffBase      time.Duration
	BackoffMax       time.Duration
	BackoffReset     time.Duration
	ImageGCAge       time.Duration
	LogLevel         slog.Level
	// Ready is called once the management socket listens (systemd's
	// readiness notification by default).
	Ready func() error
}

func newDaemonCmd(f *Factory, runF func(*daemonOptions) error) *cobra.Command {
	opts := &daemonOptions{}
	cmd := &cobra.Command{
		Use:         "daemon",
		Short:       "Run the device daemon: keep this device's deployment running",
		Annotations: map[string]string{sectionAnnotation: "daemon"},
		Long: `Run the device daemon. It syncs with the hub as the device of the connection
string, keeps the device's modules, twins and deployment in its data dir (so it
runs on with the hub unreachable), pulls module images, runs one instance per
module on the runtime, restarts them by policy and reports their status in the
$edgeAgent twin (and its module broker's in $edgeHub). 'outpost list|logs|restart|status'
talk to it over the management socket.

Configuration: flags, then OUTPOST_* environment variables, then the config
file (/etc/outpost/config.yaml or --config), whose keys are the flag names,
at the top level or in a daemon: section (which wins; OUTPOST_DAEMON_* env
vars likewise win over OUTPOST_*):

  connection-string: HostName=…;DeviceId=…;SharedAccessKey=…
  ca: /etc/outpost/hub-ca.pem
  daemon:
    data: /var/lib/outpost      # a top-level data: is the daemon's too
    runtime: auto

The connection string may also come from --hub or OUTPOST_CONNECTION_STRING.
runtime auto picks runc when it is installed and the daemon is root, else docker
when its engine answers, else process (plain host processes: not isolated).

On SIGTERM the daemon stops the modules in reverse startup order and exits.
Instances run under a shim process (one for all of them) that outlives the
daemon, so a daemon killed without stopping them adopts them when it starts
again. With outpost-daemon installed beside outpost (as the packages do),
this command execs it once the configuration is read: the same process, with
the daemon's code only. It tells systemd it is ready
(Type=notify) once the management socket listens.

Each module gets a workload socket (IoT Edge's workload API, through which
its Azure IoT SDK signs SAS tokens with the module's key, offline too, and
reads the trust bundle). The device CA that issues the daemon's TLS
certificates is made in DATA/ca on first start, or given with
--device-ca-cert and --device-ca-key. Modules reach their twins through the
module broker (--broker-listen): MQTT over TLS with IoT Hub's twin topics,
answered from the twins the device keeps, so offline too.`,
		Example: `  outpost daemon --config /etc/outpost/config.yaml
  outpost daemon --connection-string "$DEVICE_CONNECTION_STRING" --ca hub-ca.pem --data ./device --runtime process --mgmt-socket ./device/mgmt.sock`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := daemonOSError(goruntime.GOOS); err != nil {
				return err
			}
			v := f.Config()
			opts.ConnectionString = deviceConnectionString(cmd, v)
			opts.CAFile = v.GetString("ca")
			opts.DataDir = v.GetString("data")
			opts.Runtime = v.GetString("runtime")
			opts.MgmtSocket = v.GetString("mgmt-socket")
			opts.BrokerListen = v.GetString("broker-listen")
			opts.GatewayHostName = v.GetString("gateway-hostname")
			opts.WorkloadDir = v.GetString("workload-dir")
			opts.DeviceCACert = v.GetString("device-ca-cert")
			opts.DeviceCAKey = v.GetString("device-ca-key")
			opts.BackoffBase = v.GetDuration("restart-backoff")
			opts.BackoffMax = v.GetDuration("restart-backoff-max")
			opts.BackoffReset = v.GetDuration("restart-reset-after")
			opts.ImageGCAge = v.GetDuration("image-gc-age")
			if err := opts.LogLevel.UnmarshalText([]byte(v.GetString("log-level"))); err != nil {
				return flagErrorf("invalid --log-level %q: use debug, info, warn or error", v.GetString("log-level"))
			}
			if opts.BackoffBase <= 0 || opts.BackoffMax < opts.BackoffBase || opts.BackoffReset <= 0 {
				return flagErrorf("invalid restart back-off: want 0 < --restart-backoff <= --restart-backoff-max and --restart-reset-after > 0")
			}
			switch opts.Runtime {
			case runtime.KindAuto, runtime.KindRunc, runtime.KindDocker, runtime.KindProcess:
			default:
				return flagErrorf("invalid --runtime %q: use auto, runc, docker or process", opts.Runtime)
			}
			if strings.TrimSpace(opts.ConnectionString) == "" {
				return &ExitError{Code: ExitUsage, Err: errors.New("daemon: no device connection string"),
					Hint: "pass --connection-string, set OUTPOST_CONNECTION_STRING, or write connection-string in the config file; `outpost device create ID` prints one"}
			}
			if (opts.DeviceCACert == "") != (opts.DeviceCAKey == "") {
				return flagErrorf("--device-ca-cert and --device-ca-key go together: give both, or neither for a CA the daemon makes itself")
			}
			opts.Ready = sdNotifyReady
			if runF != nil {
				return runF(opts)
			}
			return daemonRun(cmd.Context(), f, opts)
		},
	}
	addDaemonFlags(cmd)
	cmd.AddCommand(newDaemonCACmd(f))
	return cmd
}

// addDaemonFlags adds the daemon's configuration flags to cmd: outpost
// daemon's, which outpost check takes too, so that both read one
// configuration.
func addDaemonFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.String("connection-string", "", "the device's connection string (or --hub; env OUTPOST_CONNECTION_STRING)")
	fl.String("data", defaultDataDir, "data dir: the device's store, images, instances and logs")
	fl.String("runtime", runtime.KindAuto, "runtime: auto, runc, docker or process")
	addMgmtSocketFlag(cmd)
	fl.String("broker-listen", defaultBrokerListen, "module broker address: MQTT over TLS, IoT Hub's twin topics (the Azure SDKs reach a gateway on 8883)")
	fl.String("gateway-hostname", "", "host name modules and leaf devices reach the daemon by, IoT Edge's hostname; the broker's certificate is issued for it (default: this machine's host name)")
	fl.String("workload-dir", "", "directory of the modules' workload sockets (default: DATA/workload)")
	fl.String("device-ca-cert", "", "device CA certificate (PEM) to issue the broker's and modules' certificates from (default: one the daemon makes in DATA/ca)")
	fl.String("device-ca-key", "", "private key (PEM, unencrypted) of --device-ca-cert")
	fl.Duration("restart-backoff", agent.DefaultBackoffBase, "wait before a module's first restart; doubled for each restart after it")
	fl.Duration("restart-backoff-max", agent.DefaultBackoffMax, "longest wait before a restart")
	fl.Duration("restart-reset-after", agent.DefaultResetAfter, "a module that ran this long gets its restart count reset")
	fl.Duration("image-gc-age", agent.DefaultImageGCAge, "remove images no module uses once unused this long (0: never)")
	fl.String("log-level", "info", "least level logged to stderr: debug, info, warn or error")
}

// deviceConnectionString is the connection-string key of the configuration,
// --connection-string winning over --hub when both are given.
func deviceConnectionString(cmd *cobra.Command, v *viper.Viper) string {
	if fl := cmd.Flags().Lookup("connection-string"); fl != nil && fl.Changed {
		return fl.Value.String()
	}
	return v.GetString("connection-string")
}

// daemonRun runs the daemon until ctx is done: it replaces this process with
// the daemon binary installed beside outpost (daemon.Exec) when there is one,
// else runs the daemon here.
func daemonRun(ctx context.Context, f *Factory, opts *daemonOptions) error {
	if err := daemonOSError(goruntime.GOOS); err != nil {
		return err
	}
	cfg := daemon.Config{
		ConnectionString: opts.ConnectionString, CAFile: opts.CAFile, DataDir: opts.DataDir, Runtime: opts.Runtime,
		MgmtSocket: opts.MgmtSocket, WorkloadDir: opts.WorkloadDir, GatewayHostName: opts.GatewayHostName,
		BrokerListen: opts.BrokerListen, DeviceCACert: opts.DeviceCACert, DeviceCAKey: opts.DeviceCAKey,
		BackoffBase: opts.BackoffBase, BackoffMax: opts.BackoffMax, BackoffReset: opts.BackoffReset,
		ImageGCAge: opts.ImageGCAge,
	}
	// Configuration errors come from here, as they do without the daemon binary.
	if err := cfg.Check(); err != nil {
		return &ExitError{Code: ExitUsage, Err: err, Hint: ownHint(err)}
	}
	if err := daemon.Exec(cfg, opts.LogLevel); !errors.Is(err, daemon.ErrNoBinary) {
		return err
	}
	daemon.SetRuntimeDefaults()
	cfg.Logger = slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: opts.LogLevel}))
	cfg.Ready = opts.Ready
	d, err := daemon.New(cfg)
	if errors.Is(err, daemon.ErrConfig) {
		return &ExitError{Code: ExitUsage, Err: err, Hint: ownHint(err)}
	}
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// sdNotifyReady tells systemd the daemon is ready (Type=notify), when
// NOTIFY_SOCKET names a socket.
func sdNotifyReady() error { return daemon.NotifyReady() }

// addMgmtSocketFlag adds --mgmt-socket.
func addMgmtSocketFlag(cmd *cobra.Command) {
	cmd.Flags().String("mgmt-socket", mgmtclient.DefaultSocket, "the daemon's management socket")
}
