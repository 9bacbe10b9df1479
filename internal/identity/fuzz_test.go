package identity

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzParseSAS(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "identity", "sas_vectors.json")); err == nil {
		var v sasVectors
		if json.Unmarshal(b, &v) == nil {
			for _, c := range append(v.Cases, v.Foreign...) {
				f.Add(c.Token)
			}
		}
	}
	for _, s := range []string{
		"",
		"SharedAccessSignature",
		"SharedAccessSignature sr=hub&sig=abc%3D&se=1",
		"sr=hub&sig=abc&se=1&skn=",
		"sr=a%2Fb+c&SIG=%2B&se=0&skn=p%20q&x=y",
		"sr=%zz&sig=&se=01",
		"sr=hub&&sig=x&se=253402300799&",
		"SharedAccessSignature sr=hub&sig=x&se=1 extra",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		s, err := ParseSAS(token)
		if err != nil {
			return
		}
		out := s.String()
		s2, err := ParseSAS(out)
		if err != nil {
			t.Fatalf("ParseSAS(%q) ok, but its String() %q does not parse: %v", token, out, err)
		}
		if s2.Resource != s.Resource || s2.Signature != s.Signature || !s2.Expiry.Equal(s.Expiry) || s2.KeyName != s.KeyName {
			t.Fatalf("round trip changed the token:\n%+v\n%+v", s, s2)
		}
		if s2.stringToSign() != s.stringToSign() {
			t.Fatalf("round trip changed the string to sign: %q vs %q", s.stringToSign(), s2.stringToSign())
		}
		if out2 := s2.String(); out2 != out {
			t.Fatalf("String() is not stable: %q vs %q", out, out2)
		}
		e1 := s.Verify(s.Resource, s.Expiry, testKey1)
		e2 := s2.Verify(s2.Resource, s2.Expiry, testKey1)
		if (e1 == nil) != (e2 == nil) {
			t.Fatalf("Verify differs after round trip: %v vs %v", e1, e2)
		}
	})
}

func FuzzParseConnectionString(f *testing.F) {
	for _, s := range []string{
		"",
		"HostName=hub.example;SharedAccessKeyName=owner;SharedAccessKey=" + testKey1,
		"HostName=localhost:8443;DeviceId=dev#1;SharedAccessKey=" + testKey1 + ";UseInsecureHttp=true",
		"HostName=hub;DeviceId=d1;ModuleId=$edgeAgent;SharedAccessKey=" + testKey3 + ";GatewayHostName=gw",
		" SharedAccessKey = " + testKey2 + " ; DeviceId=a=b ;HostName=[::1]:8443;;UseInsecureHttp=false;",
		"HostName=hub;DeviceId=d1;x509=true",
		"HostName=hub;deviceid=d1;SharedAccessKey=YWJj",
		"HostName=a:b:c;DeviceId=d1;SharedAccessKey=" + testKey1,
	} {
		f.Add(s)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConnectionString(s)
		if err != nil {
			return
		}
		out := c.String()
		c2, err := ParseConnectionString(out)
		if err != nil {
			t.Fatalf("ParseConnectionString(%q) ok, but its String() %q does not parse: %v", s, out, err)
		}
		if *c2 != *c {
			t.Fatalf("round trip changed the connection string:\n%+v\n%+v", *c, *c2)
		}
		if c2.String() != out {
			t.Fatalf("String() is not stable: %q vs %q", out, c2.String())
		}
		tok, err := c.Token(time.Hour, now)
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		sas, err := ParseSAS(tok)
		if err != nil {
			t.Fatalf("ParseSAS(Token()): %v", err)
		}
		if err := sas.Verify(c.Resource(), now, c.SharedAccessKey); err != nil {
			t.Fatalf("Verify(Token()): %v", err)
		}
	})
}
