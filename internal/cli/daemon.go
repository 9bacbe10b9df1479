package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/imagestore"
	"github.com/outpost-edge/outpost/internal/mgmt"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// Defaults of the daemon's configuration (DESIGN "Device daemon").
const (
	defaultDataDir      = "/var/lib/outpost"
	defaultBrokerListen = ":8883"
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
$agent twin. 'outpost list|logs|restart|status' talk to it over the management
socket.

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
Instances run under shims that outlive the daemon, so a daemon killed without
stopping them adopts them when it starts again. It tells systemd it is ready
(Type=notify) once the management socket listens. The module broker
(--broker-listen) and the workload API come in a later version: today each
module's workload socket answers 501.`,
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
			opts.Ready = sdNotifyReady
			if runF != nil {
				return runF(opts)
			}
			return daemonRun(cmd.Context(), f, opts)
		},
	}
	addDaemonFlags(cmd)
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
	fl.String("broker-listen", defaultBrokerListen, "module broker address (the broker comes in a later version)")
	fl.String("gateway-hostname", "", "host name modules reach the daemon by (default: this machine's host name)")
	fl.String("workload-dir", "", "directory of the modules' workload sockets (default: DATA/workload)")
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

// daemonRun runs the daemon until ctx is done.
func daemonRun(ctx context.Context, f *Factory, opts *daemonOptions) error {
	if err := daemonOSError(goruntime.GOOS); err != nil {
		return err
	}
	// The daemon's heap is small and steady; collecting at 50% growth instead
	// of Go's default 100% keeps it on small devices' budget (about 2 MB less
	// RSS with 10 modules) for little CPU. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	cs, err := identity.ParseConnectionString(opts.ConnectionString)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("daemon: %w", err), Hint: "check the device connection string"}
	}
	if cs.Kind() != identity.KindDevice {
		return &ExitError{Code: ExitUsage,
			Err:  fmt.Errorf("daemon: the connection string is a %s's (%s): the daemon needs a device's (HostName=…;DeviceId=…;SharedAccessKey=…)", cs.Kind(), cs.Redacted()),
			Hint: "`outpost device create ID` prints a device's connection string"}
	}
	log := slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: opts.LogLevel}))
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return withHint(fmt.Errorf("daemon: data dir: %w", err), "run as root, or pass --data with a directory you own")
	}
	workloadDir := opts.WorkloadDir
	if workloadDir == "" {
		workloadDir = filepath.Join(opts.DataDir, "workload")
	}
	gateway := opts.GatewayHostName
	if gateway == "" {
		gateway = cs.GatewayHostName
	}

	st, err := store.Open(filepath.Join(opts.DataDir, "store"), store.WithLogger(log))
	if err != nil {
		return withHint(fmt.Errorf("daemon: open the store: %w", err), "is another daemon using "+opts.DataDir+"? try: systemctl status outpost")
	}
	defer st.Close()
	hc, err := hubclient.New(opts.ConnectionString, opts.CAFile)
	if err != nil {
		return withHint(fmt.Errorf("daemon: %w", err), "check --ca (OUTPOST_CA): it names the hub's CA certificate file")
	}
	sy, err := syncer.New(hc, st, cs.DeviceID, syncer.WithLogger(log))
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	imgs, err := imagestore.Open(filepath.Join(opts.DataDir, "images"), imagestore.WithLogger(log))
	if err != nil {
		return fmt.Errorf("daemon: open the image store: %w", err)
	}
	defer imgs.Close()
	rt, err := runtime.New(opts.Runtime, filepath.Join(opts.DataDir, "runtime"))
	if err != nil {
		return withHint(fmt.Errorf("daemon: runtime %s: %w", opts.Runtime, err), "`outpost check` says which runtimes work here; --runtime process always does")
	}
	a, err := agent.New(agent.Config{
		DeviceID: cs.DeviceID, HubHostName: cs.HostName, GatewayHostName: gateway,
		Syncer: sy, Images: imgs, Runtime: rt,
		WorkloadDir: workloadDir, LogDir: filepath.Join(opts.DataDir, "logs"),
		BackoffBase: opts.BackoffBase, BackoffMax: opts.BackoffMax, ResetAfter: opts.BackoffReset,
		ImageGCAge: opts.ImageGCAge,
		Logger:     log,
	})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	l, err := mgmt.Listen(opts.MgmtSocket)
	if err != nil {
		hint := "run as root, or pass --mgmt-socket with a path you may create"
		switch {
		case errors.Is(err, mgmt.ErrInUse):
			hint = fmt.Sprintf("another daemon is running? `outpost status --mgmt-socket %s` asks it; stop it first, or give this one its own --mgmt-socket and --data", opts.MgmtSocket)
		case errors.Is(err, mgmt.ErrNotSocket):
			hint = "" // the error says what to do
		}
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("daemon: %w", err), Hint: hint}
	}
	isolation := "isolated"
	if !rt.Isolated() {
		isolation = "NOT isolated: modules run as host processes"
	}
	log.Info("outpost daemon", "device", cs.DeviceID, "hub", cs.HostName, "runtime", rt.Name(), "isolation", isolation,
		"data", opts.DataDir, "mgmt-socket", opts.MgmtSocket)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	syncCtx, stopSync := context.WithCancel(context.Background())
	syncDone := make(chan error, 1)
	go func() { syncDone <- sy.Run(syncCtx) }()
	mgmtCtx, stopMgmt := context.WithCancel(context.Background())
	mgmtDone := make(chan error, 1)
	go func() { mgmtDone <- mgmt.New(a, cs.HostName, log).Serve(mgmtCtx, l) }()
	if opts.Ready != nil {
		if err := opts.Ready(); err != nil {
			log.Warn("readiness notification", "err", err)
		}
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(ctx) }()

	// Stop in the reverse of the start order, waiting for each part: the
	// agent (its modules, then its last report), the management API, then
	// the syncer, which first sends what the agent reported, within a
	// deadline; what it cannot send stays in the outbox for the next start.
	var errs []error
	select {
	case err := <-agentDone:
		errs = append(errs, err)
	case err := <-mgmtDone:
		errs = append(errs, fmt.Errorf("daemon: management API: %w", err))
		mgmtDone = nil
		cancel()
		errs = append(errs, <-agentDone)
	}
	log.Info("stopping")
	stopMgmt()
	if mgmtDone != nil {
		if err := <-mgmtDone; err != nil {
			errs = append(errs, fmt.Errorf("daemon: management API: %w", err))
		}
	}
	flushCtx, stopFlush := context.WithTimeout(context.Background(), shutdownFlush)
	if err := sy.Flush(flushCtx); err != nil {
		log.Warn("reported properties left queued for the next start", "err", err)
	}
	stopFlush()
	stopSync()
	if err := <-syncDone; err != nil {
		errs = append(errs, fmt.Errorf("daemon: sync: %w", err))
	}
	_ = os.Remove(opts.MgmtSocket)
	return errors.Join(errs...)
}

// shutdownFlush is how long a stopping daemon tries to send its outbox.
const shutdownFlush = 3 * time.Second

// sdNotifyReady tells systemd the daemon is ready (Type=notify), when
// NOTIFY_SOCKET names a socket.
func sdNotifyReady() error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte("READY=1"))
	return err
}

// addMgmtSocketFlag adds --mgmt-socket.
func addMgmtSocketFlag(cmd *cobra.Command) {
	cmd.Flags().String("mgmt-socket", mgmtclient.DefaultSocket, "the daemon's management socket")
}
