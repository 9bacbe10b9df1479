package registry

import "github.com/outpost-edge/outpost/internal/query"

// condition is a parsed target condition: it tells whether a device twin,
// as IoT Hub's JSON, is targeted.
type condition interface {
	Match(doc map[string]any) bool
	// Paths are the property paths it reads, each as its names.
	Paths() [][]string
}

// parseCondition parses a configuration's targetCondition in IoT Hub's
// query language; its error names the position.
func parseCondition(s string) (condition, error) {
	c, err := query.ParseCondition(s)
	if err != nil {
		return nil, err
	}
	return c, nil
}
