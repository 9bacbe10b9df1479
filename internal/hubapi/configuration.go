package hubapi

import "encoding/json"

// Configuration is an IoT Hub configuration, in IoT Hub's JSON shape: an
// automatic deployment (content.modulesContent) or an automatic device
// configuration (content.deviceContent / moduleContent) with the devices it
// targets and the metrics it counts.
type Configuration struct {
	ID                 string                `json:"id"`
	SchemaVersion      string                `json:"schemaVersion"`
	Labels             map[string]string     `json:"labels,omitempty"`
	Content            ConfigurationContent  `json:"content"`
	TargetCondition    string                `json:"targetCondition"`
	CreatedTimeUtc     string                `json:"createdTimeUtc,omitempty"`
	LastUpdatedTimeUtc string                `json:"lastUpdatedTimeUtc,omitempty"`
	Priority           int64                 `json:"priority"`
	SystemMetrics      *ConfigurationMetrics `json:"systemMetrics,omitempty"`
	Metrics            *ConfigurationMetrics `json:"metrics,omitempty"`
	ETag               string                `json:"etag,omitempty"`
}

// ConfigurationContent is what a configuration applies. Each member is kept
// as the client wrote it, so that a client reads back the content it sent.
type ConfigurationContent struct {
	ModulesContent json.RawMessage `json:"modulesContent,omitempty"`
	ModuleContent  json.RawMessage `json:"moduleContent,omitempty"`
	DeviceContent  json.RawMessage `json:"deviceContent,omitempty"`
}

// ConfigurationMetrics are a configuration's metric queries and their last
// results (device counts), by metric name.
type ConfigurationMetrics struct {
	Results map[string]int64  `json:"results"`
	Queries map[string]string `json:"queries"`
}

// System metric names, as IoT Hub reports them for an edge deployment.
const (
	MetricTargeted          = "targetedCount"
	MetricApplied           = "appliedCount"
	MetricReportedSucceeded = "reportedSuccessfulCount"
	MetricReportedFailed    = "reportedFailedCount"
)

// Configuration statuses on a device, in its $edgeAgent twin's
// "configurations": applied to the device, or targeting it but not applied
// (a higher priority deployment won).
const (
	ConfigurationApplied  = "Applied"
	ConfigurationTargeted = "Targeted"
)

// ConfigurationStatus is one member of a twin's "configurations".
type ConfigurationStatus struct {
	Status string `json:"status"`
}
