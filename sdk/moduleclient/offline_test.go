package moduleclient_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// buildOutpost builds the outpost binary from this checkout.
func buildOutpost(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "outpost")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/outpost")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBinary runs `outpost daemon` for the device as a child process,
// its broker on d.brokerAddr; its output goes to log.
func (d *device) startBinary(t *testing.T, bin string, log *os.File) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "daemon", "--connection-string", d.f.DeviceCS, "--ca", d.f.Hub.CAFile,
		"--data", d.f.DataDir, "--runtime", d.f.Kind, "--mgmt-socket", d.mgmtSocket,
		"--broker-listen", d.brokerAddr, "--gateway-hostname", "localhost", "--log-level", "debug",
		"--restart-backoff", "100ms")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return cmd
}

// TestKill9HubDown: a module reports while the hub is down; the daemon is
// kill -9ed and started again, still offline; the module reconnects by
// itself and reports more; once the hub returns every report reaches it,
// and a desired change made then reaches the module.
func TestKill9HubDown(t *testing.T) {
	bin := buildOutpost(t)
	d, l := newFixture(t)
	l.Close() // the daemon listens itself
	log, err := os.Create(filepath.Join(t.TempDir(), "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("daemon log:\n%s", b)
		}
	}()
	daemon := d.startBinary(t, bin, log)
	c := d.connect(t)
	var got desiredLog
	c.OnDesired(got.add)
	ctx := t.Context()
	report := func(key string) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if _, err := c.UpdateReported(rctx, map[string]any{key: true}); err != nil {
			t.Fatalf("report %s: %v", key, err)
		}
	}
	report("online")
	agenttest.Eventually(t, 20*time.Second, "the first report at the hub", func() bool { return d.hubReported(t)["online"] == true })

	hubData, hubAddr := d.f.Hub.DataDir, d.f.Hub.Addr().String()
	d.f.Hub.Stop()
	const n = 20
	for i := range n {
		report("offline" + strconv.Itoa(i)) // acknowledged once durable
	}
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = daemon.Wait()
	// made while the daemon is gone: waits for the next one
	done := make(chan struct{})
	go func() {
		defer close(done)
		report("acrossKill")
	}()
	d.startBinary(t, bin, log)
	<-done
	report("afterRestart")

	d.f.Hub = hubtest.Start(t, hubtest.Options{DataDir: hubData, Listen: hubAddr})
	d.f.Owner = d.f.Hub.Client(t)
	agenttest.Eventually(t, 60*time.Second, "every report at the hub", func() bool {
		r := d.hubReported(t)
		for i := range n {
			if r["offline"+strconv.Itoa(i)] != true {
				return false
			}
		}
		return r["online"] == true && r["acrossKill"] == true && r["afterRestart"] == true
	})
	d.patchDesired(t, map[string]any{"interval": 7})
	agenttest.Eventually(t, 60*time.Second, "the desired change at the module", func() bool {
		p, _ := got.snapshot()
		return len(p) > 0 && p[len(p)-1]["interval"] == float64(7)
	})
	if p, v := got.snapshot(); len(p) != 1 {
		t.Errorf("desired patches %v %v, want one", p, v)
	}
}
