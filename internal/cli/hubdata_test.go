package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// clearDataEnv makes the tests independent of the environment's data dirs.
func clearDataEnv(t *testing.T) {
	for _, name := range []string{"OUTPOST_CONFIG", "OUTPOST_DATA", "OUTPOST_HUB_DATA", "OUTPOST_DAEMON_DATA"} {
		t.Setenv(name, "")
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no default config file
}

// resolveData loads the configuration of the command at path, as Run does, with the
// config file given, and returns the config.
func resolveData(t *testing.T, file string, path ...string) (*Factory, error) {
	t.Helper()
	ios, _, _, _ := TestIO()
	f := &Factory{IO: ios}
	cmd, _, err := NewRootCmd(f).Find(path)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	if file != "" {
		args = []string{"--config", file}
	}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return f, f.load(cmd)
}

// TestHubAndDaemonNeverShareADataDir reads one config file, as on a machine that runs
// both, for the hub and for the daemon: their data dirs (and so their stores) differ
// whatever the file says at the top level.
func TestHubAndDaemonNeverShareADataDir(t *testing.T) {
	clearDataEnv(t)
	dir := t.TempDir()
	for i, content := range []string{
		"", // all defaults
		"data: /srv/outpost\nhub:\n  data: /srv/outpost-hub\n",
		"daemon:\n  data: /srv/device\n",
		"hub.data: /srv/h\ndaemon.data: /srv/d\ndata: /srv/top\n",
	} {
		file := ""
		if content != "" {
			file = filepath.Join(dir, "config"+string(rune('a'+i))+".yaml")
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		hf, err := resolveData(t, file, "hub", "serve")
		if err != nil {
			t.Fatalf("%q: hub: %v", content, err)
		}
		df, err := resolveData(t, file, "daemon")
		if err != nil {
			t.Fatalf("%q: daemon: %v", content, err)
		}
		hubDir, daemonDir := hubDataDir(hf), df.Config().GetString("data")
		hubStore, daemonStore := filepath.Join(hubDir, "store"), filepath.Join(daemonDir, "store")
		if hubDir == daemonDir || hubStore == daemonStore || strings.HasPrefix(hubStore+"/", daemonStore+"/") {
			t.Errorf("%q: the hub's data dir %s and the daemon's %s share a store", content, hubDir, daemonDir)
		}
		// quickstart runs a hub and a daemon of its own: never in theirs.
		if qf, err := resolveData(t, file, "quickstart"); err != nil || qf.Config().GetString("data") != "" {
			t.Errorf("%q: quickstart's data dir %q (%v), want its own temp dir", content, qf.Config().GetString("data"), err)
		}
		cf, err := resolveData(t, file, "hub", "credentials")
		if err != nil || hubDataDir(cf) != hubDir {
			t.Errorf("%q: hub credentials looks in %s (%v), hub serve in %s", content, hubDataDir(cf), err, hubDir)
		}
	}

	// The daemon's data only: the hub says where to set its own rather than fall back.
	file := filepath.Join(dir, "daemon-only.yaml")
	os.WriteFile(file, []byte("data: /var/lib/outpost\n"), 0o600)
	if _, err := resolveData(t, file, "hub", "serve"); err == nil || !strings.Contains(err.Error(), "hub.data") {
		t.Errorf("hub serve with the daemon's data only: %v", err)
	}
	if f, err := resolveData(t, file, "daemon"); err != nil || f.Config().GetString("data") != "/var/lib/outpost" {
		t.Errorf("daemon with a top-level data: %v", err)
	}
}

// TestHubCredentialsFindsTheHub reads the credentials of a hub whose data dir is named
// only in the config file's hub section, next to the daemon's top-level data.
func TestHubCredentialsFindsTheHub(t *testing.T) {
	clearDataEnv(t)
	h := hubtest.Start(t, hubtest.Options{})
	file := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(file, []byte("data: "+t.TempDir()+"\nhub:\n  data: "+h.DataDir+"\n"), 0o600)
	code, out, errOut := run(t, "hub", "credentials", "--config", file, "-o", "json")
	if code != 0 || !strings.Contains(out, h.ConnectionString) {
		t.Fatalf("hub credentials: %d %s %s", code, out, errOut)
	}
	t.Setenv("OUTPOST_HUB_DATA", h.DataDir)
	os.WriteFile(file, []byte("data: /nowhere\n"), 0o600)
	if code, out, errOut := run(t, "hub", "credentials", "--config", file); code != 0 || !strings.Contains(out, h.ConnectionString) {
		t.Fatalf("hub credentials with OUTPOST_HUB_DATA: %d %s %s", code, out, errOut)
	}
}
