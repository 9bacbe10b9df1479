package registry

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// ApplyDeployment applies a validated manifest to a device, all or nothing:
//
//  1. each module of the manifest gets an identity (managedBy outpost) if it
//     has none;
//  2. each module with desired properties in the manifest gets them as its
//     twin's desired properties (replaced whole, as IoT Edge does);
//  3. the $edgeAgent twin's desired properties become the deployment, and
//     the $edgeHub twin's its $edgeHub part (Manifest.HubDesired);
//
// The device must be an IoT Edge device (see IsEdge).
//  4. module identities outpost created that the manifest no longer names
//     are removed, with their twins.
//
// It is one store transaction, so an agent that sees the deployment finds
// the modules' identities and twins ready, and a failed apply changed
// nothing.
//
// A device an automatic deployment is applied to refuses it (see
// automatic.go).
func (r *Registry) ApplyDeployment(deviceID string, m *deployment.Manifest) error {
	return r.applyDeployment(deviceID, m, r.manualGuard)
}

// applyDeployment is ApplyDeployment with more writes in its transaction:
// extra returns them, read afresh on each attempt.
func (r *Registry) applyDeployment(deviceID string, m *deployment.Manifest, extra func(deviceID string) ([]store.Op, error)) error {
	agentDesired, err := m.AgentDesired()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for attempt := 1; ; attempt++ {
		ops, err := r.deploymentOps(deviceID, m, agentDesired)
		if err != nil {
			return err
		}
		more, err := extra(deviceID)
		if err != nil {
			return err
		}
		_, err = r.st.Txn(append(ops, more...)...)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue // a twin or module changed since we read it: read again
		}
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("apply the deployment to device %q: its modules and twins kept changing: %w", deviceID, err)
		}
		return err
	}
}

// maxAttempts bounds the retries of a transaction that lost a race.
const maxAttempts = 20

// deploymentOps reads what ApplyDeployment changes and returns its writes, each
// conditional on the version read.
func (r *Registry) deploymentOps(deviceID string, m *deployment.Manifest, agentDesired []byte) ([]store.Op, error) {
	dev, err := r.GetDevice(deviceID)
	if err != nil {
		return nil, err
	}
	if !IsEdge(dev) {
		return nil, fmt.Errorf("%w: device %q is not an IoT Edge device (capabilities.iotEdge is false), so it runs no modules and takes no deployment: create it with capabilities.iotEdge true (`outpost device create` does by default)", ErrInvalid, deviceID)
	}
	existing, err := r.ListModules(deviceID) // fails if the device does not exist
	if err != nil {
		return nil, err
	}
	have := map[string]Module{}
	for _, mod := range existing {
		have[mod.ModuleID] = mod
	}
	desired := map[string][]byte{AgentModule: agentDesired, HubModule: m.HubDesired()}
	for id, mod := range m.Modules {
		if mod.Desired != nil {
			desired[id] = mod.Desired
		}
	}
	// Nothing is written for a device deleted meanwhile (modules, twins).
	dv, _ := versionOf(dev.ETag)
	ops := []store.Op{store.CheckOp(deviceKey(deviceID), dv)}
	for _, id := range append(slices.Clone(SystemModules), slices.Sorted(maps.Keys(m.Modules))...) {
		_, exists := have[id]
		if !exists {
			mod, b, err := r.newModule(Module{DeviceID: deviceID, ModuleID: id, ManagedBy: ManagedBy})
			if err != nil {
				return nil, fmt.Errorf("module %s: %w", id, err)
			}
			ops = append(ops, store.PutOp(moduleKey(deviceID, id), b, 0), store.DeleteOp(moduleStateKey(deviceID, id), store.Any))
			have[id] = mod
		}
		// A new module starts from a fresh twin, whatever an earlier one left.
		t, version, err := r.twinRecord(deviceID, id)
		if err != nil {
			return nil, err
		}
		if !exists {
			t = twin.New(deviceID, id, r.now())
		}
		d, ok := desired[id]
		if !ok {
			if !exists && version != 0 {
				ops = append(ops, store.DeleteOp(twinKey(deviceID, id), version))
			}
			continue
		}
		changed, err := t.ReplaceDesired(d, r.now())
		if err != nil {
			return nil, fmt.Errorf("%w: module %s: desired properties: %v", ErrInvalid, id, err)
		}
		if !changed && exists {
			continue
		}
		b, err := t.MarshalJSON()
		if err != nil {
			return nil, err
		}
		if exists && version == 0 {
			// The module's first twin: nothing is written for a module
			// deleted meanwhile (a twin there is deleted with it).
			mv, _ := versionOf(have[id].ETag)
			ops = append(ops, store.CheckOp(moduleKey(deviceID, id), mv))
		}
		ops = append(ops, store.PutOp(twinKey(deviceID, id), b, version))
	}
	for _, mod := range existing {
		if _, keep := m.Modules[mod.ModuleID]; keep || slices.Contains(SystemModules, mod.ModuleID) || mod.ManagedBy != ManagedBy {
			continue
		}
		v, _ := versionOf(mod.ETag)
		ops = append(ops, store.DeleteOp(moduleKey(deviceID, mod.ModuleID), v),
			store.DeleteOp(twinKey(deviceID, mod.ModuleID), store.Any),
			store.DeleteOp(moduleStateKey(deviceID, mod.ModuleID), store.Any))
	}
	return ops, nil
}
