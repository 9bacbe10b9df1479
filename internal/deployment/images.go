package deployment

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// SetImages returns the JSON manifest doc with the image of each module
// named in images replaced: modules.NAME.image in a native manifest,
// $edgeAgent's properties.desired.modules.NAME.settings.image in an IoT
// Edge one (under modulesContent, content.modulesContent or at the top).
// Everything else is kept; members may change order. doc must be a
// manifest Parse accepted; a module it does not have is an error.
func SetImages(doc []byte, images map[string]string) ([]byte, error) {
	if len(images) == 0 {
		return doc, nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("set images: %w", err)
	}
	var modules map[string]any
	iotedge := false
	if agent := edgeAgent(root); agent != nil {
		iotedge = true
		desired, _ := agent["properties.desired"].(map[string]any)
		modules, _ = desired["modules"].(map[string]any)
	} else {
		modules, _ = root["modules"].(map[string]any)
	}
	for id, ref := range images {
		mod, _ := modules[id].(map[string]any)
		if mod == nil {
			return nil, fmt.Errorf("set images: the manifest has no module %s", id)
		}
		if iotedge {
			settings, _ := mod["settings"].(map[string]any)
			if settings == nil {
				return nil, fmt.Errorf("set images: module %s has no settings", id)
			}
			mod = settings
		}
		mod["image"] = ref
	}
	return json.Marshal(root)
}

// ToJSON returns a YAML or JSON manifest as JSON (the hub takes JSON).
func ToJSON(data []byte) ([]byte, error) {
	if json.Valid(data) {
		return data, nil
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// edgeAgent returns the $edgeAgent twin of an IoT Edge manifest in any of
// the forms Parse accepts, or nil for a native one.
func edgeAgent(root map[string]any) map[string]any {
	mc := root
	if v, ok := root["modulesContent"].(map[string]any); ok {
		mc = v
	} else if content, ok := root["content"].(map[string]any); ok && root["$edgeAgent"] == nil {
		if v, ok := content["modulesContent"].(map[string]any); ok {
			mc = v
		}
	}
	agent, _ := mc["$edgeAgent"].(map[string]any)
	return agent
}
