package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// Automatic module configurations (IoT Hub configurations with
// moduleContent) are applied by the AutoDeployer too, to module twins:
//
//   - the target condition is over module twins, written as IoT Hub takes
//     it: "FROM devices.modules WHERE <condition>", the condition reading
//     the module twin (tags, properties, deviceId, moduleId);
//   - every module twin counts, of any device, except the IoT Edge
//     runtime's $edgeAgent and $edgeHub, whose desired properties belong to
//     the device's IoT Edge deployment;
//   - of the configurations that target a module twin the highest priority
//     is applied (equal priorities: the most recently created, then the
//     greater id), the others are "Targeted" there;
//   - it writes its desired properties into the module twin once, as a
//     merge patch: a later change at the twin stays, and a twin no longer
//     targeted keeps what was written (IoT Hub's rules, as for deviceContent).
//
// What was decided for a module twin is its module state
// (modulestate/{deviceId}/{moduleId}), written in the same transaction as
// the twin, so that the evaluation of every module twin at start converges
// after a crash. The module twin shows the configurations that target it
// as "configurations", as IoT Hub's module twins do.
//
// The state also says what its decision was made on: the module
// configurations (a digest of their ids, creation times, priorities,
// conditions and content) and the version of the twin record. A module
// twin whose state names the configurations read now and the twin's
// current version cannot be decided otherwise, so it is not evaluated
// again (a hub start queues every module twin). The state is written with
// the twin it decided on, or after it (conditional on its own version): a
// kill -9 leaves either the state of before, on which the twin or the
// configurations then disagree, or the new one.

const moduleStatePrefix = "modulestate/"

// moduleStateKey is the key of a module twin's automatic configuration state.
func moduleStateKey(deviceID, moduleID string) string {
	return moduleStatePrefix + deviceID + "/" + moduleID
}

// moduleState is what the hub last decided for a module twin.
type moduleState struct {
	// Configurations are the module configurations that target the twin.
	Configurations map[string]hubapi.ConfigurationStatus `json:"configurations,omitempty"`
	// Applied identifies the configuration whose content was written to the
	// twin ("id@createdTimeUtc"); "" when none is applied.
	Applied string `json:"applied,omitempty"`
	// Error says why it could not be written.
	Error string `json:"error,omitempty"`
	// Basis is the digest of the module configurations the decision was
	// made on (moduleBasis); "" in a state written before it was kept.
	Basis string `json:"basis,omitempty"`
	// Twin is the version of the twin record the decision was made on: 0
	// when there was none, sameTxn when the twin was written with this
	// state (the state record's own version, then).
	Twin int64 `json:"twin,omitempty"`
}

// sameTxn as moduleState.Twin: the twin was written in the state's
// transaction, so its version is the state record's (a store transaction
// gives every record it puts the same version).
const sameTxn = -1

func (s moduleState) empty() bool {
	return len(s.Configurations) == 0 && s.Applied == "" && s.Error == ""
}

// onTwin reports whether state s, at store version version, was decided
// on the twin record at version tv (as it is now) and says on which module
// configurations (its Basis).
func (s moduleState) onTwin(version, tv int64) bool {
	if version == 0 || s.Basis == "" {
		return false
	}
	if s.Twin == sameTxn {
		return tv == version
	}
	return tv == s.Twin
}

// moduleBasisKey holds a basisAlias: the module configurations of which
// older digests stand for the current ones.
const moduleBasisKey = "hub/module-configurations"

// modulePassKey is written as a pass of every module twin begins: its
// version is a store revision before any state the pass reads.
const modulePassKey = "hub/module-pass"

// basisAlias says that a module twin whose state was decided on one of
// From, on the twin as it is now, is decided on To as well: an evaluation
// of every module twin on To found their decisions the same (and left
// their states as they were rather than write each again). It is written
// only once that evaluation is complete, without an error: one cut short
// (a kill -9) leaves the alias of before, and the next start evaluates
// those twins again. It vouches only for states written before the
// evaluation began (their store version below Since): another replica
// still on older configurations may write a state meanwhile, on From, for
// a twin changed since, which the evaluation never saw.
type basisAlias struct {
	To    string   `json:"to"`
	From  []string `json:"from,omitempty"`
	Since int64    `json:"since,omitempty"`
}

// modulePass is an evaluation of every module twin on the module
// configurations of digest basis, begun at store revision since; seen are
// the digests of the states it found decided the same.
type modulePass struct {
	basis  string
	since  int64
	seen   map[string]bool
	failed bool
}

// loadBasisAlias reads the stored basisAlias.
func (a *AutoDeployer) loadBasisAlias() error {
	rec, err := a.r.st.Get(moduleBasisKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	al, err := decodeRecord[basisAlias](rec)
	if err != nil {
		return err
	}
	a.passMu.Lock()
	a.alias = al
	a.passMu.Unlock()
	return nil
}

// aliased reports whether a state decided on digest from, at store
// version version, is decided on basis too.
func (a *AutoDeployer) aliased(from, basis string, version int64) bool {
	a.passMu.Lock()
	defer a.passMu.Unlock()
	return a.alias.To == basis && slices.Contains(a.alias.From, from) && version < a.alias.Since
}

// beginModulePass starts an evaluation of every module twin (call it
// before queueing them). A pass whose beginning cannot be recorded
// evaluates all the same, and vouches for nothing (endModulePass).
func (a *AutoDeployer) beginModulePass() *modulePass {
	_, basis := a.moduleConfigs()
	p := &modulePass{basis: basis, seen: map[string]bool{}}
	since, err := a.r.st.Put(modulePassKey, []byte(`{}`), store.Any)
	if err != nil {
		a.log.Warn("automatic module configurations: record the start of an evaluation of every module twin; this one will not spare the next start", "err", err)
		p.failed = true
	}
	p.since = since
	a.passMu.Lock()
	a.pass = p
	a.passMu.Unlock()
	return p
}

// passSeen notes that a state decided on digest from was found decided the
// same on basis.
func (a *AutoDeployer) passSeen(from, basis string) {
	a.passMu.Lock()
	defer a.passMu.Unlock()
	if a.pass != nil && a.pass.basis == basis {
		a.pass.seen[from] = true
	}
}

// passFailed notes that a module twin's evaluation failed: the pass under
// way cannot vouch for every twin.
func (a *AutoDeployer) passFailed() {
	a.passMu.Lock()
	defer a.passMu.Unlock()
	if a.pass != nil {
		a.pass.failed = true
	}
}

// endModulePass is called once every module twin queued after
// beginModulePass returned p was evaluated: if no other pass began since,
// none failed and the module configurations are still those of p, the
// states p found decided the same are decided on p's configurations, and
// the stored basisAlias says so.
func (a *AutoDeployer) endModulePass(p *modulePass) error {
	a.passMu.Lock()
	if _, basis := a.moduleConfigs(); a.pass != p || p.failed || basis != p.basis {
		a.passMu.Unlock()
		return nil
	}
	a.pass = nil
	next := basisAlias{To: p.basis, From: slices.Sorted(maps.Keys(p.seen)), Since: p.since}
	same := a.alias.To == next.To && slices.Equal(a.alias.From, next.From) && a.alias.Since == next.Since
	a.alias = next
	a.passMu.Unlock()
	if same {
		return nil
	}
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	_, err = a.r.st.Put(moduleBasisKey, b, store.Any)
	return err
}

// moduleBasis is the digest of module configurations: what a module
// twin's decision depends on, besides the twin. The first line names the
// rules of evaluation: change it when they change, so that every module
// twin is decided again.
func moduleBasis(configs []*compiled) string {
	h := sha256.New()
	h.Write([]byte("module configurations 1\n"))
	for _, cc := range configs { // sorted by id
		b, _ := json.Marshal([]any{cc.ID, cc.CreatedTimeUtc, cc.Priority, cc.TargetCondition, string(cc.patch)})
		h.Write(append(b, '\n'))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func (r *Registry) moduleState(deviceID, moduleID string) (moduleState, int64, error) {
	rec, err := r.st.Get(moduleStateKey(deviceID, moduleID))
	if errors.Is(err, store.ErrNotFound) {
		return moduleState{}, 0, nil
	}
	if err != nil {
		return moduleState{}, 0, err
	}
	s, err := decodeRecord[moduleState](rec)
	return s, rec.Version, err
}

// ModuleTwinConfigurations returns the automatic module configurations
// (moduleContent) that target a module twin and their status there, as IoT
// Hub shows them in the module twin; nil when none does.
func (r *Registry) ModuleTwinConfigurations(deviceID, moduleID string) (map[string]hubapi.ConfigurationStatus, error) {
	s, _, err := r.moduleState(deviceID, moduleID)
	if len(s.Configurations) == 0 {
		return nil, err
	}
	return s.Configurations, err
}

// fromModules is IoT Hub's form of a module configuration's target
// condition; fromModulesStart tells one given to another kind.
var (
	fromModules      = regexp.MustCompile(`(?is)^from\s+devices\s*\.\s*modules\s+where\s+(.*)$`)
	fromModulesStart = regexp.MustCompile(`(?i)^from\s+devices\s*\.\s*modules\b`)
)

// compileTarget parses the target condition: over device twins ("*" for
// every device), or for a module configuration over module twins.
func (cc *compiled) compileTarget() error {
	tc := strings.TrimSpace(cc.TargetCondition)
	if cc.module {
		if tc == "" {
			return nil // targets nothing, as an empty condition does for the other kinds
		}
		m := fromModules.FindStringSubmatch(tc)
		if m == nil {
			return fmt.Errorf("targetCondition %q: a module configuration (moduleContent) targets module twins: write it as FROM devices.modules WHERE <condition>, such as FROM devices.modules WHERE tags.environment = 'test' (IoT Hub's form)", cc.TargetCondition)
		}
		cond, err := parseCondition(m[1])
		if err != nil {
			return fmt.Errorf("targetCondition %q: the condition after WHERE: %v", cc.TargetCondition, err)
		}
		cc.cond = cond
		cc.reads = readsOf(cond)
		return nil
	}
	if fromModulesStart.MatchString(tc) {
		return fmt.Errorf("targetCondition %q: FROM devices.modules is for module configurations (moduleContent); this configuration's condition is over device twins, such as tags.environment = 'prod'", cc.TargetCondition)
	}
	switch tc {
	case "":
	case "*":
		cc.all = true
	default:
		cond, err := parseCondition(tc)
		if err != nil {
			return fmt.Errorf("targetCondition %q: %v", cc.TargetCondition, err)
		}
		cc.cond = cond
	}
	return nil
}

// twinReads says which parts of a module twin a condition reads, beyond
// its top-level members (deviceId, moduleId, etag, version, status).
type twinReads uint8

const (
	readsTags twinReads = 1 << iota
	readsDesired
	readsReported
	// readsAll: a path this reading of parts does not serve (a section's
	// $metadata, a whole section as an object): the twin's full JSON.
	readsAll
)

// readsOf returns the parts of a module twin cond reads.
func readsOf(cond condition) twinReads {
	var r twinReads
	for _, p := range cond.Paths() {
		switch {
		case p[0] == "tags":
			r |= readsTags
		case p[0] != "properties":
		case len(p) < 3 || p[2] == "$metadata":
			r |= readsAll
		case p[1] == "desired":
			r |= readsDesired
		case p[1] == "reported":
			r |= readsReported
		}
	}
	return r
}

// conditionDoc is a module twin as module configurations' conditions read
// it: what json.Unmarshal of its JSON gives (numbers in sections as
// json.Number, which conditions compare as numbers), with the sections
// conditions read added as they are needed (need), without their
// $metadata unless one reads that (readsAll: the whole twin's JSON). The
// whole twin's JSON, decoded, was most of what a start spent on each
// module twin.
type conditionDoc struct {
	t   *twin.Twin
	has twinReads
	doc map[string]any
}

// need returns the document with at least the parts reads.
func (d *conditionDoc) need(reads twinReads) (map[string]any, error) {
	if d.has&readsAll != 0 || d.has&reads == reads && d.doc != nil {
		return d.doc, nil
	}
	t := d.t
	if reads&readsAll != 0 {
		b, err := t.MarshalJSON()
		if err != nil {
			return nil, err
		}
		d.doc = nil
		if err := json.Unmarshal(b, &d.doc); err != nil {
			return nil, err
		}
		d.has = readsAll
		return d.doc, nil
	}
	if d.doc == nil {
		d.doc = map[string]any{"deviceId": t.DeviceID, "etag": t.ETag, "version": float64(t.Version), "status": t.Status}
		if t.ModuleID != "" {
			d.doc["moduleId"] = t.ModuleID
		}
	}
	add := reads &^ d.has
	if add&readsTags != 0 {
		d.doc["tags"] = t.Tags()
	}
	if add&(readsDesired|readsReported) != 0 {
		props, _ := d.doc["properties"].(map[string]any)
		if props == nil {
			props = map[string]any{}
			d.doc["properties"] = props
		}
		if add&readsDesired != 0 {
			m := t.Desired()
			m["$version"] = float64(t.DesiredVersion())
			props["desired"] = m
		}
		if add&readsReported != 0 {
			m := t.Reported()
			m["$version"] = float64(t.ReportedVersion())
			props["reported"] = m
		}
	}
	d.has |= reads
	return d.doc, nil
}

// isRuntimeModule reports whether a module twin is a system module's (the
// IoT Edge runtime's $edgeAgent and $edgeHub), which module configurations
// leave to IoT Edge deployments.
func isRuntimeModule(moduleID string) bool { return identity.IsSystemModule(moduleID) }

// moduleItem is a module twin's item in the work queue ("deviceId/moduleId";
// a device id has no '/').
func moduleItem(deviceID, moduleID string) string { return deviceID + "/" + moduleID }

// evaluateAllModules queues every module twin and, once they are
// evaluated, ends that pass (endModulePass).
func (a *AutoDeployer) evaluateAllModules(ctx context.Context) error {
	start, evaluated, skipped := time.Now(), a.evaluated.Load(), a.skipped.Load()
	p := a.beginModulePass()
	if err := a.enqueueAllModules(); err != nil {
		return err
	}
	go func() {
		a.q.waitIdle()
		if ctx.Err() != nil {
			return
		}
		a.log.Info("automatic module configurations: every module twin evaluated", "took", time.Since(start).Round(time.Millisecond),
			"evaluated", a.evaluated.Load()-evaluated, "unchanged", a.skipped.Load()-skipped)
		if err := a.endModulePass(p); err != nil {
			a.log.Error("automatic module configurations: record the evaluation of every module twin", "err", err)
		}
	}()
	return nil
}

// enqueueAllModules queues every module twin.
func (a *AutoDeployer) enqueueAllModules() error {
	return a.r.rangeAll("modules/", func(rec store.Record) error {
		dev, mod, ok := strings.Cut(strings.TrimPrefix(rec.Key, "modules/"), "/")
		if ok && !isRuntimeModule(mod) {
			a.q.push(moduleItem(dev, mod))
		}
		return nil
	})
}

// moduleConfigs returns the module configurations read, sorted by id,
// and their digest (moduleBasis).
func (a *AutoDeployer) moduleConfigs() ([]*compiled, string) {
	a.mu.RLock()
	list, basis := a.moduleList, a.moduleBasis
	a.mu.RUnlock()
	if basis != "" {
		return list, basis
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.moduleBasis == "" {
		a.moduleList = nil
		for _, id := range slices.Sorted(maps.Keys(a.configs)) {
			if cc := a.configs[id]; cc.module {
				a.moduleList = append(a.moduleList, cc)
			}
		}
		a.moduleBasis = moduleBasis(a.moduleList)
	}
	return a.moduleList, a.moduleBasis
}

// hasModuleConfigs reports whether a module configuration is read.
func (a *AutoDeployer) hasModuleConfigs() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.modules > 0
}

// EvaluateModule decides which automatic module configuration a module
// twin gets and writes its content if that was not done yet.
func (a *AutoDeployer) EvaluateModule(deviceID, moduleID string) error {
	if isRuntimeModule(moduleID) {
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := a.evaluateModule(deviceID, moduleID)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue // the twin or its state changed meanwhile: again
		}
		return err
	}
}

func (a *AutoDeployer) evaluateModule(deviceID, moduleID string) error {
	configs, basis := a.moduleConfigs()
	cur, version, err := a.r.moduleState(deviceID, moduleID)
	if err != nil || len(configs) == 0 && version == 0 {
		return err // nothing targets module twins, nothing was decided before
	}
	rec, err := a.r.getShared(twinKey(deviceID, moduleID))
	var t *twin.Twin
	var tv int64
	switch {
	case errors.Is(err, store.ErrNotFound):
		// No twin record (none written yet), or the module is gone, and
		// its state with it.
		if _, err := a.r.GetModule(deviceID, moduleID); err != nil {
			return err
		}
		t = twin.New(deviceID, moduleID, a.r.now())
	case err != nil:
		return err
	default:
		// A twin record is deleted with its module, so the module is there.
		tv = rec.Version
	}
	if cur.onTwin(version, tv) {
		switch {
		case cur.Basis == basis:
			a.skipped.Add(1)
			return nil
		case a.aliased(cur.Basis, basis, version):
			a.passSeen(cur.Basis, basis)
			a.skipped.Add(1)
			return nil
		}
	}
	a.evaluated.Add(1)
	// The decision is CPU work: half the CPUs at most, so that the hub's
	// requests are served meanwhile (a start queues every module twin);
	// the writes that follow wait for the disk, as many at once as there
	// are workers.
	a.cpu <- struct{}{}
	next, ops, err := a.decideModule(deviceID, moduleID, configs, cur, t, rec, tv)
	<-a.cpu
	if err != nil {
		return err
	}
	key := moduleStateKey(deviceID, moduleID)
	if next.empty() {
		// Nothing to show: no state, rather than one for each module twin
		// that no configuration targets (those are evaluated at each start).
		if version == 0 {
			return nil
		}
		_, err = a.r.st.Txn(append(ops, store.DeleteOp(key, version))...)
		return err
	}
	// A state is written where the decision changed (or has no basis, from
	// an older hub). A twin decided the same way is left as it is: if the
	// configurations changed, the pass of every module twin says so once
	// complete (basisAlias); if the twin changed (say, a reported property),
	// the next start evaluates it again.
	if len(ops) == 0 && version != 0 && cur.Basis != "" && sameDecision(cur, next) {
		if cur.Basis != basis {
			a.passSeen(cur.Basis, basis)
		}
		return nil
	}
	next.Basis, next.Twin = basis, tv
	if len(ops) > 0 {
		next.Twin = sameTxn
	}
	nb, err := json.Marshal(next)
	if err != nil {
		return err
	}
	// Nothing is written for a module deleted meanwhile (its twin and state
	// go with it): a twin written expects the version read, one not written
	// is checked at it, and where there is no twin record the module is.
	switch {
	case tv == 0:
		check, err := a.r.IdentityCheck(deviceID, moduleID)
		if err != nil {
			return err
		}
		ops = append(ops, check)
	case len(ops) == 0:
		ops = append(ops, store.CheckOp(twinKey(deviceID, moduleID), tv))
	}
	_, err = a.r.st.Txn(append(ops, store.PutOp(key, nb, version))...)
	return err
}

// decideModule decides which of configs targets the module twin t (nil:
// decode it from rec) and which is applied (applyContent).
func (a *AutoDeployer) decideModule(deviceID, moduleID string, configs []*compiled, cur moduleState, t *twin.Twin, rec store.Record, tv int64) (moduleState, []store.Op, error) {
	if t == nil {
		var err error
		if t, err = a.r.decodeTwin(rec, false); err != nil {
			return moduleState{}, nil, err
		}
	}
	var targets []*compiled
	cd := conditionDoc{t: t}
	for _, cc := range configs {
		if cc.cond == nil {
			continue
		}
		doc, err := cd.need(cc.reads)
		if err != nil {
			return moduleState{}, nil, err
		}
		if cc.cond.Match(doc) {
			targets = append(targets, cc)
		}
	}
	return a.applyContent(deviceID, moduleID, targets, cur, t, tv)
}

// sameDecision reports whether two module states decide the same.
func sameDecision(x, y moduleState) bool {
	return x.Applied == y.Applied && x.Error == y.Error && maps.Equal(x.Configurations, y.Configurations)
}

// moduleConfigurationMetrics counts, for a module configuration, the module
// twins it targets and those it is applied to.
func (r *Registry) moduleConfigurationMetrics(id string, res map[string]int64) error {
	return r.rangeAll(moduleStatePrefix, func(rec store.Record) error {
		s, err := decodeRecord[moduleState](rec)
		if err != nil {
			return err
		}
		if st, ok := s.Configurations[id]; ok {
			res[hubapi.MetricTargeted]++
			if st.Status == hubapi.ConfigurationApplied {
				res[hubapi.MetricApplied]++
			}
		}
		return nil
	})
}

// moduleSystemQueries are the queries IoT Hub shows for a module
// configuration's system metrics.
func moduleSystemQueries(c *Configuration) map[string]string {
	target := " and false"
	if m := fromModules.FindStringSubmatch(strings.TrimSpace(c.TargetCondition)); m != nil {
		target = " and (" + m[1] + ")"
	}
	return map[string]string{
		hubapi.MetricTargeted: "select deviceId, moduleId from devices.modules where true" + target,
		hubapi.MetricApplied:  fmt.Sprintf("select deviceId, moduleId from devices.modules where configurations.[[%s]].status = 'Applied'", c.ID),
	}
}
