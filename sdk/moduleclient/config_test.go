package moduleclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// TestEnvironmentRefused: missing variables are each named, an auth
// scheme other than sasToken and a workload URI that is not unix:// are
// refused with what to do.
func TestEnvironmentRefused(t *testing.T) {
	for _, k := range []string{moduleclient.EnvDeviceID, moduleclient.EnvModuleID, moduleclient.EnvHubHostName, moduleclient.EnvGatewayHost,
		moduleclient.EnvWorkloadURI, moduleclient.EnvGenerationID, moduleclient.EnvAuthScheme, moduleclient.EnvBrokerAddress} {
		t.Setenv(k, "")
	}
	t.Setenv(moduleclient.EnvDeviceID, "dev")
	_, err := moduleclient.NewFromEnvironment(context.Background())
	var ce *moduleclient.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("no variables: %v", err)
	}
	for _, k := range []string{moduleclient.EnvModuleID, moduleclient.EnvHubHostName, moduleclient.EnvWorkloadURI, moduleclient.EnvGenerationID} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("the error does not name %s: %v", k, err)
		}
	}
	if strings.Contains(err.Error(), moduleclient.EnvDeviceID) {
		t.Errorf("the error names %s, which is set: %v", moduleclient.EnvDeviceID, err)
	}

	for k, v := range map[string]string{moduleclient.EnvModuleID: "m", moduleclient.EnvHubHostName: "hub", moduleclient.EnvGatewayHost: "gw",
		moduleclient.EnvWorkloadURI: "unix:///nonexistent/workload.sock", moduleclient.EnvGenerationID: "g"} {
		t.Setenv(k, v)
	}
	t.Setenv(moduleclient.EnvAuthScheme, "x509")
	if _, err := moduleclient.NewFromEnvironment(context.Background()); err == nil || !strings.Contains(err.Error(), `"x509" is not supported`) {
		t.Errorf("x509: %v", err)
	}
	t.Setenv(moduleclient.EnvAuthScheme, "sasToken")
	t.Setenv(moduleclient.EnvWorkloadURI, "http://127.0.0.1:15580")
	if _, err := moduleclient.NewFromEnvironment(context.Background()); !errors.As(err, &ce) || ce.What != moduleclient.EnvWorkloadURI {
		t.Errorf("http workload URI: %v", err)
	}
	t.Setenv(moduleclient.EnvWorkloadURI, "unix:///nonexistent/workload.sock")
	if _, err := moduleclient.NewFromEnvironment(context.Background()); err == nil || !strings.Contains(err.Error(), "is the outpost daemon running?") {
		t.Errorf("no socket: %v", err)
	}
}

// TestConfigRefused: New names what is missing or wrong.
func TestConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  moduleclient.Config
		want string
	}{
		{moduleclient.Config{ConnectionString: "HostName=h;DeviceId=d;ModuleId=m"}, "no SharedAccessKey"},
		{moduleclient.Config{ConnectionString: "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=!!"}, "not base64"},
		{moduleclient.Config{ConnectionString: "HostName=h;DeviceId=d;SharedAccessKey=a2V5"}, "ModuleID (ModuleId): missing"},
		{moduleclient.Config{ConnectionString: "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5"}, "GatewayHostName: missing"},
		{moduleclient.Config{ConnectionString: "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5", BrokerAddress: "nohost"}, "is not host:port"},
		{moduleclient.Config{ConnectionString: "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=gw", CAPEM: []byte("x")}, "no PEM certificate"},
		{moduleclient.Config{HubHostName: "h", DeviceID: "d", ModuleID: "m", GatewayHostName: "gw"}, "Signer: missing"},
	} {
		_, err := moduleclient.New(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
