package registry

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// Automatic deployments (IoT Hub configurations with modulesContent) are
// applied by an AutoDeployer, which follows the store: a change of a device
// twin (tags, reported properties) or identity re-evaluates that device, a
// change of a configuration re-evaluates every device. For each device:
//
//   - the configurations whose targetCondition matches its twin (and that
//     is an edge device) target it;
//   - of the targeting base deployments the highest priority wins; equal
//     priorities go to the most recently created (IoT Edge's rule), then
//     to the greater id;
//   - targeting layered deployments of a higher priority than the base
//     are merged on top of it, lowest priority first, so the highest wins
//     where two set the same path;
//   - the result is applied as POST applyConfigurationContent applies a
//     deployment, in one transaction with the device's deploy state
//     (deploystate/{deviceId}): which configurations target it and which
//     are applied, shown as "configurations" in its $edgeAgent twin.
//
// A device no longer targeted by any base deployment keeps what it was last
// given, as IoT Edge devices do. While an automatic deployment is applied to
// a device, a per-device deployment is refused (IoT Edge does not combine
// them). The state written with each apply makes evaluation idempotent, so
// after a crash the evaluation of every device at start converges.

// deployStateKey is the key of a device's automatic deployment state.
func deployStateKey(id string) string { return "deploystate/" + id }

const deployStatePrefix = "deploystate/"

// deployState is what the hub last decided for a device.
type deployState struct {
	Configurations map[string]hubapi.ConfigurationStatus `json:"configurations"`
	// Hash identifies the deployment last applied automatically; "" when none
	// is applied now.
	Hash string `json:"hash,omitempty"`
	// Error says why the deployment composed for the device could not be applied.
	Error string `json:"error,omitempty"`
	// DeviceConfigurations are the automatic device configurations
	// (deviceContent) that target the device, as its device twin shows them.
	DeviceConfigurations map[string]hubapi.ConfigurationStatus `json:"deviceConfigurations,omitempty"`
	// Device identifies the device configuration whose content was written
	// to the device twin ("id@createdTimeUtc"); "" when none is applied.
	Device string `json:"device,omitempty"`
	// DeviceError says why it could not be written.
	DeviceError string `json:"deviceError,omitempty"`
}

func (r *Registry) deployState(deviceID string) (deployState, int64, error) {
	rec, err := r.st.Get(deployStateKey(deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return deployState{}, 0, nil
	}
	if err != nil {
		return deployState{}, 0, err
	}
	s, err := decodeRecord[deployState](rec)
	return s, rec.Version, err
}

// DeviceConfigurations returns the configurations that target a device and
// their status there (Applied or Targeted), as IoT Hub shows them in the
// device's $edgeAgent twin; nil when none does.
func (r *Registry) DeviceConfigurations(deviceID string) (map[string]hubapi.ConfigurationStatus, error) {
	s, _, err := r.deployState(deviceID)
	if len(s.Configurations) == 0 {
		return nil, err
	}
	return s.Configurations, err
}

// DeviceTwinConfigurations returns the automatic device configurations
// (deviceContent) that target a device and their status there, as IoT Hub
// shows them in the device twin; nil when none does.
func (r *Registry) DeviceTwinConfigurations(deviceID string) (map[string]hubapi.ConfigurationStatus, error) {
	s, _, err := r.deployState(deviceID)
	if len(s.DeviceConfigurations) == 0 {
		return nil, err
	}
	return s.DeviceConfigurations, err
}

// ErrManaged is returned for a per-device deployment to a device that an
// automatic deployment manages.
var ErrManaged = errors.New("managed by an automatic deployment")

// manualGuard refuses a per-device deployment while an automatic one is
// applied to the device, and makes the transaction fail if one gets
// applied meanwhile.
func (r *Registry) manualGuard(deviceID string) ([]store.Op, error) {
	s, v, err := r.deployState(deviceID)
	if err != nil {
		return nil, err
	}
	var applied []string
	for id, st := range s.Configurations {
		if st.Status == hubapi.ConfigurationApplied {
			applied = append(applied, id)
		}
	}
	if len(applied) > 0 {
		slices.Sort(applied)
		return nil, fmt.Errorf("%w: device %q runs automatic deployment %s; IoT Edge does not combine per-device and automatic deployments: change the device's tags so that no deployment targets it, or change the deployment", ErrManaged, deviceID, strings.Join(applied, ", "))
	}
	// Still so when the transaction commits (0: still no state).
	return []store.Op{store.CheckOp(deployStateKey(deviceID), v)}, nil
}

// AutoDeployer applies automatic deployments; see Run.
type AutoDeployer struct {
	r       *Registry
	log     *slog.Logger
	workers int

	mu       sync.RWMutex
	configs  map[string]*compiled
	versions map[string]int64 // store version of each configuration read
	modules  int              // how many of configs are module configurations
	// moduleList and moduleBasis are the module configurations of configs,
	// sorted by id, and their digest; "" when to be computed again.
	moduleList  []*compiled
	moduleBasis string

	// passMu guards pass, the evaluation of every module twin under way
	// (nil: none), and alias, the basisAlias in force.
	passMu sync.Mutex
	pass   *modulePass
	alias  basisAlias

	// cpu bounds the module twins decided at once (evaluateModule): half
	// the CPUs (a hub may run more Ps than CPUs: store.UseProcs).
	cpu chan struct{}

	// evaluated and skipped count module twins evaluated and those not
	// evaluated as their decision was made on what they are now.
	evaluated, skipped atomic.Int64

	q *workQueue
}

// NewAutoDeployer returns an AutoDeployer over r's store.
func (r *Registry) NewAutoDeployer(log *slog.Logger) *AutoDeployer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AutoDeployer{r: r, log: log, workers: 16, configs: map[string]*compiled{}, versions: map[string]int64{}, q: newWorkQueue(),
		cpu: make(chan struct{}, max(1, min(runtime.GOMAXPROCS(0), runtime.NumCPU())/2))}
}

// Run evaluates every device, then follows the store, re-evaluating what
// changes, until ctx is done.
func (a *AutoDeployer) Run(ctx context.Context) error {
	start := time.Now()
	events := a.r.st.Watch(ctx, "")
	recs, err := a.r.st.List(configurationPrefix)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		a.load(rec)
	}
	if err := a.enqueueAll(); err != nil {
		return err
	}
	// Module twins too while module configurations exist, or a state is left
	// from one deleted before the hub went down.
	states, err := a.r.st.Range(moduleStatePrefix, "", 1)
	if err != nil {
		return err
	}
	if a.hasModuleConfigs() || len(states) > 0 {
		if err := a.loadBasisAlias(); err != nil {
			return err
		}
		if err := a.evaluateAllModules(ctx); err != nil {
			return err
		}
	}
	a.mu.RLock()
	configured := len(a.configs) > 0 || len(states) > 0
	a.mu.RUnlock()
	if queued := a.q.len(); configured && queued > 0 {
		go func() {
			a.q.waitIdle()
			if ctx.Err() == nil {
				a.log.Info("automatic deployments: start evaluation done", "queued", queued, "took", time.Since(start).Round(time.Millisecond),
					"moduleTwinsEvaluated", a.evaluated.Load(), "moduleTwinsUnchanged", a.skipped.Load())
			}
		}()
	}
	var wg sync.WaitGroup
	for range a.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.work(ctx)
		}()
	}
	for ev := range events {
		kind, rest, _ := strings.Cut(ev.Record.Key, "/")
		switch kind {
		case "configurations":
			devices, modules := a.apply(ev)
			if devices {
				if err := a.enqueueAll(); err != nil {
					a.log.Error("automatic deployments: list devices", "err", err)
				}
			}
			if modules {
				if err := a.evaluateAllModules(ctx); err != nil {
					a.log.Error("automatic module configurations: list modules", "err", err)
				}
			}
		case "devices":
			a.q.push(rest)
		case "twins", "modules":
			dev, mod, isModule := strings.Cut(rest, "/")
			switch {
			case !isModule:
				if kind == "twins" { // the device twin
					a.q.push(rest)
				}
			case !isRuntimeModule(mod) && a.hasModuleConfigs():
				a.q.push(moduleItem(dev, mod))
			}
		}
	}
	a.q.close()
	wg.Wait()
	return nil
}

// load compiles a stored configuration; one that no longer compiles (stored
// by an older version) is logged and left out.
func (a *AutoDeployer) load(rec store.Record) {
	id := strings.TrimPrefix(rec.Key, configurationPrefix)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.versions[id] = rec.Version
	c, err := decodeRecord[Configuration](rec)
	if err == nil {
		var cc *compiled
		if cc, err = compileConfiguration(&c); err == nil {
			a.setConfig(id, cc)
			return
		}
	}
	a.setConfig(id, nil)
	a.log.Error("automatic deployments: configuration left out", "id", id, "err", err)
}

// setConfig keeps cc as configuration id (nil: none), under a.mu.
func (a *AutoDeployer) setConfig(id string, cc *compiled) {
	a.moduleList, a.moduleBasis = nil, ""
	if old := a.configs[id]; old != nil && old.module {
		a.modules--
	}
	if cc == nil {
		delete(a.configs, id)
		return
	}
	a.configs[id] = cc
	if cc.module {
		a.modules++
	}
}

// apply takes a configuration's change into account; it reports what to
// re-evaluate: every device (an IoT Edge deployment or device
// configuration changed), every module twin (a module configuration), both
// (one of unknown kind), or neither (no news: already read).
func (a *AutoDeployer) apply(ev store.Event) (devices, modules bool) {
	id := strings.TrimPrefix(ev.Record.Key, configurationPrefix)
	a.mu.Lock()
	seen := a.versions[id]
	if ev.Record.Version <= seen && ev.Type == store.Put {
		a.mu.Unlock()
		return false, false
	}
	before := a.configs[id]
	if ev.Type == store.Delete {
		a.setConfig(id, nil)
		a.versions[id] = ev.Record.Version
		a.mu.Unlock()
	} else {
		a.mu.Unlock()
		a.load(ev.Record)
	}
	a.mu.RLock()
	after := a.configs[id]
	a.mu.RUnlock()
	for _, cc := range []*compiled{before, after} {
		if cc == nil {
			continue
		}
		modules = modules || cc.module
		devices = devices || !cc.module
	}
	if before == nil && after == nil {
		return true, true
	}
	return devices, modules
}

// enqueueAll queues every device.
func (a *AutoDeployer) enqueueAll() error {
	return a.r.rangeAll("devices/", func(rec store.Record) error {
		a.q.push(strings.TrimPrefix(rec.Key, "devices/"))
		return nil
	})
}

// rangeAll calls fn for each record under prefix, reading them a page at a
// time (a hub replica on etcd holds no list of the whole fleet); it stops at
// fn's first error.
func (r *Registry) rangeAll(prefix string, fn func(store.Record) error) error {
	const page = 1000
	after := ""
	for {
		recs, err := r.st.Range(prefix, after, page)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(recs) < page {
			return nil
		}
		after = recs[len(recs)-1].Key
	}
}

func (a *AutoDeployer) work(ctx context.Context) {
	for {
		id, ok := a.q.pop()
		if !ok {
			return
		}
		if dev, mod, ok := strings.Cut(id, "/"); ok {
			if err := a.EvaluateModule(dev, mod); err != nil && ctx.Err() == nil && !errors.Is(err, ErrNotFound) {
				a.passFailed()
				a.log.Error("automatic module configurations: evaluate module twin", "device", dev, "module", mod, "err", err)
			}
		} else if err := a.Evaluate(id); err != nil && ctx.Err() == nil && !errors.Is(err, ErrNotFound) {
			a.log.Error("automatic deployments: evaluate device", "device", id, "err", err)
		}
		a.q.done(id)
	}
}

// Evaluate decides which automatic deployments a device gets and applies
// them if that changed.
func (a *AutoDeployer) Evaluate(deviceID string) error {
	for attempt := 1; ; attempt++ {
		err := a.evaluate(deviceID)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue // the device's twins or state changed meanwhile: again
		}
		return err
	}
}

func (a *AutoDeployer) evaluate(deviceID string) error {
	a.mu.RLock()
	configs := slices.Collect(maps.Values(a.configs))
	a.mu.RUnlock()
	// Module configurations target module twins: automatic_modules.go.
	configs = slices.DeleteFunc(configs, func(cc *compiled) bool { return cc.module })
	cur, version, err := a.r.deployState(deviceID)
	if err != nil || len(configs) == 0 && version == 0 {
		return err // a hub without configurations does nothing
	}
	dev, err := a.r.GetDevice(deviceID)
	if err != nil {
		return err
	}
	doc, err := a.r.conditionDoc(dev)
	if err != nil {
		return err
	}

	edge := isEdge(dev)
	var bases, layers, devs, others []*compiled
	for _, cc := range configs {
		if !cc.all && (cc.cond == nil || !cc.cond.Match(doc)) {
			continue
		}
		switch {
		case cc.device:
			devs = append(devs, cc)
		case !cc.edge:
			others = append(others, cc)
		case !edge:
		case cc.layered:
			layers = append(layers, cc)
		default:
			bases = append(bases, cc)
		}
	}
	next := deployState{Configurations: map[string]hubapi.ConfigurationStatus{}}
	for _, cc := range slices.Concat(bases, layers, others) {
		next.Configurations[cc.ID] = hubapi.ConfigurationStatus{Status: hubapi.ConfigurationTargeted}
	}
	devOps, err := a.deviceContent(deviceID, devs, cur, &next)
	if err != nil {
		return err
	}
	if len(bases) == 0 {
		return a.r.commitDeployState(dev, cur, next, version, devOps)
	}
	base := slices.MaxFunc(bases, byPriority)
	applied := []*compiled{base}
	m, content, err := compose(applied)
	if err != nil {
		next.Error = err.Error()
		return a.r.commitDeployState(dev, cur, next, version, devOps)
	}
	// Each layer on top of what came before; one that does not make a valid
	// deployment there (say, $edgeHub routes over a base without $edgeHub)
	// is left out, saying why, rather than keeping the rest from the device.
	slices.SortFunc(layers, byPriority)
	var layerErrs []string
	for _, l := range layers {
		if l.Priority <= base.Priority {
			continue
		}
		lm, lc, err := compose(append(slices.Clone(applied), l))
		if err != nil {
			layerErrs = append(layerErrs, fmt.Sprintf("layered deployment %s on top of %s: %v", l.ID, base.ID, err))
			continue
		}
		applied, m, content = append(applied, l), lm, lc
	}
	next.Error = strings.Join(layerErrs, "; ")
	if next.Error != "" && next.Error != cur.Error {
		a.log.Warn("automatic deployments: layer left out", "device", deviceID, "err", next.Error)
	}
	sum := sha256.Sum256(content)
	next.Hash = hex.EncodeToString(sum[:])
	for _, cc := range applied {
		next.Configurations[cc.ID] = hubapi.ConfigurationStatus{Status: hubapi.ConfigurationApplied}
	}
	if next.Hash == cur.Hash {
		return a.r.commitDeployState(dev, cur, next, version, devOps)
	}
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	err = a.r.applyDeployment(deviceID, m, func(string) ([]store.Op, error) {
		return append(slices.Clone(devOps), store.PutOp(deployStateKey(deviceID), b, version)), nil
	})
	if err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, ErrNotFound) {
		next.Error = err.Error()
		next.Hash = ""
		for _, cc := range applied {
			next.Configurations[cc.ID] = hubapi.ConfigurationStatus{Status: hubapi.ConfigurationTargeted}
		}
		return a.r.commitDeployState(dev, cur, next, version, devOps)
	}
	return err
}

// deviceContent decides which of the device configurations devs (those
// that target the device) is applied to it (applyContent), records that in
// next and returns the write of the device twin, if any.
func (a *AutoDeployer) deviceContent(deviceID string, devs []*compiled, cur deployState, next *deployState) ([]store.Op, error) {
	s, ops, err := a.applyContent(deviceID, "", devs, moduleState{Applied: cur.Device, Error: cur.DeviceError}, nil, 0)
	next.DeviceConfigurations, next.Device, next.DeviceError = s.Configurations, s.Applied, s.Error
	return ops, err
}

// applyContent decides which of targets (the device or module
// configurations that target a twin) is applied to the twin: the highest
// priority, as IoT Hub applies one configuration per twin. cur is what was
// decided before. It returns what is decided now and, when the winner was
// not applied before, the write of its content to the twin's desired
// properties (a merge patch, conditional on the twin's version tv; t nil:
// read here). A configuration's content is written once: properties
// changed later at the twin stay as they are, and a configuration that no
// longer targets the twin leaves what it wrote (IoT Hub's rules).
func (a *AutoDeployer) applyContent(deviceID, moduleID string, targets []*compiled, cur moduleState, t *twin.Twin, tv int64) (moduleState, []store.Op, error) {
	if len(targets) == 0 {
		return moduleState{}, nil, nil
	}
	next := moduleState{Configurations: map[string]hubapi.ConfigurationStatus{}}
	for _, cc := range targets {
		next.Configurations[cc.ID] = hubapi.ConfigurationStatus{Status: hubapi.ConfigurationTargeted}
	}
	w := slices.MaxFunc(targets, byPriority)
	mark := w.ID + "@" + w.CreatedTimeUtc
	var ops []store.Op
	if cur.Applied != mark { // written before: what the twin holds now stays
		var err error
		if t == nil {
			if t, tv, err = a.r.twinRecord(deviceID, moduleID); err != nil {
				return moduleState{}, nil, err
			}
		}
		changed, err := t.PatchDesired(w.patch, a.r.now())
		if err != nil {
			kind, attrs := "device", []any{"device", deviceID}
			if moduleID != "" {
				kind, attrs = "module", append(attrs, "module", moduleID)
			}
			next.Error = fmt.Sprintf("%s configuration %s: %v", kind, w.ID, err)
			if next.Error != cur.Error {
				a.log.Warn("automatic "+kind+" configurations: not applied", append(attrs, "err", next.Error)...)
			}
			return next, nil, nil
		}
		if changed {
			b, err := t.MarshalJSON()
			if err != nil {
				return moduleState{}, nil, err
			}
			ops = []store.Op{store.PutOp(twinKey(deviceID, moduleID), b, tv)}
		}
	}
	next.Applied = mark
	next.Configurations[w.ID] = hubapi.ConfigurationStatus{Status: hubapi.ConfigurationApplied}
	return next, ops, nil
}

// commitDeployState writes a device's state if it changed, in one
// transaction with ops (the device twin's write) when there are any, and
// only while dev is as read (not deleted meanwhile: its state and twin are
// deleted with it, and must not come back).
func (r *Registry) commitDeployState(dev Device, cur, next deployState, version int64, ops []store.Op) error {
	if len(ops) == 0 && len(next.Configurations) == 0 && len(next.DeviceConfigurations) == 0 && version == 0 {
		return nil
	}
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if old, _ := json.Marshal(cur); len(ops) == 0 && bytes.Equal(old, b) {
		return nil
	}
	dv, _ := versionOf(dev.ETag)
	_, err = r.st.Txn(append(ops, store.CheckOp(deviceKey(dev.DeviceID), dv), store.PutOp(deployStateKey(dev.DeviceID), b, version))...)
	return err
}

// byPriority orders configurations by priority, then creation time, then id.
func byPriority(x, y *compiled) int {
	if c := cmp.Compare(x.Priority, y.Priority); c != 0 {
		return c
	}
	if c := strings.Compare(x.CreatedTimeUtc, y.CreatedTimeUtc); c != 0 {
		return c
	}
	return strings.Compare(x.ID, y.ID)
}

// conditionDoc is the device twin as target conditions see it: IoT Hub's
// twin JSON with the device's capabilities.
func (r *Registry) conditionDoc(dev Device) (map[string]any, error) {
	t, _, err := r.twinRecord(dev.DeviceID, "")
	if err != nil {
		return nil, err
	}
	b, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	doc["status"] = dev.Status
	doc["capabilities"] = map[string]any{"iotEdge": isEdge(dev)}
	return doc, nil
}

// isEdge reports whether d is an IoT Edge device: only those get automatic
// deployments. A device stored without capabilities is one (outpost's
// default).
func isEdge(d Device) bool { return d.Capabilities == nil || d.Capabilities.IoTEdge }

// workQueue is a set of device ids to evaluate; an id is evaluated by one
// worker at a time, and again if it was pushed while being evaluated.
type workQueue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	order    []string
	pending  map[string]bool
	inflight map[string]bool
	closed   bool
	// idle is signalled when the queue empties (waitIdle); a cond of its
	// own, so that a push's Signal always wakes a worker.
	idle *sync.Cond
}

func newWorkQueue() *workQueue {
	q := &workQueue{pending: map[string]bool{}, inflight: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	q.idle = sync.NewCond(&q.mu)
	return q
}

// waitIdle returns once nothing is queued nor being evaluated, or the
// queue is closed.
func (q *workQueue) waitIdle() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && (len(q.order) > 0 || len(q.inflight) > 0) {
		q.idle.Wait()
	}
}

func (q *workQueue) push(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending[id] {
		return
	}
	q.pending[id] = true
	q.order = append(q.order, id)
	q.cond.Signal()
}

// len returns how many ids are queued.
func (q *workQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// pop returns the next id no worker holds, waiting for one; false once closed.
func (q *workQueue) pop() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return "", false
		}
		for i, id := range q.order {
			if !q.inflight[id] {
				if i == 0 { // the usual case: no copy of the rest (a start queues every device)
					q.order[0] = ""
					q.order = q.order[1:]
				} else {
					q.order = slices.Delete(q.order, i, i+1)
				}
				delete(q.pending, id)
				q.inflight[id] = true
				return id, true
			}
		}
		q.cond.Wait()
	}
}

func (q *workQueue) done(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.inflight, id)
	q.cond.Broadcast()
	if len(q.order) == 0 && len(q.inflight) == 0 {
		q.idle.Broadcast()
	}
}

func (q *workQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
	q.idle.Broadcast()
}
