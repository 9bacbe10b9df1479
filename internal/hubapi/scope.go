package hubapi

import "strings"

// scopePrefix starts every edge device's scope, as IoT Hub writes it.
const scopePrefix = "ms-azure-iot-edge://"

// EdgeScope is the scope IoT Hub gives an edge device: its id and generation
// id. A leaf device whose deviceScope is an edge device's scope is that edge
// device's child.
func EdgeScope(deviceID, generationID string) string {
	return scopePrefix + deviceID + "-" + generationID
}

// ScopeDeviceID returns the id of the edge device a scope names, and false
// when scope is not an edge device's scope.
func ScopeDeviceID(scope string) (string, bool) {
	rest, ok := strings.CutPrefix(scope, scopePrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 || i == len(rest)-1 {
		return "", false
	}
	return rest[:i], true
}

// ParentID returns the id of d's parent, or "" when it has none.
func (d Device) ParentID() string {
	scope := ""
	if len(d.ParentScopes) > 0 {
		scope = d.ParentScopes[0]
	} else if d.Capabilities != nil && !d.Capabilities.IoTEdge {
		scope = d.DeviceScope
	}
	id, _ := ScopeDeviceID(scope)
	return id
}
