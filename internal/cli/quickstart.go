package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/image"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/ociregistry"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/sdk"
)

// quickstartHubListen is where quickstart's hub listens when it can.
const quickstartHubListen = "127.0.0.1:443"

// quickstartDesired is the sample module's desired properties, set by the
// operator's patch and by the deployment alike.
const quickstartDesired = `{"interval": 5, "units": "C", "alerts": {"high": 30, "low": -5}}`

type quickstartOptions struct {
	DataDir string
}

// quickstartResult is what quickstart prints with -o json.
type quickstartResult struct {
	DataDir          string             `json:"dataDir"`
	Hub              string             `json:"hub"`
	Device           string             `json:"device"`
	Module           string             `json:"module"`
	ConnectionString string             `json:"moduleConnectionString"`
	Twin             json.RawMessage    `json:"twin"`
	Token            string             `json:"token"`
	Image            string             `json:"image,omitempty"`   // the sample module's image, pushed: ref@digest
	Running          *mgmtclient.Module `json:"running,omitempty"` // the sample module as the daemon runs it
	Logs             []string           `json:"logs,omitempty"`    // its first lines of output
	Live             *quickstartLive    `json:"live,omitempty"`    // a desired change reaching the running module
	TUICommand       string             `json:"tuiCommand"`        // opens the module's twin in outpost tui
}

// quickstartLive is a desired change made at the hub while the module runs,
// and the module's answer in its reported properties.
type quickstartLive struct {
	Desired         json.RawMessage `json:"desired"`         // the operator's patch
	DesiredVersion  int64           `json:"desiredVersion"`  // the desired $version it made
	Reported        json.RawMessage `json:"reported"`        // the module's reported properties after it
	ReportedVersion int64           `json:"reportedVersion"` // their $version
	Took            time.Duration   `json:"tookNs"`          // from the patch to the answer at the hub
}

func newQuickstartCmd(f *Factory) *cobra.Command {
	opts := &quickstartOptions{}
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Walk through outpost on embedded defaults",
		Long: `Walk through outpost's concepts with everything embedded: no set-up, no network
beyond loopback.

It starts a hub (HTTPS, its own CA) on loopback, at port 443 as IoT Hub
(HostName=localhost, which Microsoft's Azure IoT SDKs need: they take no port),
or, when 443 cannot be bound (not root, or taken), at a free port, saying so;
to get 443 without root: sudo setcap cap_net_bind_service=+ep "$(command -v outpost)".
Its data is in --data (a new temporary dir by default). Then, through the
hub's REST API as any IoT Hub client would, it creates a device identity and a module identity with
their keys, patches the module twin's desired properties as an operator,
patches its reported properties with the module's own credentials, and prints
the twin and a SAS token for the module. Then it writes the sample module
(what 'outpost init' makes), builds its image for this machine's architecture
without a Docker daemon, pushes it to a registry embedded on loopback (the
one outpost registry serve runs, its images kept in DATA/registry), deploys
it to the device, and runs a device daemon (runc as root where installed, else
plain processes) until the module runs and prints. It then sends the running
module a desired interval at the hub and waits for the module's answer in its
reported properties (through the daemon's module broker); then it stops the
daemon.
Run it again with the same --data to pick up where it left off.`,
		Example: "  outpost quickstart\n  outpost quickstart --data ./qs -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.DataDir = f.Config().GetString("data")
			return quickstartRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().StringVar(&opts.DataDir, "data", "", "data dir (default: a new temporary dir)")
	return cmd
}

func quickstartRun(ctx context.Context, f *Factory, opts *quickstartOptions) error {
	const deviceID, moduleID = "quickstart-device", "tempsensor"
	status := func(format string, a ...any) { fmt.Fprintf(f.IO.ErrOut, "• "+format+"\n", a...) }

	dir := opts.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "outpost-quickstart-")
		if err != nil {
			return fmt.Errorf("quickstart: %w", err)
		}
		dir = d
	}

	// 1. A hub, embedded, on loopback: at port 443 where it can (Microsoft's
	// SDKs reach no other), else at a free port.
	h, _, err := hub.Open(hub.Config{DataDir: filepath.Join(dir, "hub"), Listen: quickstartHubListen, FallbackListen: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("quickstart: start the hub: %w", err)
	}
	if fb := h.Fallback(); fb != nil {
		status("cannot listen on %s (%v): the hub listens on %s instead; outpost's tools reach it there, Microsoft's Azure IoT SDKs only on 443 (`outpost quickstart --help` says how)", fb.Wanted, fb.Err, fb.Got)
	} else {
		status("the hub listens on port 443, as IoT Hub does: connection strings carry HostName=%s, which Microsoft's Azure IoT SDKs take too", h.HostName())
	}
	defer h.Close()
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- h.Serve(serveCtx) }()
	defer func() { stop(); <-served }()
	creds := h.Credentials()
	status("hub serving https://%s (data %s, CA %s)", h.HostName(), filepath.Join(dir, "hub"), creds.CAFile)

	op, err := hubclient.New(creds.ConnectionString, creds.CAFile)
	if err != nil {
		return err
	}

	// 2. Identities: a device, and a module on it, each with its own keys.
	dev, err := op.CreateDevice(ctx, hubapi.Device{DeviceID: deviceID})
	if errors.Is(err, hubclient.ErrConflict) {
		dev, err = op.GetDevice(ctx, deviceID)
	}
	if err != nil {
		return fmt.Errorf("quickstart: device: %w", err)
	}
	status("device identity %s (generation %s)", dev.DeviceID, dev.GenerationID)
	mod, err := op.CreateModule(ctx, hubapi.Module{DeviceID: deviceID, ModuleID: moduleID})
	if errors.Is(err, hubclient.ErrConflict) {
		mod, err = op.GetModule(ctx, deviceID, moduleID)
	}
	if err != nil {
		return fmt.Errorf("quickstart: module: %w", err)
	}
	modCS := (&identity.ConnectionString{HostName: h.HostName(), DeviceID: deviceID, ModuleID: moduleID, SharedAccessKey: mod.Authentication.SymmetricKey.PrimaryKey}).String()
	status("module identity /devices/%s/modules/%s with its own keys", deviceID, moduleID)

	// 3. The twin: the operator sets desired, the module reports.
	desired := []byte(`{"properties": {"desired": ` + quickstartDesired + `}}`)
	t, err := op.PatchTwin(ctx, deviceID, moduleID, desired, "")
	if err != nil {
		return fmt.Errorf("quickstart: desired patch: %w", err)
	}
	status("desired patch by the operator: desired $version %d, etag %s", t.DesiredVersion(), t.ETag)

	mc, err := hubclient.New(modCS, creds.CAFile)
	if err != nil {
		return err
	}
	reported := []byte(`{"properties": {"reported": {"temperature": 21.5, "interval": 5, "firmware": "1.0.0"}}}`)
	t, err = mc.PatchTwin(ctx, deviceID, moduleID, reported, "")
	if err != nil {
		return fmt.Errorf("quickstart: reported patch: %w", err)
	}
	status("reported patch by the module, with its own SAS token: reported $version %d", t.ReportedVersion())

	token, err := identity.NewSAS(identity.ModuleResource(h.HostName(), deviceID, moduleID), mod.Authentication.SymmetricKey.PrimaryKey, f.Now().Add(time.Hour), "")
	if err != nil {
		return fmt.Errorf("quickstart: token: %w", err)
	}
	twinJSON, err := t.MarshalJSON()
	if err != nil {
		return err
	}
	res := quickstartResult{DataDir: dir, Hub: h.HostName(), Device: deviceID, Module: moduleID, ConnectionString: modCS, Twin: twinJSON, Token: token}
	res.TUICommand = quickstartTUICommand(creds.ConnectionString, creds.CAFile, deviceID, moduleID)

	// 4. The module's image: built without a daemon, pushed to a registry.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	reg, err := ociregistry.Open(filepath.Join(dir, "registry"), nil)
	if err != nil {
		ln.Close()
		return fmt.Errorf("quickstart: registry: %w", err)
	}
	defer reg.Close()
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	status("registry serving http://%s (embedded, loopback only; data %s, as outpost registry serve keeps it)", ln.Addr(), reg.Dir())
	img, err := quickstartImage(ctx, dir, moduleID, ln.Addr().String(), status)
	if err != nil {
		return fmt.Errorf("quickstart: image: %w", err)
	}
	res.Image = img

	// 5. The instance: deploy the image to the device, run a daemon for it.
	if img != "" {
		devCS := (&identity.ConnectionString{HostName: h.HostName(), DeviceID: deviceID, SharedAccessKey: dev.Authentication.SymmetricKey.PrimaryKey}).String()
		if err := quickstartDaemon(ctx, f, op, dir, devCS, creds.CAFile, img, &res, status); err != nil {
			return fmt.Errorf("quickstart: daemon: %w", err)
		}
	}
	return f.Print(res, func(w io.Writer) error {
		fmt.Fprintf(w, "\nModule twin %s/%s:\n", deviceID, moduleID)
		if err := writeJSON(w, json.RawMessage(twinJSON)); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nModule connection string:\n%s\n", modCS)
		fmt.Fprintf(w, "\nSAS token for the module (valid 1h):\n%s\n", token)
		if res.Image != "" {
			fmt.Fprintf(w, "\nModule image (built without a daemon, pushed to the embedded registry):\n%s\n", res.Image)
		}
		if res.Running != nil {
			fmt.Fprintf(w, "\nModule instance, as the device daemon ran it:\n")
			t := NewTable("name", "status", "image", "restarts", "pid")
			t.Row(res.Running.Name, f.IO.ColorStatus(res.Running.Status), res.Running.Image, fmt.Sprint(res.Running.Restarts), fmt.Sprint(res.Running.Pid))
			if err := t.Write(w); err != nil {
				return err
			}
			for _, l := range res.Logs {
				fmt.Fprintf(w, "  %s\n", l)
			}
		}
		if res.Live != nil {
			fmt.Fprintf(w, "\nDesired %s reached the running module, which answered in %v with reported properties:\n", res.Live.Desired, res.Live.Took.Round(time.Millisecond))
			if err := writeJSON(w, res.Live.Reported); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "\nData dir: %s\nServe this hub again with: outpost hub serve --data %s\n", dir, filepath.Join(dir, "hub"))
		fmt.Fprintf(w, "Then watch and edit the module's twin live in the terminal UI with:\n  %s\n", res.TUICommand)
		return nil
	})
}

// quickstartLiveInterval is the desired interval (seconds) quickstart sends
// the running sample module.
const quickstartLiveInterval = 1

// quickstartLiveDesired patches the running module's desired interval and
// waits for the module to report it.
func quickstartLiveDesired(ctx context.Context, op *hubclient.Client, deviceID, moduleID string, status func(string, ...any)) (*quickstartLive, error) {
	patch := fmt.Sprintf(`{"interval": %d}`, quickstartLiveInterval)
	sent := time.Now()
	t, err := op.PatchTwin(ctx, deviceID, moduleID, []byte(`{"properties": {"desired": `+patch+`}}`), "")
	if err != nil {
		return nil, fmt.Errorf("desired patch: %w", err)
	}
	status("desired patch %s to the running %s: desired $version %d", patch, moduleID, t.DesiredVersion())
	deadline := time.Now().Add(60 * time.Second)
	for {
		t, err := op.GetTwin(ctx, deviceID, moduleID)
		if err == nil && t.Reported()["interval"] == json.Number(strconv.Itoa(quickstartLiveInterval)) {
			took := time.Since(sent)
			status("%s took it without a restart and reported interval %d: reported $version %d, %v after the patch",
				moduleID, quickstartLiveInterval, t.ReportedVersion(), took.Round(time.Millisecond))
			return &quickstartLive{Desired: json.RawMessage(patch), DesiredVersion: t.DesiredVersion(),
				Reported: t.ReportedJSON(), ReportedVersion: t.ReportedVersion(), Took: took}, nil
		}
		if time.Now().After(deadline) {
			reported := "?"
			if t != nil {
				reported = string(t.ReportedJSON())
			}
			return nil, fmt.Errorf("%s did not report interval %d within a minute of the desired patch (reported: %s): `outpost logs %s` says why", moduleID, quickstartLiveInterval, reported, moduleID)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// quickstartImage writes the sample module into dir (unless it is there),
// builds it for linux on this machine's architecture and pushes it to the
// registry reg. It needs the Go toolchain;
// without one it says so and builds nothing.
func quickstartImage(ctx context.Context, dir, name, reg string, status func(string, ...any)) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		status("no Go toolchain on PATH: skipping the image build (outpost build compiles Go modules with it)")
		return "", nil
	}
	modDir := filepath.Join(dir, "modules", name)
	for _, file := range []struct{ name, content string }{
		{"module.yaml", initModuleYAML}, {"go.mod", initGoMod}, {"go.sum", initGoSum}, {"main.go", initMainGo},
	} {
		p := filepath.Join(modDir, file.name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(modDir, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(file.content, "{{NAME}}", name)), 0o644); err != nil {
			return "", err
		}
	}
	// The Go SDK the module builds against: this outpost's.
	if err := sdk.WriteModule(filepath.Join(modDir, sdk.Dir)); err != nil {
		return "", err
	}
	m, err := image.LoadModule(modDir)
	if err != nil {
		return "", err
	}
	m.Repository = reg + "/" + name
	platform := "linux/" + goruntime.GOARCH
	if goruntime.GOARCH == "arm" {
		platform = "linux/arm/v7"
	}
	res, err := image.BuildModule(ctx, m, image.BuildOptions{Platforms: []string{platform}, CacheDir: filepath.Join(dir, "oci")})
	if err != nil {
		return "", err
	}
	status("built %s for %s in %v (outpost's own part: %v)", res.Reference, platform, res.Stats.Total.Round(time.Millisecond), res.Stats.Own().Round(time.Millisecond))
	digest, err := image.Push(ctx, res.Reference, res.Artifact(), image.PushOptions{})
	if err != nil {
		return "", err
	}
	ref := res.Reference.Context().Digest(digest.String()).String()
	status("pushed %s", ref)
	return ref, nil
}

// quickstartDaemon deploys the sample image to the device and runs a device
// daemon until the module runs and has printed, then stops it.
func quickstartDaemon(ctx context.Context, f *Factory, op *hubclient.Client, dir, deviceCS, caFile, img string, res *quickstartResult, status func(string, ...any)) error {
	const deviceID, moduleID = "quickstart-device", "tempsensor"
	manifest := fmt.Sprintf(`{"schemaVersion": "1.0", "modules": {%q: {"image": %q, "version": "1.0", "restartPolicy": "always",
		"env": {"INTERVAL": "1"}, "desired": %s}}}`, moduleID, img, quickstartDesired)
	if _, err := op.ApplyConfiguration(ctx, deviceID, []byte(manifest)); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	status("deployed %s to %s", moduleID, deviceID)

	sock := filepath.Join(dir, "mgmt.sock")
	daemonCtx, stop := context.WithCancel(ctx)
	defer stop()
	// The module broker on loopback, at IoT Edge's port when it is free (the
	// Azure SDKs reach a gateway on 8883 only).
	// OUTPOST_BROKER_LISTEN, the daemon's setting, still wins.
	brokerAddr := "127.0.0.1:8883"
	if a := os.Getenv(config.EnvVar("broker-listen")); a != "" {
		brokerAddr = a
	}
	brokerLn, err := net.Listen("tcp", brokerAddr)
	if err != nil {
		if brokerLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return fmt.Errorf("module broker: %w", err)
		}
		status("port 8883 is taken: the module broker listens on %s", brokerLn.Addr())
	}
	d, err := daemon.New(daemon.Config{
		ConnectionString: deviceCS, CAFile: caFile, DataDir: filepath.Join(dir, "device"),
		Runtime: "auto", MgmtSocket: sock, GatewayHostName: "localhost", BrokerListener: brokerLn,
	})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(daemonCtx) }()
	stopDaemon := func() error {
		stop()
		return <-done
	}

	mc := mgmtclient.New(sock)
	deadline := time.Now().Add(60 * time.Second)
	var running *mgmtclient.Module
	for running == nil {
		select {
		case err := <-done:
			return fmt.Errorf("the daemon stopped: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
		mods, err := mc.Modules(ctx)
		if err == nil {
			for _, m := range mods {
				if m.Name == moduleID && m.Status == "running" {
					running = &m
				}
			}
		}
		if time.Now().After(deadline) {
			stopDaemon()
			return fmt.Errorf("%s did not start within a minute: %+v %v", moduleID, mods, err)
		}
	}
	rtName := "?"
	if st, err := mc.Status(ctx); err == nil {
		rtName = st.Runtime
	}
	status("daemon running %s (runtime %s, pid %d, image %s)", moduleID, rtName, running.Pid, running.ImageDigest)
	res.Running = running

	// Its first readings.
	for time.Now().Before(deadline) && len(res.Logs) < 2 {
		time.Sleep(300 * time.Millisecond)
		rc, err := mc.Logs(ctx, moduleID, mgmtclient.LogOptions{Tail: 3})
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		res.Logs = nil
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line != "" {
				res.Logs = append(res.Logs, line)
			}
		}
	}
	// The twin, live: a desired change goes to the running module (the hub,
	// the daemon's sync, its broker), which takes it at once and answers in
	// its reported properties (the broker, the outbox, the hub).
	live, err := quickstartLiveDesired(ctx, op, deviceID, moduleID, status)
	if err != nil {
		stopDaemon()
		return err
	}
	res.Live = live
	if err := stopDaemon(); err != nil {
		return err
	}
	status("daemon stopped (modules stopped in reverse startup order)")

	// A daemon leaves stopped instances in place for its next start; the
	// quickstart is over, so remove them (runc's overlay mounts included).
	rt, err := runtime.New("auto", filepath.Join(dir, "device", "runtime"))
	if err != nil {
		return err
	}
	insts, err := rt.List(ctx)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if err := rt.Remove(ctx, in.Name); err != nil {
			return fmt.Errorf("remove instance %s: %w", in.Name, err)
		}
	}
	return nil
}

// quickstartTUICommand is the command that opens the sample module's twin
// in outpost tui, against the quickstart's hub.
func quickstartTUICommand(connectionString, caFile, deviceID, moduleID string) string {
	return fmt.Sprintf("outpost tui --hub '%s' --ca %s %s/%s", connectionString, caFile, deviceID, moduleID)
}
