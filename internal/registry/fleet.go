package registry

import (
	"encoding/json"

	"github.com/outpost-edge/outpost/internal/hubapi"
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
// are not in the agent's shape).
func (r *Registry) agentDeployment(deviceID string) (*hubapi.DeploymentReport, error) {
	t, version, err := r.twinRecord(deviceID, AgentModule)
	if err != nil || version == 0 {
		return nil, err
	}
	var rep struct {
		LastDesiredVersion *int64 `json:"lastDesiredVersion"`
		LastDesiredStatus  *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"lastDesiredStatus"`
	}
	if json.Unmarshal(t.ReportedJSON(), &rep) != nil || rep.LastDesiredVersion == nil || rep.LastDesiredStatus == nil {
		return nil, nil
	}
	return &hubapi.DeploymentReport{DesiredVersion: t.DesiredVersion(), LastDesiredVersion: *rep.LastDesiredVersion,
		Code: rep.LastDesiredStatus.Code, Description: rep.LastDesiredStatus.Description}, nil
}
