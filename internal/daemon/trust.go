package daemon

import (
	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// deviceCAStatus is the device CA and the broker's current certificate, for
// outpost status: the root leaf devices must trust (as outpost daemon ca
// reads it from the CA's file) and the names the broker's certificate is
// valid for.
func (d *Daemon) deviceCAStatus() *mgmtclient.DeviceCA {
	root := d.ca.Cert
	if r, err := deviceca.ReadRoot(d.ca.CertFile()); err == nil {
		root = r.Cert
	}
	out := &mgmtclient.DeviceCA{
		File: d.ca.CertFile(), Subject: root.Subject.String(), Fingerprint: deviceca.Fingerprint(root),
		NotAfter: d.ca.Cert.NotAfter.UTC(), BrokerNames: []string{},
	}
	if cur := d.brokerCert.Current(); cur != nil {
		out.BrokerNames = append(out.BrokerNames, cur.Cert.DNSNames...)
		for _, ip := range cur.Cert.IPAddresses {
			out.BrokerNames = append(out.BrokerNames, ip.String())
		}
		out.BrokerNotAfter = cur.Cert.NotAfter.UTC()
	}
	return out
}
