// Package daemon assembles the device daemon: the store, the syncer that
// follows the hub, the image store, the runtime, the device CA and the
// certificate it issues to the module broker, the workload API, the module
// broker, the management API and the agent. New opens every part (so that a
// bad configuration fails before anything runs); Run starts them in order
// and, when its context ends or a part fails, stops them in reverse order,
// waiting for each: the agent (its modules, then its last report), the
// management API, the broker, then the syncer, which first sends what is in
// its outbox within a deadline.
//
// internal/cli only turns flags into a Config; the quickstart and tests
// start a daemon through this package too. Each server part can be handed
// a listener (Config.MgmtListener, Config.BrokerListener), so tests serve
// on a random port or socket.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/imagestore"
	"github.com/outpost-edge/outpost/internal/mgmt"
	"github.com/outpost-edge/outpost/internal/msgqueue"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/syncer"
	"github.com/outpost-edge/outpost/internal/workload"
)

// Defaults of Config.
const (
	DefaultDataDir      = "/var/lib/outpost"
	DefaultBrokerListen = ":8883"
	// DefaultShutdownFlush is how long a stopping daemon tries to send its
	// outbox; what it cannot send stays queued for the next start.
	DefaultShutdownFlush = 3 * time.Second
)

// Config is the daemon's configuration: what `outpost daemon` parses.
type Config struct {
	ConnectionString string // the device's
	CAFile           string // the hub's CA certificate ("" trusts the system's)
	DataDir          string
	Runtime          string // runtime.KindAuto, KindRunc, KindDocker or KindProcess

	// MgmtSocket is the management API's unix socket. MgmtListener, when
	// set, is served instead (and MgmtSocket is only reported).
	MgmtSocket   string
	MgmtListener net.Listener `json:"-"`

	// WorkloadDir holds each module's workload socket (default
	// DataDir/workload).
	WorkloadDir string
	// GatewayHostName is the host name modules reach the daemon by (default:
	// the connection string's GatewayHostName, else this machine's host
	// name). The broker's certificate is issued for it.
	GatewayHostName string

	// BrokerListen is the module broker's TCP address (default
	// DefaultBrokerListen). BrokerListener, when set, is served instead.
	BrokerListen   string
	BrokerListener net.Listener `json:"-"`

	// DeviceCACert and DeviceCAKey name a CA (PEM files) to issue the
	// daemon's certificates from, as IoT Edge's edge CA. Unset, the daemon
	// makes its own in DataDir/ca on first start.
	DeviceCACert string
	DeviceCAKey  string
	// CertCheckInterval is how often the broker's certificate is looked at
	// for renewal (default deviceca.DefaultCheckInterval).
	CertCheckInterval time.Duration

	// Restart back-off and image GC: agent.Config's.
	BackoffBase  time.Duration
	BackoffMax   time.Duration
	BackoffReset time.Duration
	ImageGCAge   time.Duration
	// StopGrace is how long a module has between SIGTERM and SIGKILL
	// (default agent.DefaultStopGrace).
	StopGrace time.Duration
	// ShutdownFlush bounds the outbox flush at stop (default
	// DefaultShutdownFlush).
	ShutdownFlush time.Duration
	// MessageQueueBytes bounds the message queue (default
	// msgqueue.DefaultMaxBytes); past it modules get no PUBACK.
	MessageQueueBytes int64
	// NoImageSync skips flushing each unpacked image to disk before it
	// runs (imagestore.WithoutSync): for a data dir that can be thrown
	// away, as outpost dev's.
	NoImageSync bool

	Logger *slog.Logger `json:"-"`
	// Ready is called once the management API listens (systemd's readiness
	// notification in `outpost daemon`).
	Ready func() error     `json:"-"`
	Now   func() time.Time `json:"-"`
}

// ErrConfig is matched (errors.Is) by errors in the configuration itself,
// such as a connection string that is not a device's.
var ErrConfig = errors.New("bad daemon configuration")

// Error is an error of New with what to do next.
type Error struct {
	Err    error
	Next   string // what to do next; "" when Err says it
	config bool
}

func (e *Error) Error() string { return "daemon: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Hint is what the user should do next.
func (e *Error) Hint() string { return e.Next }

// Is matches ErrConfig for configuration errors.
func (e *Error) Is(target error) bool { return e.config && target == ErrConfig }

func fail(err error, next string) error { return &Error{Err: err, Next: next} }

// Daemon is an assembled daemon; Run runs it.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	cs      *identity.ConnectionString
	gateway string

	st         store.Store
	sy         *syncer.Syncer
	imgs       *imagestore.Store
	rt         runtime.Runtime
	ca         *deviceca.CA
	brokerCert *deviceca.ServerCert
	wl         *workload.Server
	agent      *agent.Agent
	mgmtLn     net.Listener
	broker     Broker
	// brokerAddress is where modules reach the broker (OUTPOST_BROKER_ADDRESS)
	// when it listens on one address or not at 8883 (the port the Azure SDKs
	// dial), else "".
	brokerAddress string
	brokerRunning atomic.Bool // the broker serves: systemModules.edgeHub is running

	closeOnce sync.Once
	closers   []func() error // in the order opened

	msgs *msgqueue.Log     // the message queue: routed module messages (upstream.go)
	hc   *hubclient.Client // the hub, for the message uploader
}

// New checks cfg and opens every part of the daemon; Run starts them. On an
// error, what was opened is closed again.
func New(cfg Config) (_ *Daemon, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.BrokerListen == "" {
		cfg.BrokerListen = DefaultBrokerListen
	}
	if cfg.ShutdownFlush <= 0 {
		cfg.ShutdownFlush = DefaultShutdownFlush
	}
	if cfg.WorkloadDir == "" {
		cfg.WorkloadDir = filepath.Join(cfg.DataDir, "workload")
	}
	cs, err := cfg.check()
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, cs: cs}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	d.gateway = cfg.GatewayHostName
	if d.gateway == "" {
		d.gateway = cs.GatewayHostName
	}
	if d.gateway == "" {
		d.gateway, _ = os.Hostname()
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fail(fmt.Errorf("data dir: %w", err), "run as root, or pass --data with a directory you own")
	}
	d.st, err = store.Open(filepath.Join(cfg.DataDir, "store"), store.WithLogger(d.log))
	if err != nil {
		return nil, fail(fmt.Errorf("open the store: %w", err), "is another daemon using "+cfg.DataDir+"? try: systemctl status outpost")
	}
	d.closers = append(d.closers, d.st.Close)
	hc, err := hubclient.New(cfg.ConnectionString, cfg.CAFile)
	if err != nil {
		return nil, fail(err, "check --ca (OUTPOST_CA): it names the hub's CA certificate file")
	}
	d.sy, err = syncer.New(hc, d.st, cs.DeviceID, syncer.WithLogger(d.log))
	if err != nil {
		return nil, fail(err, "")
	}
	d.hc = hc
	d.msgs, err = msgqueue.Open(filepath.Join(cfg.DataDir, "messages"), msgqueue.Options{MaxBytes: cfg.MessageQueueBytes, Now: cfg.Now, SourceOf: broker.MessageSourceOf})
	if err != nil {
		return nil, fail(err, "")
	}
	d.closers = append(d.closers, d.msgs.Close)
	imgOpts := []imagestore.Option{imagestore.WithLogger(d.log)}
	if cfg.NoImageSync {
		imgOpts = append(imgOpts, imagestore.WithoutSync())
	}
	d.imgs, err = imagestore.Open(filepath.Join(cfg.DataDir, "images"), imgOpts...)
	if err != nil {
		return nil, fail(fmt.Errorf("open the image store: %w", err), "")
	}
	d.closers = append(d.closers, d.imgs.Close)
	d.rt, err = runtime.New(cfg.Runtime, filepath.Join(cfg.DataDir, "runtime"))
	if err != nil {
		return nil, fail(fmt.Errorf("runtime %s: %w", cfg.Runtime, err), "`outpost check` says which runtimes work here; --runtime process always does")
	}
	if err := d.openCA(); err != nil {
		return nil, err
	}
	d.wl, err = workload.New(workload.Config{Modules: d.sy.Modules, CA: d.ca, Logger: d.log, Now: cfg.Now})
	if err != nil {
		return nil, fail(err, "")
	}
	if err := d.openBroker(); err != nil {
		return nil, err
	}
	d.agent, err = agent.New(agent.Config{
		DeviceID: cs.DeviceID, HubHostName: cs.HostName, GatewayHostName: d.gateway,
		BrokerRunning: d.brokerRunning.Load,
		BrokerAddress: d.brokerAddress,
		Syncer:        d.sy, Images: d.imgs, Runtime: d.rt,
		WorkloadDir: cfg.WorkloadDir, Workload: d.wl.Handler,
		LogDir:      filepath.Join(cfg.DataDir, "logs"),
		BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, ResetAfter: cfg.BackoffReset,
		StopGrace:  cfg.StopGrace,
		ImageGCAge: cfg.ImageGCAge,
		Logger:     d.log,
		Now:        cfg.Now,
	})
	if err != nil {
		return nil, fail(err, "")
	}
	if err := d.openMgmt(); err != nil {
		return nil, err
	}
	d.sy.HandleMethods(d.answerMethod) // methods.go
	return d, nil
}

// Check returns the errors of the configuration itself (they match ErrConfig)
// that New would return, without opening anything.
func (cfg Config) Check() error {
	_, err := cfg.check()
	return err
}

func (cfg Config) check() (*identity.ConnectionString, error) {
	cs, err := identity.ParseConnectionString(cfg.ConnectionString)
	if err != nil {
		return nil, &Error{Err: err, Next: "check the device connection string", config: true}
	}
	if cs.Kind() != identity.KindDevice {
		return nil, &Error{config: true,
			Err:  fmt.Errorf("the connection string is a %s's (%s): the daemon needs a device's (HostName=…;DeviceId=…;SharedAccessKey=…)", cs.Kind(), cs.Redacted()),
			Next: "`outpost device create ID` prints a device's connection string"}
	}
	if (cfg.DeviceCACert == "") != (cfg.DeviceCAKey == "") {
		return nil, &Error{config: true, Err: errors.New("--device-ca-cert and --device-ca-key go together: give both, or neither for a CA the daemon makes itself")}
	}
	return cs, nil
}

// openCA loads the device CA given by the configuration, or the daemon's
// own (made on first start), and issues the broker's server certificate.
func (d *Daemon) openCA() error {
	now := d.cfg.Now()
	if d.cfg.DeviceCACert != "" {
		ca, err := deviceca.Load(d.cfg.DeviceCACert, d.cfg.DeviceCAKey, now)
		if err != nil {
			return fail(err, "check --device-ca-cert and --device-ca-key: a CA certificate and its unencrypted private key, PEM")
		}
		d.ca = ca
	} else {
		cn := "outpost device CA " + d.cs.DeviceID
		if len(cn) > 64 {
			cn = cn[:64]
		}
		dir := filepath.Join(d.cfg.DataDir, "ca")
		ca, created, err := deviceca.LoadOrCreate(dir, cn, now)
		if err != nil {
			return fail(err, "")
		}
		if created {
			d.log.Info("device CA made", "cert", ca.CertFile(), "notAfter", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
		d.ca = ca
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	sc, err := d.ca.NewServerCert(deviceca.ServerRequest{CommonName: d.gateway, Hosts: hosts}, d.cfg.Now, d.log)
	if err != nil {
		return fail(fmt.Errorf("the broker's certificate for %q: %w", d.gateway, err), "pass --gateway-hostname with a host name of this machine")
	}
	d.brokerCert = sc
	return nil
}

// openMgmt listens on the management socket, unless given a listener.
func (d *Daemon) openMgmt() error {
	if d.cfg.MgmtListener != nil {
		d.mgmtLn = d.cfg.MgmtListener
		return nil
	}
	l, err := mgmt.Listen(d.cfg.MgmtSocket)
	if err != nil {
		hint := "run as root, or pass --mgmt-socket with a path you may create"
		switch {
		case errors.Is(err, mgmt.ErrInUse):
			hint = fmt.Sprintf("another daemon is running? `outpost status --mgmt-socket %s` asks it; stop it first, or give this one its own --mgmt-socket and --data", d.cfg.MgmtSocket)
		case errors.Is(err, mgmt.ErrNotSocket):
			hint = "" // the error says what to do
		}
		return fail(err, hint)
	}
	d.mgmtLn = l
	d.closers = append(d.closers, func() error {
		_ = l.Close()
		return os.Remove(d.cfg.MgmtSocket)
	})
	return nil
}

// CA is the device CA; its certificate is the modules' trust bundle.
func (d *Daemon) CA() *deviceca.CA { return d.ca }

// BrokerTLS is the broker's server TLS configuration: the certificate the
// device CA issued for the gateway host name, localhost and the loopback
// addresses, renewed without a restart.
func (d *Daemon) BrokerTLS() *tls.Config { return d.brokerCert.TLSConfig() }

// Syncer is the daemon's syncer (modules, keys and twins as cached).
func (d *Daemon) Syncer() *syncer.Syncer { return d.sy }

// Agent is the daemon's agent.
func (d *Daemon) Agent() *agent.Agent { return d.agent }

// DeviceID is the device the daemon runs as.
func (d *Daemon) DeviceID() string { return d.cs.DeviceID }

// GatewayHostName is the host name modules reach the daemon by.
func (d *Daemon) GatewayHostName() string { return d.gateway }

// close closes what New opened, in reverse order.
func (d *Daemon) close() error {
	var errs []error
	d.closeOnce.Do(func() {
		for i := len(d.closers) - 1; i >= 0; i-- {
			if err := d.closers[i](); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// Close releases what New opened; for a daemon that is not Run (Run closes
// them itself when it returns).
func (d *Daemon) Close() error { return d.close() }

// part is one running part of the daemon.
type part struct {
	name string
	run  func(ctx context.Context) error
	// beforeStop runs before the part's context is cancelled.
	beforeStop func()

	cancel context.CancelFunc
	done   chan error
	exited bool
}

// Run starts the parts in order and runs until ctx is done or a part stops
// by itself, then stops them in reverse order, waiting for each, and closes
// what New opened.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.close()
	isolation := "isolated"
	if !d.rt.Isolated() {
		isolation = "NOT isolated: modules run as host processes, which can reach every module's workload socket"
	}
	d.log.Info("outpost daemon", "device", d.cs.DeviceID, "hub", d.cs.HostName, "runtime", d.rt.Name(), "isolation", isolation,
		"data", d.cfg.DataDir, "mgmt-socket", d.cfg.MgmtSocket, "gateway", d.gateway, "device-ca", d.ca.CertFile())

	parts := []*part{
		{name: "sync", run: d.sy.Run, beforeStop: func() {
			fctx, stop := context.WithTimeout(context.Background(), d.cfg.ShutdownFlush)
			defer stop()
			if err := d.sy.Flush(fctx); err != nil {
				d.log.Warn("reported properties left queued for the next start", "err", err)
			}
		}},
		{name: "certificate renewal", run: func(ctx context.Context) error {
			d.brokerCert.Run(ctx, d.cfg.CertCheckInterval)
			return nil
		}},
	}
	if d.broker != nil {
		parts = append(parts, &part{name: "module broker", run: func(ctx context.Context) error {
			d.brokerRunning.Store(true)
			defer d.brokerRunning.Store(false)
			return d.broker.Run(ctx)
		}})
		if r := d.hubReporter(); r != nil {
			parts = append(parts, &part{name: "$edgeHub status", run: r.Run})
		}
		parts = append(parts, &part{name: "message upload", run: (&uploader{
			deviceID: d.cs.DeviceID, hub: d.hc, q: d.msgs, sy: d.sy, log: d.log.With("part", "upstream"),
		}).Run})
	}
	parts = append(parts,
		&part{name: "management API", run: func(ctx context.Context) error {
			return mgmt.New(d.agent, d.cs.HostName, d.log).WithBroker(d.brokerModules).WithMessages(d.messageQueue).WithDeviceCA(d.deviceCAStatus).WithChildren(d.childLinks).Serve(ctx, d.mgmtLn)
		}},
		&part{name: "agent", run: d.agent.Run},
	)

	exited := make(chan *part, len(parts))
	for _, p := range parts {
		pctx, cancel := context.WithCancel(context.Background())
		p.cancel, p.done = cancel, make(chan error, 1)
		go func() {
			err := p.run(pctx)
			p.done <- err
			exited <- p
		}()
		// Ready once the management API listens (its listener is open).
		if p.name == "management API" && d.cfg.Ready != nil {
			if err := d.cfg.Ready(); err != nil {
				d.log.Warn("readiness notification", "err", err)
			}
		}
	}

	var errs []error
	wrap := func(p *part, err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			if p.name == "agent" {
				errs = append(errs, err)
			} else {
				errs = append(errs, fmt.Errorf("daemon: %s: %w", p.name, err))
			}
		}
	}
	select {
	case <-ctx.Done():
	case p := <-exited:
		err := <-p.done
		p.exited = true
		if err == nil && p.name != "agent" {
			err = errors.New("stopped by itself")
		}
		wrap(p, err)
		if p.name != "agent" {
			d.log.Error("a part of the daemon stopped: stopping the others", "part", p.name, "err", err)
		}
	}
	d.log.Info("stopping")
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if p.beforeStop != nil {
			p.beforeStop()
		}
		p.cancel()
		if !p.exited {
			wrap(p, <-p.done)
		}
	}
	return errors.Join(errs...)
}
