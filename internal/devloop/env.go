package devloop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// DeviceID is the device the embedded hub has for the loop's daemon.
const DeviceID = "dev"

// env is where the loop deploys: a hub and a device, a registry to push
// to, and, when the device's daemon is on this machine, its management API.
type env struct {
	hub      *hubclient.Client // the operator's
	device   string
	platform string // the device's, os/arch[/variant]
	// registry is the host[:port] modules are pushed to instead of
	// module.yaml's; "" keeps module.yaml's.
	registry string
	mgmt     *mgmtclient.Client // nil when the device's daemon is elsewhere
	// running is closed when the embedded daemon stops (nil for none).
	daemonDone <-chan struct{}
	daemonErr  func() error
	describe   string // one line: what this env is
	closers    []func() error
}

// close stops what the env started, in reverse order.
func (e *env) close() error {
	var errs []error
	for i := len(e.closers) - 1; i >= 0; i-- {
		errs = append(errs, e.closers[i]())
	}
	e.closers = nil
	return errors.Join(errs...)
}

// stateFile remembers the ports of the embedded hub and registry, so that
// a second `outpost dev` of the solution serves them at the same addresses.
type stateFile struct {
	HubPort      int `json:"hubPort"`
	RegistryPort int `json:"registryPort"`
}

// listenLoopback listens on 127.0.0.1:port, else on a free port.
func listenLoopback(port int) (net.Listener, error) {
	if port > 0 {
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			return ln, nil
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// startEmbedded starts a hub, a registry and a device daemon in the state
// dir, all on loopback.
func startEmbedded(ctx context.Context, cfg *Config) (_ *env, err error) {
	state := cfg.StateDir
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	// Keep the state out of version control.
	gi := filepath.Join(state, ".gitignore")
	if _, err := os.Stat(gi); errors.Is(err, os.ErrNotExist) {
		_ = os.WriteFile(gi, []byte("# outpost dev's state: not for version control\n*\n"), 0o644)
	}
	var st stateFile
	if b, err := os.ReadFile(filepath.Join(state, "state.json")); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	e := &env{device: DeviceID}
	defer func() {
		if err != nil {
			e.close()
		}
	}()

	// The daemon's log, and the hub's: a file, for when something is odd.
	logf, err := os.OpenFile(filepath.Join(state, "dev.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	e.closers = append(e.closers, logf.Close)
	logger := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// The hub.
	hubLn, err := listenLoopback(st.HubPort)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h, _, err := hub.Open(hub.Config{DataDir: filepath.Join(state, "hub"), Listener: hubLn, Logger: logger.With("part", "hub")})
	if err != nil {
		hubLn.Close()
		return nil, fmt.Errorf("start the hub: %w", err)
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Serve(hubCtx) }()
	e.closers = append(e.closers, func() error {
		stopHub()
		err := <-hubDone
		if errors.Is(err, context.Canceled) || errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		return errors.Join(err, h.Close())
	})
	creds := h.Credentials()
	if e.hub, err = hubclient.New(creds.ConnectionString, creds.CAFile); err != nil {
		return nil, err
	}
	dev, err := e.hub.CreateDevice(ctx, hubapi.Device{DeviceID: DeviceID})
	if errors.Is(err, hubclient.ErrConflict) {
		dev, err = e.hub.GetDevice(ctx, DeviceID)
	}
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", DeviceID, err)
	}
	deviceCS := (&identity.ConnectionString{HostName: h.HostName(), DeviceID: DeviceID, SharedAccessKey: dev.Authentication.SymmetricKey.PrimaryKey}).String()

	// The registry: blobs on disk, so that a layer pushed once is never
	// pushed again, across runs too.
	if err := os.MkdirAll(filepath.Join(state, "registry"), 0o700); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	regLn, err := listenLoopback(st.RegistryPort)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	srv := &http.Server{
		Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)),
			registry.WithBlobHandler(registry.NewDiskBlobHandler(filepath.Join(state, "registry")))),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(regLn)
	e.closers = append(e.closers, srv.Close)
	e.registry = regLn.Addr().String()

	st = stateFile{HubPort: portOf(hubLn), RegistryPort: portOf(regLn)}
	if b, err := json.Marshal(st); err == nil {
		_ = atomicfile.WriteFile(filepath.Join(state, "state.json"), b, 0o600)
	}

	// The device daemon.
	brokerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("module broker: %w", err)
	}
	sock := mgmtSocketPath(state)
	deviceDir := filepath.Join(state, "device")
	d, err := daemon.New(daemon.Config{
		ConnectionString: deviceCS, CAFile: creds.CAFile, DataDir: deviceDir,
		Runtime: cfg.Runtime, MgmtSocket: sock, GatewayHostName: "localhost", BrokerListener: brokerLn,
		StopGrace: cfg.StopGrace, Logger: logger.With("part", "daemon"),
		// Images pulled for a change are thrown away at the next: not
		// worth a syncfs(2) each (hundreds of ms on a busy disk).
		NoImageSync: true,
	})
	if err != nil {
		brokerLn.Close()
		return nil, err
	}
	dctx, stopDaemon := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		runErr = d.Run(dctx)
		close(done)
	}()
	e.daemonDone = done
	e.daemonErr = func() error { <-done; return runErr }
	e.closers = append(e.closers, func() error {
		stopDaemon()
		<-done
		// A daemon leaves its instances for its next start; dev is over, so
		// remove them (a runc instance's mounts with it).
		if err := removeInstances(cfg.Runtime, filepath.Join(deviceDir, "runtime")); err != nil {
			return err
		}
		// The runtime's shim cleans up after its last instance, then exits.
		if left := waitProcessesGone(state, 30*time.Second); len(left) > 0 {
			return fmt.Errorf("processes still running from %s: %s", state, strings.Join(left, "; "))
		}
		return nil
	})
	e.mgmt = mgmtclient.New(sock)
	e.platform = hostPlatform()
	rt := cfg.Runtime
	e.describe = fmt.Sprintf("embedded hub https://%s, registry %s, device %s (runtime %s); state in %s", h.HostName(), e.registry, DeviceID, rt, state)
	return e, nil
}

// removeInstances removes every instance of the runtime in stateDir.
func removeInstances(kind, stateDir string) error {
	rt, err := runtime.New(kind, stateDir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	insts, err := rt.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range insts {
		if err := rt.Remove(ctx, in.Name); err != nil {
			errs = append(errs, fmt.Errorf("remove instance %s: %w", in.Name, err))
		}
	}
	return errors.Join(errs...)
}

// mgmtSocketPath is the embedded daemon's management socket: in the state
// dir, unless that path is too long for a unix socket.
func mgmtSocketPath(state string) string {
	p := filepath.Join(state, "mgmt.sock")
	if len(p) < 100 {
		return p
	}
	return filepath.Join(os.TempDir(), "outpost-dev-"+strconv.FormatUint(hashString(state), 36)+".sock")
}

func hashString(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// hostPlatform is this machine's platform, as the embedded daemon reports it.
func hostPlatform() string {
	if goruntime.GOARCH == "arm" {
		return "linux/arm/v7"
	}
	return "linux/" + goruntime.GOARCH
}

// startTarget uses a hub and device given: the device's platform is what
// its daemon reported; the images go to module.yaml's registries; logs come
// from the daemon's management socket when it is on this machine.
func startTarget(ctx context.Context, cfg *Config) (*env, error) {
	e := &env{hub: cfg.Hub, device: cfg.Device}
	if _, err := e.hub.GetDevice(ctx, cfg.Device); err != nil {
		return nil, fmt.Errorf("device %s: %w", cfg.Device, err)
	}
	e.platform = hostPlatform()
	if t, err := e.hub.GetTwin(ctx, cfg.Device, "$edgeAgent"); err == nil {
		var rep struct {
			Runtime struct {
				Platform struct {
					OS           string `json:"os"`
					Architecture string `json:"architecture"`
				} `json:"platform"`
			} `json:"runtime"`
		}
		if json.Unmarshal(t.ReportedJSON(), &rep) == nil && rep.Runtime.Platform.OS != "" && rep.Runtime.Platform.Architecture != "" {
			e.platform = rep.Runtime.Platform.OS + "/" + rep.Runtime.Platform.Architecture
			if rep.Runtime.Platform.Architecture == "arm" {
				e.platform += "/v7"
			}
		}
	}
	e.describe = fmt.Sprintf("hub %s, device %s (%s)", e.hub.HostName(), cfg.Device, e.platform)
	if cfg.MgmtSocket != "" {
		mc := mgmtclient.New(cfg.MgmtSocket)
		st, err := mc.Status(ctx)
		switch {
		case err != nil:
			e.describe += "; no logs: the daemon's management socket " + cfg.MgmtSocket + " does not answer (" + err.Error() + ")"
		case st.DeviceID != cfg.Device:
			e.describe += fmt.Sprintf("; no logs: the daemon on %s is device %s's", cfg.MgmtSocket, st.DeviceID)
		default:
			e.mgmt = mc
			e.describe += ", logs from " + cfg.MgmtSocket
		}
	}
	return e, nil
}
