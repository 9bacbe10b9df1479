package deviceclient_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/sdk/deviceclient"
)

var leafKey = base64.StdEncoding.EncodeToString([]byte("leaf-1's key, 32 bytes of it...."))

// TestConfigErrors: what New refuses before dialling, each error naming
// the field at fault and what to give instead.
func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  deviceclient.Config
		want []string
	}{
		{"module's connection string", deviceclient.Config{ConnectionString: "HostName=hub.test;DeviceId=edge;ModuleId=m;SharedAccessKey=" + leafKey + ";GatewayHostName=edge.test"},
			[]string{"ModuleId", `"m"`, "module's identity"}},
		{"no gateway", deviceclient.Config{ConnectionString: "HostName=hub.test;DeviceId=leaf-1;SharedAccessKey=" + leafKey},
			[]string{"GatewayHostName", "missing"}},
		{"no key", deviceclient.Config{ConnectionString: "HostName=hub.test;DeviceId=leaf-1;GatewayHostName=edge.test"},
			[]string{"no SharedAccessKey", "a device's connection string", "outpost device show"}},
		{"no device id", deviceclient.Config{ConnectionString: "HostName=hub.test;SharedAccessKey=" + leafKey + ";GatewayHostName=edge.test"},
			[]string{"DeviceID (DeviceId)", "GatewayHostName=…"}},
		{"key not base64", deviceclient.Config{ConnectionString: "HostName=hub.test;DeviceId=leaf-1;SharedAccessKey=%%%;GatewayHostName=edge.test"},
			[]string{"SharedAccessKey is not base64"}},
		{"not key=value", deviceclient.Config{ConnectionString: "HostName=hub.test;leaf-1"},
			[]string{`"leaf-1" is not key=value`, "GatewayHostName=…"}},
		{"CA not PEM", deviceclient.Config{ConnectionString: "HostName=hub.test;DeviceId=leaf-1;SharedAccessKey=" + leafKey + ";GatewayHostName=edge.test", CAPEM: []byte("nope")},
			[]string{"CA", "no PEM certificate"}},
	} {
		_, err := deviceclient.New(t.Context(), c.cfg)
		var ce *deviceclient.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a *ConfigError", c.name, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "deviceclient: ") {
			t.Errorf("%s: %q does not start with deviceclient:", c.name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
	}
}

// broker is a TLS listener with a certificate from a device CA for
// edge.test that answers each CONNECT with code and hands it to the test.
func broker(t *testing.T, code byte) (addr string, caPEM []byte, connects <-chan *packets.ConnectPacket) {
	t.Helper()
	ca, err := deviceca.Create(t.TempDir(), "test edge CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ca.NewServerCert(deviceca.ServerRequest{CommonName: "edge.test", Hosts: []string{"localhost"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", sc.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan *packets.ConnectPacket, 8)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				p, err := packets.ReadPacket(conn)
				if err != nil {
					return
				}
				if cp, ok := p.(*packets.ConnectPacket); ok {
					ch <- cp
				}
				ack := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
				ack.ReturnCode = code
				_ = ack.Write(conn)
			}()
		}
	}()
	return l.Addr().String(), ca.TrustBundle(), ch
}

// TestConnectsAsTheDevice: the client dials the broker trusting the CA it
// is given, for the gateway host name, and sends IoT Hub's device CONNECT:
// client id the device id, username {hub}/{device}/?api-version=…, and a
// SAS token for {hub}/devices/{device} signed with the device's key. A
// refusal (not authorised) is returned at once, as retrying will not fix
// it; so is a broker whose certificate does not chain to the CA given.
func TestConnectsAsTheDevice(t *testing.T) {
	addr, caPEM, connects := broker(t, packets.ErrRefusedNotAuthorised)
	cs := "HostName=hub.test;DeviceId=leaf-1;SharedAccessKey=" + leafKey + ";GatewayHostName=edge.test"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := deviceclient.New(ctx, deviceclient.Config{ConnectionString: cs, CAPEM: caPEM, BrokerAddress: addr, TokenTTL: time.Hour})
	if !errors.Is(err, packets.ErrorRefusedNotAuthorised) || ctx.Err() != nil {
		t.Fatalf("refused CONNECT: %v (ctx %v), want not authorised at once", err, ctx.Err())
	}
	cp := <-connects
	if cp.ClientIdentifier != "leaf-1" || cp.Username != "hub.test/leaf-1/?api-version=2021-04-12" || cp.ProtocolVersion != 4 {
		t.Errorf("CONNECT client id %q, username %q, version %d", cp.ClientIdentifier, cp.Username, cp.ProtocolVersion)
	}
	sas, err := identity.ParseSAS(string(cp.Password))
	if err != nil {
		t.Fatalf("password %q: %v", cp.Password, err)
	}
	if err := sas.Verify("hub.test/devices/leaf-1", time.Now(), leafKey); err != nil {
		t.Errorf("the SAS token %q does not verify for hub.test/devices/leaf-1 with the device's key: %v", cp.Password, err)
	}
	if d := time.Until(sas.Expiry); d < 59*time.Minute || d > time.Hour {
		t.Errorf("token expires in %s, want the TokenTTL (1h)", d)
	}
	if sas.Resource != "hub.test/devices/leaf-1" {
		t.Errorf("token resource %q, want the device's (hub.test/devices/leaf-1)", sas.Resource)
	}

	// Another CA: the certificate does not verify, returned at once, and
	// no CONNECT is sent.
	other, err := deviceca.Create(t.TempDir(), "another CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = deviceclient.New(ctx, deviceclient.Config{ConnectionString: cs, CAPEM: other.TrustBundle(), BrokerAddress: addr})
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted broker: %v (ctx %v)", err, ctx.Err())
	}
	// The gateway host name is what the certificate is checked for.
	_, err = deviceclient.New(ctx, deviceclient.Config{ConnectionString: strings.Replace(cs, "edge.test", "other.test", 1), CAPEM: caPEM, BrokerAddress: addr})
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "other.test") {
		t.Fatalf("broker certificate for another name: %v (ctx %v)", err, ctx.Err())
	}
	select {
	case cp := <-connects:
		t.Errorf("CONNECT %q sent over a TLS connection that did not verify", cp.ClientIdentifier)
	default:
	}
}
