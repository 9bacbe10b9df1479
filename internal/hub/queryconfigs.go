package hub

import (
	"encoding/json"
	"strings"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/registry"
)

// The $edgeAgent module twin shows the automatic deployments that target
// its device as IoT Hub does, "configurations": {"id": {"status":
// "Applied" | "Targeted"}}, and queries see them there:
//
//	SELECT deviceId FROM devices.modules
//	  WHERE moduleId = '$edgeAgent' AND configurations.[[prod]].status = 'Applied'
//
// (the custom metric queries of deployments). The registry keeps that state
// in deploystate/{deviceId} records, not in the twin, so the index follows
// those records too and holds each device's configurations on the entry of
// its $edgeAgent twin. The same record holds the automatic device
// configurations (deviceContent) that target the device, which its device
// twin shows and queries see as IoT Hub's do:
//
//	SELECT deviceId FROM devices WHERE configurations.[[thermostats]].status = 'Applied'
//
// (the appliedCount system metric of a device configuration).

// deployStateKind is the first element of the registry's deploy state keys.
const deployStateKind = "deploystate"

// Other module twins show the automatic module configurations that target
// them the same way, from the registry's modulestate/{deviceId}/{moduleId}
// records, so that IoT Hub's appliedCount query for a module configuration
// runs too:
//
//	SELECT deviceId, moduleId FROM devices.modules
//	  WHERE configurations.[[chiller-module-settings]].status = 'Applied'
const moduleStateKind = "modulestate"

// applyModuleState records a put (or with del, a deletion) of a module
// twin's module state record (rest: "deviceId/moduleId") at version.
func (x *twinIndex) applyModuleState(del bool, rest string, version int64, value []byte) {
	deviceID, moduleID, ok := strings.Cut(rest, "/")
	if !ok {
		return
	}
	x.applyConfigs(del, deviceID, moduleID, version, value)
}

// applyDeployState records a put (or with del, a deletion) of a device's
// deploy state record at version: the device's $edgeAgent twin and its
// device twin.
func (x *twinIndex) applyDeployState(del bool, deviceID string, version int64, value []byte) {
	x.applyConfigs(del, deviceID, registry.AgentModule, version, value)
	x.applyConfigs(del, deviceID, "", version, value)
}

// applyConfigs records the configurations of a twin's state record.
func (x *twinIndex) applyConfigs(del bool, deviceID, moduleID string, version int64, value []byte) {
	var cfgs map[string]hubapi.ConfigurationStatus
	if !del { // decoded outside the lock
		cfgs = decodeConfigs(moduleID, value)
	}
	key := deviceID
	if moduleID != "" {
		key += "/" + moduleID
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.maxSeen = max(x.maxSeen, version)
	e := x.entityLocked(key, deviceID, moduleID)
	if version <= e.configsVer {
		return
	}
	// Replaced, never changed in place: fullDoc reads it after unlocking.
	e.configsVer, e.configs = version, cfgs
}

// decodeConfigs returns the configurations that the state record of a
// twin (configsKey) holds for it, nil for none: a deploy state's
// "configurations" for the $edgeAgent twin and its "deviceConfigurations"
// for the device twin (moduleID ""), a module state's "configurations".
func decodeConfigs(moduleID string, value []byte) map[string]hubapi.ConfigurationStatus {
	var s struct {
		Configurations       map[string]hubapi.ConfigurationStatus `json:"configurations"`
		DeviceConfigurations map[string]hubapi.ConfigurationStatus `json:"deviceConfigurations"`
	}
	if json.Unmarshal(value, &s) != nil {
		return nil
	}
	cfgs := s.Configurations
	if moduleID == "" {
		cfgs = s.DeviceConfigurations
	}
	if len(cfgs) == 0 {
		return nil
	}
	return cfgs
}

// isConfigurationsPath reports whether a query path of a twin reads its
// configurations.
func isConfigurationsPath(key string) bool {
	return key == "configurations" || strings.HasPrefix(key, "configurations.")
}

// configsKey is the store key of the record that holds a twin's
// configurations.
func configsKey(deviceID, moduleID string) string {
	if moduleID == registry.AgentModule || moduleID == "" {
		return deployStateKind + "/" + deviceID
	}
	return moduleStateKind + "/" + deviceID + "/" + moduleID
}

// configurationsValue is the value at path key (configurations,
// configurations.ID or configurations.ID.status) of cfgs as the twin shows
// them.
func configurationsValue(cfgs map[string]hubapi.ConfigurationStatus, key string) (any, bool) {
	if len(cfgs) == 0 {
		return nil, false
	}
	rest, ok := strings.CutPrefix(key, "configurations.")
	if !ok {
		return configurationsDoc(cfgs), true
	}
	if st, ok := cfgs[rest]; ok {
		return map[string]any{"status": st.Status}, true
	}
	// Configuration ids have no "." in IoT Hub, but a lookup by the whole
	// id first keeps one that has it readable.
	if id, ok := strings.CutSuffix(rest, ".status"); ok {
		if st, ok := cfgs[id]; ok {
			return st.Status, true
		}
	}
	return nil, false
}

// configurationsDoc is cfgs as a decoded twin holds them.
func configurationsDoc(cfgs map[string]hubapi.ConfigurationStatus) map[string]any {
	doc := make(map[string]any, len(cfgs))
	for id, st := range cfgs {
		doc[id] = map[string]any{"status": st.Status}
	}
	return doc
}
