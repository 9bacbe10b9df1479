package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/store"
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
}

func (s moduleState) empty() bool {
	return len(s.Configurations) == 0 && s.Applied == "" && s.Error == ""
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

// isRuntimeModule reports whether a module twin is a system module's (the
// IoT Edge runtime's $edgeAgent and $edgeHub), which module configurations
// leave to IoT Edge deployments.
func isRuntimeModule(moduleID string) bool { return identity.IsSystemModule(moduleID) }

// moduleItem is a module twin's item in the work queue ("deviceId/moduleId";
// a device id has no '/').
func moduleItem(deviceID, moduleID string) string { return deviceID + "/" + moduleID }

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

// moduleConfigs returns the module configurations read.
func (a *AutoDeployer) moduleConfigs() []*compiled {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []*compiled
	for _, cc := range a.configs {
		if cc.module {
			out = append(out, cc)
		}
	}
	return out
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
	configs := a.moduleConfigs()
	cur, version, err := a.r.moduleState(deviceID, moduleID)
	if err != nil || len(configs) == 0 && version == 0 {
		return err // nothing targets module twins, nothing was decided before
	}
	if _, err := a.r.GetModule(deviceID, moduleID); err != nil {
		return err // gone: its state went with it
	}
	t, tv, err := a.r.twinRecord(deviceID, moduleID)
	if err != nil {
		return err
	}
	b, err := t.MarshalJSON()
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	var targets []*compiled
	for _, cc := range configs {
		if cc.cond != nil && cc.cond.Match(doc) {
			targets = append(targets, cc)
		}
	}
	next, ops, err := a.applyContent(deviceID, moduleID, targets, cur, t, tv)
	if err != nil {
		return err
	}
	old, _ := json.Marshal(cur)
	nb, err := json.Marshal(next)
	if err != nil {
		return err
	}
	key := moduleStateKey(deviceID, moduleID)
	switch {
	case len(ops) == 0 && string(old) == string(nb) && (version != 0 || next.empty()):
		return nil
	case next.empty():
		if version == 0 {
			return nil
		}
		ops = append(ops, store.DeleteOp(key, version))
	default:
		ops = append(ops, store.PutOp(key, nb, version))
	}
	_, err = a.r.st.Txn(ops...)
	return err
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
