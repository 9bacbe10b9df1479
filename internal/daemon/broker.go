package daemon

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strconv"

	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/msgqueue"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// Broker is the module broker (internal/broker) as the daemon runs it: Run
// serves until ctx is done. It is started after the syncer and the
// certificate renewal, before the management API and the agent (so that
// modules find it when they start), and stopped in reverse order: after the
// agent has stopped the modules, before the syncer flushes its outbox.
type Broker interface {
	Run(ctx context.Context) error
}

// BrokerDeps is what the daemon hands the module broker.
type BrokerDeps struct {
	DeviceID    string
	HubHostName string         // the username's and tokens' host name
	Syncer      *syncer.Syncer // twins, module identities with their keys, Watch, PatchReported
	TLS         *tls.Config    // server certificate from the device CA, renewed in place
	Listener    net.Listener   // Config.BrokerListener, or a TCP listener on Config.BrokerListen
	Store       store.Store    // the daemon's: the broker keeps persistent sessions there
	Messages    *msgqueue.Log  // the message queue: routed module messages
	Logger      *slog.Logger
}

// newBroker makes the module broker (internal/broker). It calls deps for
// what the broker needs; that opens the listener. Tests replace it.
var newBroker = func(deps func() (BrokerDeps, error)) (Broker, error) {
	d, err := deps()
	if err != nil {
		return nil, err
	}
	b, err := broker.New(broker.Config{
		DeviceID: d.DeviceID, HubHostName: d.HubHostName, Twins: d.Syncer,
		TLS: d.TLS, Store: d.Store, Logger: d.Logger, Messages: d.Messages,
	})
	if err != nil {
		return nil, err
	}
	return &runningBroker{Broker: b, ln: d.Listener}, nil
}

// runningBroker serves a broker on its listener.
type runningBroker struct {
	*broker.Broker
	ln net.Listener
}

func (r *runningBroker) Run(ctx context.Context) error { return r.Serve(ctx, r.ln) }

// openBroker makes the module broker, listening on Config.BrokerListen
// unless given Config.BrokerListener.
func (d *Daemon) openBroker() error {
	deps := func() (BrokerDeps, error) {
		l := d.cfg.BrokerListener
		if l == nil {
			var err error
			l, err = net.Listen("tcp", d.cfg.BrokerListen)
			if err != nil {
				return BrokerDeps{}, fail(err, "is another broker (an IoT Edge hub, mosquitto) listening there? stop it, or pass --broker-listen with a free address")
			}
			d.closers = append(d.closers, l.Close)
		}
		if ta, ok := l.Addr().(*net.TCPAddr); ok {
			switch {
			case !ta.IP.IsUnspecified(): // one address: the gateway name may not lead there
				d.brokerAddress = ta.String()
			case ta.Port != 8883:
				d.brokerAddress = net.JoinHostPort(d.gateway, strconv.Itoa(ta.Port))
			}
		}
		return BrokerDeps{
			DeviceID: d.cs.DeviceID, HubHostName: d.cs.HostName, Syncer: d.sy,
			TLS: d.BrokerTLS(), Listener: l, Store: d.st, Logger: d.log.With("part", "broker"), Messages: d.msgs,
		}, nil
	}
	b, err := newBroker(deps)
	if err != nil {
		return err
	}
	d.broker = b
	return nil
}

// hubReporter reports the broker's status in $edgeHub, or is nil when the
// broker in the slot does not say it.
func (d *Daemon) hubReporter() *hubReporter {
	b, ok := d.broker.(interface{ Status() []broker.ModuleStatus })
	if !ok {
		return nil
	}
	return &hubReporter{deviceID: d.cs.DeviceID, sy: d.sy, clients: b.Status, log: d.log.With("part", "edgehub-status")}
}

// brokerModules is the modules' links to the broker for the management
// API's /status (none when the broker in the slot does not say).
func (d *Daemon) brokerModules() []mgmtclient.BrokerModule {
	b, ok := d.broker.(interface{ Status() []broker.ModuleStatus })
	if !ok {
		return nil
	}
	var out []mgmtclient.BrokerModule
	for _, m := range b.Status() {
		out = append(out, mgmtclient.BrokerModule{ModuleID: m.ModuleID, Connected: m.Connected, Since: m.Since, DesiredVersion: m.DesiredVersion})
	}
	return out
}
