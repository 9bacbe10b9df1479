package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

var known = map[string]string{
	"connection-string": "string",
	"data":              "string",
	"no-color":          "bool",
	"retries":           "int",
	"timeout":           "duration",
	"san":               "stringSlice",
}

func flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("hub", "", "")
	fs.String("data", "/var/lib/outpost", "")
	fs.Bool("no-color", false, "")
	fs.Int("retries", 3, "")
	fs.Duration("timeout", time.Second, "")
	fs.StringSlice("san", nil, "")
	return fs
}

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := write(t, "data: /from/file\nconnection-string: HostName=file\nretries: 7\ntimeout: 5m\nsan: [a, b]\nno-color: true\n")
	t.Setenv("OUTPOST_CONFIG", "")
	t.Setenv("OUTPOST_DATA", "")
	t.Setenv("OUTPOST_CONNECTION_STRING", "")

	fs := flags()
	v, src, err := LoadSection(file, known, fs, "daemon")
	if err != nil {
		t.Fatal(err)
	}
	if src.File != file || !src.Explicit {
		t.Errorf("source = %+v", src)
	}
	if got := v.GetString("data"); got != "/from/file" {
		t.Errorf("file: data = %q", got)
	}
	if got := v.GetInt("retries"); got != 7 {
		t.Errorf("file: retries = %d", got)
	}
	if got := v.GetDuration("timeout"); got != 5*time.Minute {
		t.Errorf("file: timeout = %v", got)
	}
	if got := v.GetStringSlice("san"); strings.Join(got, ",") != "a,b" {
		t.Errorf("file: san = %v", got)
	}
	if !v.GetBool("no-color") {
		t.Error("file: no-color not set")
	}
	if got := v.GetString("connection-string"); got != "HostName=file" {
		t.Errorf("file: connection-string = %q", got)
	}

	t.Setenv("OUTPOST_DATA", "/from/env")
	t.Setenv("OUTPOST_CONNECTION_STRING", "HostName=env")
	v, _, err = LoadSection(file, known, flags(), "daemon")
	if err != nil {
		t.Fatal(err)
	}
	if got := v.GetString("data"); got != "/from/env" {
		t.Errorf("env over file: data = %q", got)
	}
	if got := v.GetString("connection-string"); got != "HostName=env" {
		t.Errorf("env over file: connection-string = %q", got)
	}

	fs = flags()
	if err := fs.Parse([]string{"--data", "/from/flag", "--hub", "HostName=flag"}); err != nil {
		t.Fatal(err)
	}
	v, _, err = LoadSection(file, known, fs, "daemon")
	if err != nil {
		t.Fatal(err)
	}
	if got := v.GetString("data"); got != "/from/flag" {
		t.Errorf("flag over env: data = %q", got)
	}
	if got := v.GetString("connection-string"); got != "HostName=flag" {
		t.Errorf("--hub sets connection-string: got %q", got)
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	t.Setenv("OUTPOST_DATA", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no default file there
	v, src, err := Load("", known, flags())
	if err != nil {
		t.Fatalf("a missing default config file must be fine: %v", err)
	}
	if src.File != "" && !strings.HasPrefix(src.File, "/etc/") {
		t.Errorf("source = %+v", src)
	}
	if got := v.GetString("data"); got != "/var/lib/outpost" && src.File == "" {
		t.Errorf("default: data = %q", got)
	}
	if got := v.GetInt("retries"); got != 3 && src.File == "" {
		t.Errorf("default: retries = %d", got)
	}
}

func TestDefaultFileFromXDG(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("OUTPOST_CONFIG", "")
	t.Setenv("OUTPOST_DATA", "")
	if err := os.MkdirAll(filepath.Join(dir, "outpost"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "outpost", "config.yaml"), []byte("data: /xdg\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, src, err := LoadSection("", known, flags(), "daemon")
	if err != nil {
		t.Fatal(err)
	}
	if src.Explicit || v.GetString("data") != "/xdg" {
		t.Errorf("source %+v, data %q", src, v.GetString("data"))
	}
}

func TestBrokenFiles(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	for _, tc := range []struct {
		name, content, want string
	}{
		{"unknown key", "data: /x\ndatta: /y\n", `:2: unknown key "datta" (did you mean "data"?)`},
		{"far key", "zzzzzzzz: 1\n", `:1: unknown key "zzzzzzzz" (see`},
		{"alias", "hub: HostName=x\n", `:1: key "hub": write it as "connection-string"`},
		{"bad bool", "no-color: maybe\n", `:1: key "no-color": want true or false, got "maybe"`},
		{"bad int", "retries: many\n", `:1: key "retries": want a whole number, got "many"`},
		{"bad duration", "\n\ntimeout: 5 minutes\n", `:3: key "timeout": want a duration such as 30s or 5m, got "5 minutes"`},
		{"map for string", "data:\n  a: b\n", `:2: key "data": want a single string value, not a mapping`},
		{"not a mapping", "- a\n- b\n", `:1: the file must be a mapping`},
		{"bad yaml", "data: [unclosed\n", `line 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := write(t, tc.content)
			_, _, err := Load(file, known, flags())
			if err == nil {
				t.Fatalf("no error for %q", tc.content)
			}
			if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want the file name and %q", err, tc.want)
			}
		})
	}
}

func TestEmptyFile(t *testing.T) {
	if _, _, err := Load(write(t, ""), known, flags()); err != nil {
		t.Fatalf("an empty config file is fine: %v", err)
	}
}

func TestExplicitMissing(t *testing.T) {
	_, _, err := Load("/nonexistent/config.yaml", known, flags())
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/config.yaml does not exist") {
		t.Fatalf("got %v", err)
	}
}

func TestEnvVar(t *testing.T) {
	if got := EnvVar("connection-string"); got != "OUTPOST_CONNECTION_STRING" {
		t.Errorf("EnvVar = %q", got)
	}
	if got := KeyFor("hub"); got != "connection-string" {
		t.Errorf("KeyFor(hub) = %q", got)
	}
}

// TestSections checks that the hub and the daemon, reading one config file, each get
// their own data dir: the top-level data is the daemon's, hub.data the hub's, and a
// section's env var and key win over the top level's.
func TestSections(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	for _, name := range []string{"OUTPOST_DATA", "OUTPOST_HUB_DATA", "OUTPOST_DAEMON_DATA", "OUTPOST_CONNECTION_STRING"} {
		t.Setenv(name, "")
	}
	load := func(file, section string, env ...string) (string, error) {
		t.Helper()
		for i := 0; i+1 < len(env); i += 2 {
			t.Setenv(env[i], env[i+1])
			defer os.Setenv(env[i], "")
		}
		v, _, err := LoadSection(file, known, flags(), section)
		if err != nil {
			return "", err
		}
		return v.GetString("data"), nil
	}
	both := write(t, "data: /top\nconnection-string: HostName=top\nhub:\n  data: /hub\ndaemon:\n  data: /daemon\n")
	for _, tc := range []struct {
		file, section string
		env           []string
		want          string
	}{
		{both, "hub", nil, "/hub"},
		{both, "daemon", nil, "/daemon"},
		{both, "", nil, "/var/lib/outpost"}, // a command of no part (quickstart) never reads the daemon's
		{write(t, "data: /top\nhub.data: /hub\n"), "hub", nil, "/hub"},
		{write(t, "data: /top\n"), "daemon", nil, "/top"},
		{write(t, "hub:\n  data: /hub\n"), "daemon", nil, "/var/lib/outpost"},
		{both, "hub", []string{"OUTPOST_DATA", "/env"}, "/env"},
		{both, "hub", []string{"OUTPOST_DATA", "/env", "OUTPOST_HUB_DATA", "/hubenv"}, "/hubenv"},
		{both, "daemon", []string{"OUTPOST_HUB_DATA", "/hubenv"}, "/daemon"},
	} {
		got, err := load(tc.file, tc.section, tc.env...)
		if err != nil || got != tc.want {
			t.Errorf("section %q, env %v: data = %q, %v; want %q", tc.section, tc.env, got, err, tc.want)
		}
	}
	v, _, err := LoadSection(both, known, flags(), "hub")
	if err != nil || v.GetString("connection-string") != "HostName=top" {
		t.Errorf("a top-level key other than data reaches the hub: %q, %v", v.GetString("connection-string"), err)
	}

	// The daemon's top-level data and no hub.data: the hub says so rather than fall back
	// to its default, unless --data or the env names its dir.
	daemonOnly := write(t, "retries: 1\ndata: /var/lib/outpost\n")
	_, err = load(daemonOnly, "hub")
	if err == nil || !strings.Contains(err.Error(), daemonOnly+":2") || !strings.Contains(err.Error(), "hub.data") {
		t.Fatalf("hub with the daemon's data only: %v", err)
	}
	if got, err := load(daemonOnly, "hub", "OUTPOST_HUB_DATA", "/h"); err != nil || got != "/h" {
		t.Errorf("hub with the env set: %q, %v", got, err)
	}
	fs := flags()
	fs.Parse([]string{"--data", "/flag"})
	if v, _, err := LoadSection(daemonOnly, known, fs, "hub"); err != nil || v.GetString("data") != "/flag" {
		t.Errorf("hub with --data: %v", err)
	}

	for content, want := range map[string]string{
		"hub:\n  datta: /x\n":       `:2: unknown key "hub.datta" (did you mean "data"?)`,
		"daemon.nope: 1\n":          `unknown key "daemon.nope"`,
		"hub:\n  hub: HostName=x\n": `key "hub.hub": write it as "hub.connection-string"`,
	} {
		file := write(t, content)
		if _, _, err := LoadSection(file, known, flags(), "hub"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", content, err, want)
		}
	}
}
