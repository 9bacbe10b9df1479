// Package agent is the device daemon's agent: it reads the deployment the hub
// holds for the device (the desired properties of its $edgeAgent twin, kept by
// internal/syncer), pulls module images (internal/imagestore) and keeps one
// instance per module running on a runtime (internal/runtime), by restart
// policy, and reports what it does in the $edgeAgent twin's reported properties
// with IoT Edge's field names.
//
// Each module has a supervisor goroutine of its own that owns its instance:
// pulling, starting, waiting for it to exit and restarting it after a back-off.
// A module that cannot start or crashes in a loop therefore never delays the
// others. The agent's main loop only hands each supervisor its desired state,
// group by group in startupOrder, and collects status.
//
// Instances are named after their module id and carry the hash of the
// desired state they were made from in a label, so that a restarted daemon
// adopts an instance that still runs the same thing instead of starting a
// second one.
//
// Restart policies, IoT Edge's: never; on-failure restarts an instance that
// exits with a non-zero code; on-unhealthy also one whose health check (the
// image's HEALTHCHECK or createOptions.Healthcheck, run by the agent through
// the runtime on every runtime) fails Retries times in a row; always
// restarts it whatever ends it. An unhealthy module under never or
// on-failure is reported unhealthy and left running.
//
// Images are pulled into the image store, except on a runtime whose engine
// keeps images itself (docker): it pulls them, with the same credentials.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/imagestore"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// AgentModule is the module whose twin holds the deployment (desired) and
// the agent's status (reported), IoT Edge's name.
const AgentModule = "$edgeAgent"

// HubModule is the module whose twin holds the routes (desired) and the
// device broker's status (reported).
const HubModule = "$edgeHub"

// Defaults of Config.
const (
	DefaultBackoffBase     = 10 * time.Second
	DefaultBackoffMax      = 300 * time.Second
	DefaultResetAfter      = 10 * time.Minute
	DefaultStopGrace       = 10 * time.Second
	DefaultReportInterval  = 200 * time.Millisecond
	DefaultGroupWait       = 60 * time.Second
	DefaultImageGCAge      = 24 * time.Hour
	DefaultImageGCInterval = time.Hour
)

// Labels the agent puts on its instances.
const (
	LabelModule = "outpost.module"
	LabelHash   = "outpost.spec-hash"
	LabelDigest = "outpost.image-digest"
	LabelImage  = "outpost.image"
	LabelStart  = "outpost.startup-order"
)

// ErrUnknownModule is returned for a module the deployment does not name.
var ErrUnknownModule = errors.New("no such module in the deployment")

// Config is what an Agent needs.
type Config struct {
	DeviceID        string
	HubHostName     string // IOTEDGE_IOTHUBHOSTNAME
	GatewayHostName string // IOTEDGE_GATEWAYHOSTNAME; default the machine's host name
	// BrokerAddress, when set, is given to modules as OUTPOST_BROKER_ADDRESS:
	// where the module broker listens when that is not the gateway at 8883
	// (outpost's SDK reads it; the Azure SDKs dial 8883 only).
	BrokerAddress string

	Syncer  *syncer.Syncer
	Images  *imagestore.Store
	Runtime runtime.Runtime

	// WorkloadDir holds one directory per module with its workload socket,
	// <WorkloadDir>/<module>/workload.sock.
	WorkloadDir string
	// Workload returns the handler of a module's workload socket (the
	// workload API, internal/workload); nil answers 501 on each.
	Workload func(module string) http.Handler
	// LogDir holds one directory per module with its logs, kept across
	// restarts of the instance and removed with the module. "" leaves logs to
	// the runtime (lost on each re-create).
	LogDir string

	// Restart back-off: min(BackoffBase × 2^restartCount, BackoffMax);
	// restartCount is reset once an instance has run for ResetAfter.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	ResetAfter  time.Duration
	// StopGrace is how long a module has between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// BrokerRunning says whether the module broker (IoT Edge's edgeHub)
	// serves, for systemModules.edgeHub in the reported status; nil reports
	// it unknown.
	BrokerRunning func() bool
	// ReportInterval is the least time between two reported patches.
	ReportInterval time.Duration
	// GroupWait bounds how long a startupOrder group may hold the next one
	// back while its modules pull and start.
	GroupWait time.Duration
	// ImageGCAge is how long an image no module uses is kept before it is
	// removed from the image store; 0 keeps them all. ImageGCInterval is how
	// often that is looked at (default DefaultImageGCInterval).
	ImageGCAge      time.Duration
	ImageGCInterval time.Duration
	// KeepInstances leaves the instances running when Run returns (a daemon
	// upgrade, or a test simulating a crash); by default Run stops them in
	// reverse startup order.
	KeepInstances bool

	Logger *slog.Logger
	Now    func() time.Time
}

// Agent reconciles the device's deployment into running instances.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	mods    map[string]*supervisor
	desired deploymentStatus
	started time.Time     // when Run began: the system modules' start
	changed chan struct{} // status changed: report it

	statusMu sync.Mutex
	statusC  chan struct{} // closed when a module's status changes; see StatusChanged

	wlMu     sync.Mutex
	workload map[string]*http.Server // by module

	reportMu sync.Mutex

	lastKey string          // the deployment version and identities last reconciled in full (main loop only)
	inUse   []string        // image references of the valid deployment last read; nil before
	wg      sync.WaitGroup  // supervisors
	pullCtx context.Context // Run's: ends pulls at shutdown
}

// deploymentStatus is what the agent knows of the deployment as a whole.
type deploymentStatus struct {
	version     int64
	code        int
	description string
	read        bool
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Syncer == nil || cfg.Images == nil || cfg.Runtime == nil {
		return nil, errors.New("agent: Syncer, Images and Runtime are required")
	}
	if cfg.DeviceID == "" {
		return nil, errors.New("agent: DeviceID is required")
	}
	if cfg.GatewayHostName == "" {
		cfg.GatewayHostName, _ = os.Hostname()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.BackoffBase, DefaultBackoffBase)
	def(&cfg.BackoffMax, DefaultBackoffMax)
	def(&cfg.ResetAfter, DefaultResetAfter)
	def(&cfg.StopGrace, DefaultStopGrace)
	def(&cfg.ReportInterval, DefaultReportInterval)
	def(&cfg.GroupWait, DefaultGroupWait)
	def(&cfg.ImageGCInterval, DefaultImageGCInterval)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Agent{cfg: cfg, log: cfg.Logger, mods: map[string]*supervisor{}, workload: map[string]*http.Server{}, changed: make(chan struct{}, 1), statusC: make(chan struct{})}, nil
}

// Run reconciles until ctx is done, then stops the modules in reverse
// startup order (unless Config.KeepInstances) and returns. It waits for the
// device's first sync with its hub, or starts at once from the cached
// deployment when the device has synced before.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	a.started = a.cfg.Now()
	a.mu.Unlock()
	changes := a.cfg.Syncer.Watch(ctx)
	reportCtx, stopReport := context.WithCancel(context.Background())
	reportDone := make(chan struct{})
	go func() { defer close(reportDone); a.reportLoop(reportCtx) }()
	defer func() { stopReport(); <-reportDone }()

	for !a.cfg.Syncer.Synced() {
		a.log.Info("waiting for the first sync with the hub")
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return nil
			}
		case <-time.After(time.Second):
		}
	}
	// Supervisors outlive ctx: the shutdown below still needs them. Only their
	// pulls end with ctx, so that a slow registry does not hold a shutdown.
	a.pullCtx = ctx
	supCtx, stopSups := context.WithCancel(context.Background())
	defer func() { stopSups(); a.wg.Wait(); a.closeWorkload("") }()
	if a.cfg.ImageGCAge > 0 {
		gcDone := make(chan struct{})
		defer func() { <-gcDone }()
		go func() { defer close(gcDone); a.gcLoop(ctx) }()
	}

	for {
		if ctx.Err() == nil {
			a.reconcile(ctx, supCtx)
		}
		select {
		case <-ctx.Done():
			a.shutdown()
			a.flushReport(reportCtx)
			return nil
		case c, ok := <-changes:
			if !ok { // Watch ends with ctx
				changes = nil
				continue
			}
			if isChildChange(c) {
				continue // leaf devices are the broker's: nothing to run
			}
			// The hub's twin may have replaced what the device reported
			// (a device identity created anew): check the report again.
			a.notify()
			// Drain a burst: each reconcile reads the latest state anyway (a
			// watcher that falls behind misses changes, not the state), and
			// does nothing when neither the deployment nor the modules changed.
			for drained := false; !drained; {
				select {
				case _, ok := <-changes:
					drained = !ok
				default:
					drained = true
				}
			}
		}
	}
}

// isChildChange tells a change of the device's children (leaf devices:
// their set, identities or twins), which the agent has nothing to do with.
func isChildChange(c syncer.Change) bool { return c.DeviceID != "" || c.Children }

// reconcile reads the deployment and hands each module's supervisor its
// desired state, startupOrder group by group.
func (a *Agent) reconcile(ctx, supCtx context.Context) {
	m, version, err := a.readDeployment()
	a.mu.Lock()
	a.desired.version, a.desired.read = version, true
	switch {
	case err == nil:
		a.desired.code, a.desired.description = 200, ""
	case errors.Is(err, deployment.ErrSchemaVersion):
		a.desired.code, a.desired.description = 412, err.Error()
	case isValidation(err):
		a.desired.code, a.desired.description = 400, err.Error()
	default:
		a.desired.code, a.desired.description = 500, err.Error()
	}
	if err == nil {
		a.inUse = []string{}
		for _, mod := range m.Modules {
			a.inUse = append(a.inUse, mod.Image)
		}
	}
	a.mu.Unlock()
	a.notify()
	if err != nil {
		a.log.Error("deployment", "version", version, "err", err)
		return
	}
	gens := map[string]string{}
	key := fmt.Sprint(version)
	if mods, err := a.cfg.Syncer.Modules(); err == nil {
		for _, sm := range mods {
			gens[sm.ModuleID] = sm.GenerationID
			key += "," + sm.ModuleID + ":" + sm.GenerationID
		}
	}
	if key == a.lastKey {
		return // neither the deployment nor the modules changed
	}

	// Removed modules go first, in reverse startup order.
	a.mu.Lock()
	var gone []*supervisor
	for id, s := range a.mods {
		if _, ok := m.Modules[id]; !ok {
			gone = append(gone, s)
			delete(a.mods, id)
		}
	}
	a.mu.Unlock()
	sort.Slice(gone, func(i, j int) bool { return gone[i].order() > gone[j].order() })
	for _, s := range gone {
		s.remove()
	}
	for _, s := range gone {
		<-s.done
	}
	if len(gone) > 0 {
		a.notify()
	}
	// Instances no supervisor owns (a module removed while the daemon was down).
	if insts, err := a.cfg.Runtime.List(ctx); err == nil {
		for _, st := range insts {
			if _, ok := m.Modules[st.Name]; ok {
				continue
			}
			a.log.Info("removing the instance of a module the deployment no longer names", "module", st.Name)
			_ = a.cfg.Runtime.Stop(ctx, st.Name, a.cfg.StopGrace)
			if err := a.cfg.Runtime.Remove(ctx, st.Name); err != nil {
				a.log.Error("remove instance", "module", st.Name, "err", err)
			}
			a.removeModuleDirs(st.Name)
		}
	}

	for _, group := range groups(m) {
		var acks []<-chan struct{}
		for _, mod := range group {
			d := desiredModule{Module: mod, GenerationID: gens[mod.Name], Credentials: credentials(m)}
			d.Hash = d.hash()
			a.mu.Lock()
			s, ok := a.mods[mod.Name]
			if !ok {
				s = newSupervisor(a, mod.Name)
				a.mods[mod.Name] = s
				a.wg.Add(1)
				go func() { defer a.wg.Done(); s.run(supCtx) }()
			}
			a.mu.Unlock()
			acks = append(acks, s.update(d))
		}
		timeout := time.NewTimer(a.cfg.GroupWait)
		for _, ack := range acks {
			select {
			case <-ack:
			case <-timeout.C:
			case <-ctx.Done():
				timeout.Stop()
				return
			}
		}
		timeout.Stop()
	}
	a.lastKey = key
}

// shutdown stops every module in reverse startup order, each group in
// parallel, and ends the supervisors.
func (a *Agent) shutdown() {
	a.mu.Lock()
	var all []*supervisor
	for _, s := range a.mods {
		all = append(all, s)
	}
	a.mu.Unlock()
	byOrder := map[int64][]*supervisor{}
	var orders []int64
	for _, s := range all {
		o := s.order()
		if _, ok := byOrder[o]; !ok {
			orders = append(orders, o)
		}
		byOrder[o] = append(byOrder[o], s)
	}
	slices.Sort(orders)
	slices.Reverse(orders)
	for _, o := range orders {
		for _, s := range byOrder[o] {
			s.shutdown(!a.cfg.KeepInstances)
		}
		for _, s := range byOrder[o] {
			<-s.done
		}
	}
}

// gcLoop removes the images no module uses once they are older than
// ImageGCAge: those the deployment does not name and no instance runs.
func (a *Agent) gcLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.ImageGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		inUse := slices.Clone(a.inUse)
		known := a.inUse != nil
		a.mu.Unlock()
		if !known {
			continue
		}
		for _, m := range a.Modules() {
			if m.ImageDigest != "" {
				inUse = append(inUse, m.ImageDigest)
			}
		}
		if insts, err := a.cfg.Runtime.List(ctx); err == nil {
			for _, st := range insts {
				if d := st.Labels[LabelDigest]; d != "" {
					inUse = append(inUse, d)
				}
			}
		}
		var removed []string
		var err error
		if p, ok := a.cfg.Runtime.(runtime.ImagePuller); ok {
			removed, err = p.GCImages(ctx, inUse, a.cfg.ImageGCAge)
		} else {
			removed, err = a.cfg.Images.GC(inUse, a.cfg.ImageGCAge)
		}
		if err != nil {
			a.log.Error("image gc", "err", err)
		}
		if len(removed) > 0 {
			a.log.Info("image gc: removed images no module uses", "images", removed)
		}
	}
}

func isValidation(err error) bool {
	var ve *deployment.ValidationError
	return errors.As(err, &ve)
}

// readDeployment reads the deployment from the $edgeAgent twin.
func (a *Agent) readDeployment() (*deployment.Manifest, int64, error) {
	t, err := a.cfg.Syncer.Twin(AgentModule)
	if err != nil {
		return nil, 0, fmt.Errorf("read the %s twin: %w", AgentModule, err)
	}
	version := t.DesiredVersion()
	desired := t.DesiredJSON()
	if isEmptyDesired(t.Desired()) {
		// No deployment yet: no modules.
		return &deployment.Manifest{Modules: map[string]deployment.Module{}}, version, nil
	}
	m, warnings, err := deployment.FromAgentDesired(desired)
	for _, w := range warnings {
		a.log.Warn("deployment", "warning", w)
	}
	return m, version, err
}

func isEmptyDesired(d map[string]any) bool {
	for k := range d {
		if len(k) > 0 && k[0] != '$' {
			return false
		}
	}
	return true
}

// groups returns the running modules' startup groups, lowest order first,
// each sorted by name.
func groups(m *deployment.Manifest) [][]deployment.Module {
	by := map[int64][]deployment.Module{}
	for _, mod := range m.Modules {
		by[mod.StartupOrder] = append(by[mod.StartupOrder], mod)
	}
	var orders []int64
	for o := range by {
		orders = append(orders, o)
	}
	slices.Sort(orders)
	var out [][]deployment.Module
	for _, o := range orders {
		g := by[o]
		sort.Slice(g, func(i, j int) bool { return g[i].Name < g[j].Name })
		out = append(out, g)
	}
	return out
}

func credentials(m *deployment.Manifest) []imagestore.Credential {
	var out []imagestore.Credential
	names := make([]string, 0, len(m.RegistryCredentials))
	for n := range m.RegistryCredentials {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := m.RegistryCredentials[n]
		out = append(out, imagestore.Credential{Address: c.Address, Username: c.Username, Password: c.Password})
	}
	return out
}

// notify marks the status as changed.
func (a *Agent) notify() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
	a.statusMu.Lock()
	close(a.statusC)
	a.statusC = make(chan struct{})
	a.statusMu.Unlock()
}

// StatusChanged returns a channel that is closed at the next change of what
// Modules returns (or of the deployment's status). Read the channel first,
// then Modules, so that no change is missed:
//
//	for { c := a.StatusChanged(); show(a.Modules()); <-c }
func (a *Agent) StatusChanged() <-chan struct{} {
	a.statusMu.Lock()
	defer a.statusMu.Unlock()
	return a.statusC
}

func (a *Agent) workloadSocket(module string) string {
	if a.cfg.WorkloadDir == "" {
		return ""
	}
	return filepath.Join(a.cfg.WorkloadDir, module, "workload.sock")
}

func (a *Agent) logDir(module string) string {
	if a.cfg.LogDir == "" {
		return ""
	}
	return filepath.Join(a.cfg.LogDir, module)
}

func (a *Agent) removeModuleDirs(module string) {
	a.closeWorkload(module)
	if a.cfg.WorkloadDir != "" {
		_ = os.RemoveAll(filepath.Join(a.cfg.WorkloadDir, module))
	}
	if d := a.logDir(module); d != "" {
		_ = os.RemoveAll(d)
	}
}

// ModuleStatus is what the agent knows of one module, for the management API.
type ModuleStatus struct {
	Name          string    `json:"name"`
	Image         string    `json:"image"`
	ImageDigest   string    `json:"imageDigest,omitempty"`
	Version       string    `json:"version,omitempty"`
	DesiredStatus string    `json:"desiredStatus"`
	RestartPolicy string    `json:"restartPolicy"`
	StartupOrder  int64     `json:"startupOrder"`
	RuntimeStatus string    `json:"runtimeStatus"`
	Description   string    `json:"description,omitempty"`
	ExitCode      *int      `json:"exitCode,omitempty"`
	RestartCount  int       `json:"restartCount"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	ExitedAt      time.Time `json:"exitedAt,omitzero"`
	LastRestartAt time.Time `json:"lastRestartAt,omitzero"`
	NextRestartAt time.Time `json:"nextRestartAt,omitzero"`
	Pid           int       `json:"pid,omitempty"`
	// LastHealthCheck is the result of the instance's last health check;
	// nil before the first (or without a check).
	LastHealthCheck *HealthCheck `json:"lastHealthCheck,omitempty"`
}

// Modules returns the status of every module of the deployment, by name.
func (a *Agent) Modules() []ModuleStatus {
	a.mu.Lock()
	sups := make([]*supervisor, 0, len(a.mods))
	for _, s := range a.mods {
		sups = append(sups, s)
	}
	a.mu.Unlock()
	out := make([]ModuleStatus, 0, len(sups))
	for _, s := range sups {
		out = append(out, s.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Restart restarts a module's instance now, whatever its state, and resets
// its back-off.
func (a *Agent) Restart(ctx context.Context, module string) error {
	a.mu.Lock()
	s, ok := a.mods[module]
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("restart %s: %w", module, ErrUnknownModule)
	}
	return s.restart(ctx)
}

// Logs returns a module's logs from its runtime.
func (a *Agent) Logs(ctx context.Context, module string, opts runtime.LogOptions) (io.ReadCloser, error) {
	a.mu.Lock()
	_, ok := a.mods[module]
	a.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("logs of %s: %w", module, ErrUnknownModule)
	}
	rc, err := a.cfg.Runtime.Logs(ctx, module, opts)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", module, err)
	}
	return rc, nil
}

// Runtime is the runtime the agent runs instances on.
func (a *Agent) Runtime() runtime.Runtime { return a.cfg.Runtime }

// Syncer is the agent's syncer.
func (a *Agent) Syncer() *syncer.Syncer { return a.cfg.Syncer }

// DeviceID is the device's id.
func (a *Agent) DeviceID() string { return a.cfg.DeviceID }
