package identity

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseConnectionString(t *testing.T) {
	for _, c := range []struct {
		in       string
		want     ConnectionString
		kind     Kind
		resource string
		str      string // String(); "" means same as in
	}{
		{
			in:       "HostName=hub.example;SharedAccessKeyName=owner;SharedAccessKey=" + testKey1,
			want:     ConnectionString{HostName: "hub.example", SharedAccessKeyName: "owner", SharedAccessKey: testKey1},
			kind:     KindService,
			resource: "hub.example",
		},
		{
			in:       "HostName=localhost:8443;DeviceId=dev#1;SharedAccessKey=" + testKey1 + ";UseInsecureHttp=true",
			want:     ConnectionString{HostName: "localhost:8443", DeviceID: "dev#1", SharedAccessKey: testKey1, UseInsecureHTTP: true},
			kind:     KindDevice,
			resource: "localhost:8443/devices/dev#1",
		},
		{
			in:       "HostName=hub.example;DeviceId=d1;ModuleId=m(1);SharedAccessKey=" + testKey3 + ";GatewayHostName=edge.local",
			want:     ConnectionString{HostName: "hub.example", DeviceID: "d1", ModuleID: "m(1)", SharedAccessKey: testKey3, GatewayHostName: "edge.local"},
			kind:     KindModule,
			resource: "hub.example/devices/d1/modules/m(1)",
		},
		{
			in:       "HostName=hub.example;DeviceId=edge-1;ModuleId=$edgeAgent;SharedAccessKey=" + testKey1,
			want:     ConnectionString{HostName: "hub.example", DeviceID: "edge-1", ModuleID: "$edgeAgent", SharedAccessKey: testKey1},
			kind:     KindModule,
			resource: "hub.example/devices/edge-1/modules/$edgeAgent",
		},
		{
			// Any order, whitespace, a trailing ';', ids with '='.
			in:       "  SharedAccessKey = " + testKey1 + " ; DeviceId=a=b ;HostName=[::1]:8443;;UseInsecureHttp=false;\n",
			want:     ConnectionString{HostName: "[::1]:8443", DeviceID: "a=b", SharedAccessKey: testKey1},
			kind:     KindDevice,
			resource: "[::1]:8443/devices/a=b",
			str:      "HostName=[::1]:8443;DeviceId=a=b;SharedAccessKey=" + testKey1,
		},
		{
			// A policy acting for a device: the device's resource, with skn.
			in:       "HostName=hub.example;DeviceId=d1;SharedAccessKeyName=device;SharedAccessKey=" + testKey2,
			want:     ConnectionString{HostName: "hub.example", DeviceID: "d1", SharedAccessKeyName: "device", SharedAccessKey: testKey2},
			kind:     KindDevice,
			resource: "hub.example/devices/d1",
		},
		{
			in:       "HostName=10.0.0.1;SharedAccessKeyName=registryReadWrite;SharedAccessKey=" + testKey2 + ";UseInsecureHttp=TRUE",
			want:     ConnectionString{HostName: "10.0.0.1", SharedAccessKeyName: "registryReadWrite", SharedAccessKey: testKey2, UseInsecureHTTP: true},
			kind:     KindService,
			resource: "10.0.0.1",
			str:      "HostName=10.0.0.1;SharedAccessKeyName=registryReadWrite;SharedAccessKey=" + testKey2 + ";UseInsecureHttp=true",
		},
	} {
		cs, err := ParseConnectionString(c.in)
		if err != nil {
			t.Errorf("ParseConnectionString(%q): %v", c.in, err)
			continue
		}
		if *cs != c.want {
			t.Errorf("ParseConnectionString(%q) = %+v, want %+v", c.in, *cs, c.want)
		}
		if cs.Kind() != c.kind {
			t.Errorf("%q: Kind() = %v, want %v", c.in, cs.Kind(), c.kind)
		}
		if got := cs.Resource(); got != c.resource {
			t.Errorf("%q: Resource() = %q, want %q", c.in, got, c.resource)
		}
		str := c.str
		if str == "" {
			str = c.in
		}
		if got := cs.String(); got != str {
			t.Errorf("String() = %q, want %q", got, str)
		}
		if got := cs.Redacted(); strings.Contains(got, cs.SharedAccessKey) || !strings.Contains(got, "SharedAccessKey=<redacted>") {
			t.Errorf("Redacted() = %q", got)
		}
	}
}

func TestParseConnectionStringErrors(t *testing.T) {
	k := ";SharedAccessKey=" + testKey1
	for in, want := range map[string]string{
		"":                                              "connection string is empty",
		" ;\t":                                          "connection string: missing HostName",
		"DeviceId=d1" + k:                               "connection string: missing HostName",
		"HostName=hub" + k:                              "connection string: missing DeviceId (for a device or module) or SharedAccessKeyName (for a hub policy)",
		"HostName=hub;DeviceId=d1":                      "connection string: SharedAccessKey is required with DeviceId",
		"HostName=hub;DeviceId=d1;ModuleId=m1":          "connection string: SharedAccessKey is required with DeviceId",
		"HostName=hub;SharedAccessKeyName=owner":        "connection string: SharedAccessKey is required with SharedAccessKeyName",
		"HostName=hub;ModuleId=m1" + k:                  "connection string: ModuleId requires DeviceId",
		"HostName=hub;DeviceId=d 1" + k:                 `connection string: device id "d 1": character ' ' at position 1 is not allowed`,
		"HostName=hub;DeviceId=d1;ModuleId=m/1" + k:     `connection string: module id "m/1": character '/' at position 1`,
		"HostName=hub;SharedAccessKeyName=own er" + k:   `connection string: policy name "own er": character ' ' at position 3`,
		"HostName=hub;DeviceId=d1;SharedAccessKey=abc":  "connection string: SharedAccessKey: key is not valid base64",
		"HostName=hub;DeviceId=d1;SharedAccessKey=YWJj": "connection string: SharedAccessKey: key decodes to 3 bytes, want 16 to 64",
		"HostName=hub;DeviceId=d1;SharedAccessKey=":     "connection string: SharedAccessKey is empty",
		"HostName=;DeviceId=d1" + k:                     "connection string: HostName is empty",
		"HostName=hub;HostName=hub2;DeviceId=d1" + k:    "connection string: HostName is given twice",
		"HostName=hub;DeviceId=d1" + k + k:              "connection string: SharedAccessKey is given twice",
		"HostName=hub;deviceid=d1" + k:                  `connection string: unknown key "deviceid" (keys are case-sensitive: did you mean DeviceId?)`,
		"HostName=hub;DeviceId=d1;Foo=bar" + k:          `connection string: unknown key "Foo" (known: HostName, DeviceId, ModuleId, SharedAccessKeyName, SharedAccessKey, GatewayHostName, UseInsecureHttp)`,
		"HostName=hub;DeviceId=d1;x509=true":            "connection string: x509 authentication is not supported; use SharedAccessKey",
		"HostName=hub;DeviceId=d1;SharedAccessSignature=SharedAccessSignature sr=x": "connection string: SharedAccessSignature is not supported",
		"HostName=hub;DeviceId=d1;UseInsecureHttp=yes" + k:                          `connection string: UseInsecureHttp is "yes", want true or false`,
		"HostName=hub;DeviceId=d1;" + testKey1[:43]:                                 "connection string: part 3 is not Key=Value",
		"HostName=hub;DeviceId=d1;" + testKey1:                                      "connection string: part 3 has an unknown key",
		"HostName=hub;DeviceId=d1;SharedAccessKey " + testKey1[:43] + "=1":          "connection string: part 3 has an unknown key",
		"HostName=hub;DeviceId=d1;" + testKey3[:22] + "==":                          "connection string: part 3 has an unknown key",
		"HostName=hub/x;DeviceId=d1" + k:                                            `connection string: HostName "hub/x": character '/' at position 3 is not allowed in a host name`,
		"HostName=hub:0;DeviceId=d1" + k:                                            `connection string: HostName "hub:0": port "0" is not 1-65535`,
		"HostName=hub:99999;DeviceId=d1" + k:                                        `port "99999" is not 1-65535`,
		"HostName=hub:x;DeviceId=d1" + k:                                            `port "x" is not 1-65535`,
		"HostName=a:b:c;DeviceId=d1" + k:                                            `HostName "a:b:c": want host or host:port`,
		"HostName=[zz]:1;DeviceId=d1" + k:                                           `"zz" is not an IPv6 address`,
		"HostName=:8443;DeviceId=d1" + k:                                            `HostName ":8443": host is empty`,
		"HostName=hub;DeviceId=d1;GatewayHostName=gw gw" + k:                        `connection string: GatewayHostName "gw gw": character ' '`,
	} {
		_, err := ParseConnectionString(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConnectionString(%q) = %v, want error containing %q", in, err, want)
			continue
		}
		for _, key := range []string{testKey1, testKey1[:20], testKey3[:20]} {
			if strings.Contains(err.Error(), key) {
				t.Errorf("error %q contains the key", err)
			}
		}
	}
}

func TestConnectionStringToken(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, in := range []string{
		"HostName=hub.example;SharedAccessKeyName=owner;SharedAccessKey=" + testKey1,
		"HostName=localhost:8443;DeviceId=d1;SharedAccessKey=" + testKey1,
		"HostName=localhost:8443;DeviceId=d1;ModuleId=$edgeAgent;SharedAccessKey=" + testKey2,
		"HostName=hub.example;DeviceId=d1;SharedAccessKeyName=device;SharedAccessKey=" + testKey2,
	} {
		cs, err := ParseConnectionString(in)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := cs.Token(time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSAS(tok)
		if err != nil {
			t.Fatal(err)
		}
		if s.Resource != cs.Resource() || s.KeyName != cs.SharedAccessKeyName || !s.Expiry.Equal(now.Add(time.Hour)) {
			t.Errorf("%q: token %+v", in, s)
		}
		if err := s.Verify(cs.Resource(), now, cs.SharedAccessKey); err != nil {
			t.Errorf("%q: Verify: %v", in, err)
		}
		if err := s.Verify(cs.Resource(), now.Add(time.Hour+ClockSkew+time.Second), cs.SharedAccessKey); !errors.Is(err, ErrExpired) {
			t.Errorf("%q: Verify after ttl = %v, want ErrExpired", in, err)
		}
	}

	cs := &ConnectionString{HostName: "hub", DeviceID: "d1", SharedAccessKey: testKey1}
	if _, err := cs.Token(0, now); err == nil || !strings.Contains(err.Error(), "ttl 0s is not positive") {
		t.Errorf("Token(0) = %v", err)
	}
	cs.SharedAccessKey = ""
	if _, err := cs.Token(time.Hour, now); err == nil || !strings.Contains(err.Error(), "SharedAccessKey is required") {
		t.Errorf("Token without key = %v", err)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindService: "service", KindDevice: "device", KindModule: "module", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
