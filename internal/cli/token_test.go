package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/identity"
)

func TestTokenArgs(t *testing.T) {
	ios, _, _, _ := TestIO()
	f := &Factory{IO: ios}
	for _, tc := range []struct {
		args []string
		want tokenOptions
		err  string
	}{
		{[]string{"d1"}, tokenOptions{Target: target{Device: "d1"}, TTL: time.Hour}, ""},
		{[]string{"d1/m1", "--ttl", "15m"}, tokenOptions{Target: target{Device: "d1", Module: "m1"}, TTL: 15 * time.Minute}, ""},
		{[]string{"d1", "--ttl", "0s"}, tokenOptions{}, "invalid --ttl 0s: want a positive duration"},
		{[]string{"d1", "--ttl", "-1h"}, tokenOptions{}, "invalid --ttl"},
		{[]string{"d1", "--ttl", "soon"}, tokenOptions{}, `invalid argument "soon" for "--ttl"`},
		{[]string{}, tokenOptions{TTL: time.Hour}, ""},
		{[]string{"d1", "d2"}, tokenOptions{}, "takes at most one DEVICE or DEVICE/MODULE"},
		{[]string{"d1/"}, tokenOptions{}, "the module id is empty"},
	} {
		var got *tokenOptions
		err := parseCmd(newTokenCmd(f, func(o *tokenOptions) error { got = o; return nil }), tc.args...)
		if checkParseErr(t, tc.args, err, tc.err) && !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q: options %+v, want %+v", tc.args, *got, tc.want)
		}
	}
}

func TestToken(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	d := mustCreateDevice(t, h, "d1")
	m := mustCreateModule(t, h, "d1", "m1")

	code, out, errOut := run(t, "token", "d1")
	if code != 0 || !strings.HasPrefix(out, "SharedAccessSignature sr=") {
		t.Fatalf("token d1: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	tok := strings.TrimSpace(out)
	sas, err := identity.ParseSAS(tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := sas.Verify(identity.DeviceResource(h.HostName(), "d1"), time.Now(), d.Authentication.SymmetricKey.PrimaryKey); err != nil {
		t.Errorf("device token: %v", err)
	}
	if sas.KeyName != "" || time.Until(sas.Expiry) < 59*time.Minute || time.Until(sas.Expiry) > time.Hour+time.Second {
		t.Errorf("device token: skn %q, expires %s", sas.KeyName, sas.Expiry)
	}
	// The hub takes it as the device's own credential.
	if status := getWithToken(t, h, "/twins/d1", tok); status != http.StatusOK {
		t.Errorf("GET /twins/d1 with the device token: %d", status)
	}

	code, out, _ = run(t, "token", "d1/m1", "--ttl", "15m", "-o", "json")
	var res tokenResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil {
		t.Fatalf("token d1/m1 -o json: code %d, %v, %q", code, err, out)
	}
	if res.Resource != h.HostName()+"/devices/d1/modules/m1" || time.Until(res.ExpiresAt) > 15*time.Minute+time.Second || time.Until(res.ExpiresAt) < 14*time.Minute {
		t.Errorf("token d1/m1 -o json: %+v", res)
	}
	sas, err = identity.ParseSAS(res.Token)
	if err != nil || sas.Verify(res.Resource, time.Now(), m.Authentication.SymmetricKey.PrimaryKey) != nil || !sas.Expiry.Equal(res.ExpiresAt) {
		t.Errorf("module token %q: %v", res.Token, err)
	}
	if status := getWithToken(t, h, "/twins/d1/modules/m1", res.Token); status != http.StatusOK {
		t.Errorf("GET the module twin with the module token: %d", status)
	}
	if strings.Contains(out, m.Authentication.SymmetricKey.PrimaryKey) {
		t.Errorf("token output shows the key: %q", out)
	}

	// No argument: the policy of the connection string, for the service API.
	code, out, errOut = run(t, "token", "--ttl", "10m")
	if code != 0 {
		t.Fatalf("token: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	tok = strings.TrimSpace(out)
	sas, err = identity.ParseSAS(tok)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := identity.ParseConnectionString(h.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	if err := sas.Verify(h.HostName(), time.Now(), cs.SharedAccessKey); err != nil || sas.KeyName != cs.SharedAccessKeyName || time.Until(sas.Expiry) > 10*time.Minute+time.Second {
		t.Errorf("policy token %q: %v, skn %q (want %q), expires %s", tok, err, sas.KeyName, cs.SharedAccessKeyName, sas.Expiry)
	}
	if status := getWithToken(t, h, "/devices?api-version=2021-04-12", tok); status != http.StatusOK {
		t.Errorf("GET /devices with the policy token: %d", status)
	}
	if strings.Contains(out, cs.SharedAccessKey) {
		t.Errorf("token output shows the policy key: %q", out)
	}

	for _, arg := range []string{"nope", "d1/nope"} {
		code, out, errOut := run(t, "token", arg)
		if code != ExitNotFound || out != "" || !strings.Contains(errOut, "token for "+arg+":") {
			t.Errorf("token %s: code %d, stdout %q, stderr %q", arg, code, out, errOut)
		}
	}
}

// getWithToken sends GET path to the hub with a raw Authorization header.
func getWithToken(t *testing.T, h *hubtest.Hub, path, token string) int {
	t.Helper()
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+h.HostName()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
