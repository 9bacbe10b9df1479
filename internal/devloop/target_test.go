package devloop

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/sdk"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTargetOnce: with a hub and device of its own (a daemon run here, on
// the process runtime), `outpost dev --once` builds for the platform the
// device reported, pushes to module.yaml's registry, deploys by digest to
// that device and streams the module's first line from the device's
// management socket.
func TestTargetOnce(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain: outpost builds Go modules with it")
	}
	ctx := t.Context()
	h := hubtest.Start(t, hubtest.Options{})
	op := h.Client(t)
	dev, err := op.CreateDevice(ctx, hubapi.Device{DeviceID: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	regHost := strings.TrimPrefix(reg.URL, "http://")

	// The solution: the scaffold's files, module.yaml naming the registry.
	dir := t.TempDir()
	mod := filepath.Join(dir, "modules", "tempsensor")
	if err := sdk.WriteModule(filepath.Join(mod, sdk.Dir)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"go.mod", "go.sum", "main.go", "module.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "modules", "tempsensor", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "module.yaml" {
			b = regexp.MustCompile(`(?m)^repository: .*$`).ReplaceAll(b, []byte("repository: "+regHost+"/tempsensor"))
		}
		writeFile(t, filepath.Join(mod, f), string(b))
	}
	writeFile(t, filepath.Join(dir, DeploymentFile), "schemaVersion: \"1.0\"\nmodules:\n  tempsensor: {image: \"localhost:5000/tempsensor:1.0\", restartPolicy: always, env: {INTERVAL: \"5\"}}\n")

	// The device's daemon, as `outpost daemon` runs it.
	brokerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	sock := filepath.Join(data, "mgmt.sock")
	d, err := daemon.New(daemon.Config{
		ConnectionString: h.DeviceConnectionString("edge-1", "", dev.Authentication.SymmetricKey.PrimaryKey), CAFile: h.CAFile,
		DataDir: data, Runtime: "process", MgmtSocket: sock, GatewayHostName: "localhost", BrokerListener: brokerLn,
	})
	if err != nil {
		t.Fatal(err)
	}
	dctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	defer func() {
		stop()
		<-done
		if err := removeInstances("process", filepath.Join(data, "runtime")); err != nil {
			t.Error(err)
		}
	}()

	var out, status lockedBuffer
	err = Run(ctx, Config{Dir: dir, Hub: op, Device: "edge-1", MgmtSocket: sock, Once: true, Out: &out, Status: &status})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, status.String())
	}
	if !strings.Contains(out.String(), "tempsensor | tempsensor: a reading every") {
		t.Errorf("no first line streamed:\n%s\n%s", out.String(), status.String())
	}
	if !strings.Contains(status.String(), "device edge-1 (linux/") || !strings.Contains(status.String(), "logs from "+sock) {
		t.Errorf("status does not say where it deploys:\n%s", status.String())
	}
	tw, err := op.GetTwin(ctx, "edge-1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(regHost) + `/tempsensor:1\.0@sha256:[0-9a-f]{64}`).Match(tw.DesiredJSON()) {
		t.Errorf("$edgeAgent desired has no image by digest from %s: %s", regHost, tw.DesiredJSON())
	}
	if _, err := os.Stat(filepath.Join(dir, StateDirName, "hub")); err == nil {
		t.Errorf("an embedded hub was started beside the given one")
	}
}
