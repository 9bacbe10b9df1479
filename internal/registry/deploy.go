package registry

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/twin"
)

// ApplyDeployment applies a validated manifest to a device:
//
//  1. each module of the manifest gets an identity (managedBy outpost) if it
//     has none;
//  2. each module with desired properties in the manifest gets them as its
//     twin's desired properties (replaced whole, as IoT Edge does);
//  3. the $agent twin's desired properties become the deployment;
//  4. module identities outpost created that the manifest no longer names
//     are removed.
//
// The deployment goes into $agent after the modules' identities and twins
// are ready, so an agent that acts on it finds them; an interrupted apply
// can be run again.
func (r *Registry) ApplyDeployment(deviceID string, m *deployment.Manifest) error {
	if _, err := r.GetDevice(deviceID); err != nil {
		return err
	}
	agentDesired, err := m.AgentDesired()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := r.CreateModule(Module{DeviceID: deviceID, ModuleID: AgentModule, ManagedBy: ManagedBy}); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(m.Modules)) {
		mod := m.Modules[id]
		if _, err := r.CreateModule(Module{DeviceID: deviceID, ModuleID: id, ManagedBy: ManagedBy}); err != nil && !errors.Is(err, ErrExists) {
			return fmt.Errorf("module %s: %w", id, err)
		}
		if mod.Desired == nil {
			continue
		}
		if _, err := r.UpdateTwin(deviceID, id, "", func(t *twin.Twin) (bool, error) {
			return t.ReplaceDesired(mod.Desired, r.now())
		}); err != nil {
			return fmt.Errorf("module %s: desired properties: %w", id, err)
		}
	}
	if _, err := r.UpdateTwin(deviceID, AgentModule, "", func(t *twin.Twin) (bool, error) {
		return t.ReplaceDesired(agentDesired, r.now())
	}); err != nil {
		return fmt.Errorf("%s desired properties: %w", AgentModule, err)
	}
	existing, err := r.ListModules(deviceID)
	if err != nil {
		return err
	}
	for _, mod := range existing {
		if _, keep := m.Modules[mod.ModuleID]; keep || mod.ModuleID == AgentModule || mod.ManagedBy != ManagedBy {
			continue
		}
		if err := r.DeleteModule(deviceID, mod.ModuleID, ""); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("remove module %s: %w", mod.ModuleID, err)
		}
	}
	return nil
}
