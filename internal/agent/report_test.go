package agent

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/outpost-edge/outpost/internal/deployment"
)

func TestMergeDiff(t *testing.T) {
	doc := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return normalize(m)
	}
	for _, c := range []struct{ old, cur, want string }{
		{`{}`, `{}`, `{}`},
		{`{"a":1}`, `{"a":1}`, `{}`},
		{`{"a":1}`, `{"a":2}`, `{"a":2}`},
		{`{"modules":{"m1":{"s":"running","c":0},"m2":{"s":"backoff"}}}`,
			`{"modules":{"m1":{"s":"running","c":1}}}`,
			`{"modules":{"m1":{"c":1},"m2":null}}`},
		{`{"m":{"exitCode":3,"d":"x"}}`, `{"m":{"d":"x"}}`, `{"m":{"exitCode":null}}`},
		{`{"a":"x"}`, `{"a":{"b":1}}`, `{"a":{"b":1}}`},
		{`{"a":[1,2]}`, `{"a":[1,2]}`, `{}`},
	} {
		got, _ := json.Marshal(mergeDiff(doc(c.old), doc(c.cur)))
		var g, w any
		_ = json.Unmarshal(got, &g)
		_ = json.Unmarshal([]byte(c.want), &w)
		gb, _ := json.Marshal(g)
		wb, _ := json.Marshal(w)
		if string(gb) != string(wb) {
			t.Errorf("mergeDiff(%s, %s) = %s, want %s", c.old, c.cur, gb, wb)
		}
	}
}

func TestEnvOrder(t *testing.T) {
	e := newEnv()
	e.add("PATH=/bin", "A=image", "B=image")
	e.add("A=create")
	e.set("B", "deployment")
	e.set("IOTEDGE_MODULEID", "m")
	got, _ := json.Marshal(e.list())
	if want := `["PATH=/bin","A=create","B=deployment","IOTEDGE_MODULEID=m"]`; string(got) != want {
		t.Errorf("env = %s, want %s", got, want)
	}
}

func TestSpecArgs(t *testing.T) {
	a := &Agent{cfg: Config{DeviceID: "d", HubHostName: "hub:8443", GatewayHostName: "gw"}}
	img := &moduleImage{Rootfs: "/r", Config: v1.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"c1"}, WorkingDir: "/w", User: "u", Env: []string{"PATH=/bin"}}}
	for _, c := range []struct {
		co   deployment.CreateOptions
		want string
	}{
		{deployment.CreateOptions{}, `["/ep","c1"]`},
		{deployment.CreateOptions{Cmd: []string{"x"}}, `["/ep","x"]`},
		{deployment.CreateOptions{Entrypoint: []string{"/other"}}, `["/other"]`},
		{deployment.CreateOptions{Entrypoint: []string{"/other"}, Cmd: []string{"y"}}, `["/other","y"]`},
	} {
		s := a.spec(desiredModule{Module: deployment.Module{Name: "m", CreateOptions: c.co}}, img)
		if got, _ := json.Marshal(s.Args); string(got) != c.want {
			t.Errorf("%+v: args %s, want %s", c.co, got, c.want)
		}
		if s.WorkingDir != "/w" || s.User != "u" {
			t.Errorf("cwd %q user %q", s.WorkingDir, s.User)
		}
	}
	s := a.spec(desiredModule{Module: deployment.Module{Name: "m", CreateOptions: deployment.CreateOptions{WorkingDir: "/x", User: "1000:1000"}}}, img)
	if s.WorkingDir != "/x" || s.User != "1000:1000" {
		t.Errorf("createOptions cwd %q user %q", s.WorkingDir, s.User)
	}
}

func TestHealthCheckOf(t *testing.T) {
	sec := time.Second
	image := &v1.HealthConfig{Test: []string{"CMD-SHELL", "check"}, Interval: 5 * sec, Retries: 5}
	cases := []struct {
		name  string
		image *v1.HealthConfig
		co    *deployment.Healthcheck
		want  *healthCheck
	}{
		{"none", nil, nil, nil},
		{"image's, with defaults", image, nil,
			&healthCheck{Args: []string{"/bin/sh", "-c", "check"}, Interval: 5 * sec, Timeout: DefaultHealthTimeout, Retries: 5}},
		{"createOptions over the image's, field by field", image, &deployment.Healthcheck{Timeout: 2 * sec, StartPeriod: sec},
			&healthCheck{Args: []string{"/bin/sh", "-c", "check"}, Interval: 5 * sec, Timeout: 2 * sec, StartPeriod: sec, Retries: 5}},
		{"createOptions' own test", image, &deployment.Healthcheck{Test: []string{"CMD", "/probe", "-q"}},
			&healthCheck{Args: []string{"/probe", "-q"}, Interval: 5 * sec, Timeout: DefaultHealthTimeout, Retries: 5}},
		{"NONE turns the image's off", image, &deployment.Healthcheck{Test: []string{"NONE"}}, nil},
		{"defaults alone", nil, &deployment.Healthcheck{Test: []string{"CMD", "/probe"}},
			&healthCheck{Args: []string{"/probe"}, Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Retries: DefaultHealthRetries}},
	}
	for _, c := range cases {
		if got := healthCheckOf(c.image, c.co); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}
