package registry

import (
	"encoding/json"
	"errors"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// FleetDevice returns device d with its fleet summary: how many module
// identities it has and what its agent last reported of its deployment.
// It reads the device's module keys and its agent's twin, so a page of
// devices costs what its devices cost, whatever the size of the fleet.
func (r *Registry) FleetDevice(d Device) (hubapi.FleetDevice, error) {
	out := hubapi.FleetDevice{Device: d}
	mods, err := r.st.List("modules/" + d.DeviceID + "/")
	if err != nil {
		return out, err
	}
	out.ModuleCount = len(mods)
	out.Deployment, err = r.agentDeployment(d.DeviceID)
	return out, err
}

// agentDeployment reads what a device's agent last reported of its
// deployment: nil before it reported one (or when its reported properties
// are not in the agent's shape). It decodes only those members of the
// stored twin (the desired deployment can be large), not the whole twin.
func (r *Registry) agentDeployment(deviceID string) (*hubapi.DeploymentReport, error) {
	rec, err := r.st.Get(twinKey(deviceID, AgentModule))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var tw struct {
		Properties struct {
			Desired struct {
				Version int64 `json:"$version"`
			} `json:"desired"`
			Reported struct {
				LastDesiredVersion *int64 `json:"lastDesiredVersion"`
				LastDesiredStatus  *struct {
					Code        int    `json:"code"`
					Description string `json:"description"`
				} `json:"lastDesiredStatus"`
			} `json:"reported"`
		} `json:"properties"`
	}
	if json.Unmarshal(rec.Value, &tw) != nil {
		return nil, nil // not in the agent's shape (a string where a number goes)
	}
	rep := tw.Properties.Reported
	if rep.LastDesiredVersion == nil || rep.LastDesiredStatus == nil {
		return nil, nil
	}
	return &hubapi.DeploymentReport{DesiredVersion: max(tw.Properties.Desired.Version, 1), LastDesiredVersion: *rep.LastDesiredVersion,
		Code: rep.LastDesiredStatus.Code, Description: rep.LastDesiredStatus.Description}, nil
}
