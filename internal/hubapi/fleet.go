package hubapi

// FleetPath lists devices for an operator's fleet view (a policy with
// registryRead): GET FleetPath?top=N, paged with x-ms-continuation as
// GET /devices is, or GET FleetPath?id=A&id=B for those devices only (the
// ones that exist). Each device comes with what a fleet view shows beside
// the identity, read in the same request: no request per device.
const FleetPath = Prefix + "/fleet"

// ChangesCursorHeader is on the answers of GET /devices and FleetPath: the
// cursor of ChangesPath taken before the devices were read. Following
// ChangesPath from it reports every change the answer may have missed, so
// a view reads its first page and starts following without a Reset.
const ChangesCursorHeader = "x-outpost-changes-cursor"

// FleetDevice is a device of FleetPath: the identity (with the hub's
// connection state) and a summary of its modules and deployment.
type FleetDevice struct {
	Device
	// ModuleCount is the number of the device's module identities
	// ($edgeAgent and $edgeHub included).
	ModuleCount int `json:"moduleCount"`
	// Deployment is what the device's agent last reported of its
	// deployment ($edgeAgent's reported properties); nil before it
	// reported one (and for devices that are not IoT Edge devices).
	Deployment *DeploymentReport `json:"deployment,omitempty"`
}

// DeploymentReport is an agent's report of its deployment: the desired
// $version of $edgeAgent's twin, the version the agent last acted on
// (lastDesiredVersion) and how that went (lastDesiredStatus).
type DeploymentReport struct {
	DesiredVersion     int64  `json:"desiredVersion"`
	LastDesiredVersion int64  `json:"lastDesiredVersion"`
	Code               int    `json:"code"`
	Description        string `json:"description,omitempty"`
}

// Status sums a report up in a word: "ok" (the agent applied the current
// deployment), "failed" (it could not: Code is not 200) or "pending" (it
// has not acted on the current deployment yet).
func (d *DeploymentReport) Status() string {
	switch {
	case d.LastDesiredVersion != d.DesiredVersion:
		return "pending"
	case d.Code == 200:
		return "ok"
	default:
		return "failed"
	}
}
