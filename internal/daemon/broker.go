package daemon

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"

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
	Logger      *slog.Logger
}

// newBroker makes the module broker, or returns nil while the daemon has
// none. It calls deps for what the broker needs: that opens the listener,
// so a daemon without a broker does not take the port.
//
// HOOK (issue 10, item 4): internal/broker is made here, e.g.
//
//	return broker.New(broker.Config{DeviceID: deps.DeviceID, …}), nil
var newBroker = func(deps func() (BrokerDeps, error)) (Broker, error) { return nil, nil }

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
		return BrokerDeps{
			DeviceID: d.cs.DeviceID, HubHostName: d.cs.HostName, Syncer: d.sy,
			TLS: d.BrokerTLS(), Listener: l, Logger: d.log.With("part", "broker"),
		}, nil
	}
	b, err := newBroker(deps)
	if err != nil {
		return err
	}
	d.broker = b
	return nil
}
