package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
)

// TestPathsAreMadeAbsolute loads the daemon's configuration as a run does,
// with relative paths from a flag, the environment and the config file.
func TestPathsAreMadeAbsolute(t *testing.T) {
	isolateConfig(t)
	wd := t.TempDir()
	t.Chdir(wd)
	if err := os.MkdirAll(filepath.Join(wd, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wd, "etc", "config.yaml"), []byte("data: device\nworkload-dir: ../wl\nmgmt-socket: /run/x.sock\nca: from-file.pem\ndevice-ca-cert: pki/ca.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTPOST_CA", "hub-ca.pem")
	t.Setenv("OUTPOST_CACHE", "")

	ios, _, _, _ := TestIO()
	f := &Factory{IO: ios}
	cmd, rest, err := NewRootCmd(f).Find([]string{"daemon"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(append(rest, "--config", "etc/config.yaml", "--mgmt-socket", "./run/mgmt.sock", "--device-ca-key", "ca.key")); err != nil {
		t.Fatal(err)
	}
	if err := f.load(cmd); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"data":           filepath.Join(wd, "etc", "device"), // the file's, relative to the file
		"workload-dir":   filepath.Join(wd, "wl"),
		"mgmt-socket":    filepath.Join(wd, "run", "mgmt.sock"), // a flag's, relative to the working dir
		"ca":             filepath.Join(wd, "hub-ca.pem"),       // the environment's, likewise
		"cache":          "",                                    // unset stays unset
		"device-ca-cert": filepath.Join(wd, "etc", "pki", "ca.pem"),
		"device-ca-key":  filepath.Join(wd, "ca.key"),
	} {
		if got := f.Config().GetString(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if f.source.File != filepath.Join(wd, "etc", "config.yaml") {
		t.Errorf("config file %q, want it absolute", f.source.File)
	}
}

// TestDaemonWithRelativeDataDir runs the daemon as the docs show it, with
// --data ./device, on the process runtime: the module must run (it failed
// with "fork/exec device/images/rootfs/…: no such file" when the path was
// kept relative).
func TestDaemonWithRelativeDataDir(t *testing.T) {
	f := agenttest.New(t, "process")
	f.Deploy(t, map[string]any{"web": map[string]any{"image": f.Image}})
	wd := t.TempDir()
	t.Chdir(wd)
	runDaemon(t, filepath.Join(wd, "device", "mgmt.sock"), "--connection-string", f.DeviceCS, "--ca", f.Hub.CAFile,
		"--data", "./device", "--runtime", "process", "--mgmt-socket", "./device/mgmt.sock")
	agenttest.Eventually(t, 20*time.Second, "web running", func() bool {
		code, out, _ := run(t, "list", "--mgmt-socket", "device/mgmt.sock")
		return code == 0 && strings.Contains(out, "running")
	})
}
