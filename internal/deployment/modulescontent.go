package deployment

import "encoding/json"

// ModulesContent renders m as an IoT Edge deployment's modulesContent:
// $edgeAgent's desired properties (AgentDesired), $edgeHub's (HubDesired)
// and each module's initial desired properties, as IoT Hub configurations
// carry them.
func (m *Manifest) ModulesContent() ([]byte, error) {
	agent, err := m.AgentDesired()
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]json.RawMessage{"$edgeAgent": {"properties.desired": agent}, "$edgeHub": {"properties.desired": m.HubDesired()}}
	for id, mod := range m.Modules {
		if mod.Desired != nil {
			out[id] = map[string]json.RawMessage{"properties.desired": mod.Desired}
		}
	}
	return json.Marshal(out)
}
