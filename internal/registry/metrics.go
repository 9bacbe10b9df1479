package registry

import (
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// QueryCounter counts the results of a query in IoT Hub's query language,
// for custom metrics.
type QueryCounter func(query string) (int64, error)

// ConfigurationMetrics fills in c's system metrics as IoT Hub reports them
// for an edge deployment, from each device's deploy state and $edgeAgent
// twin:
//
//   - targetedCount: devices the configuration targets;
//   - appliedCount: devices it is applied to;
//   - reportedSuccessfulCount: of those, devices whose agent reports the
//     current deployment ($edgeAgent lastDesiredVersion = desired $version)
//     with lastDesiredStatus.code 200;
//   - reportedFailedCount: the same with any other code.
//
// For an automatic module configuration (moduleContent) they count module
// twins: targetedCount and appliedCount, as IoT Hub reports them.
//
// and its custom metrics with count (a nil count leaves them without
// results). A custom query that fails counts -1 and is logged by the caller
// through the returned error.
func (r *Registry) ConfigurationMetrics(c *Configuration, count QueryCounter) error {
	res := map[string]int64{hubapi.MetricTargeted: 0, hubapi.MetricApplied: 0}
	if given(c.Content.ModuleContent) {
		if err := r.moduleConfigurationMetrics(c.ID, res); err != nil {
			return err
		}
		c.SystemMetrics = &hubapi.ConfigurationMetrics{Results: res, Queries: moduleSystemQueries(c)}
		return customMetrics(c, count)
	}
	edge := len(c.Content.ModulesContent) > 0
	if edge {
		res[hubapi.MetricReportedSucceeded] = 0
		res[hubapi.MetricReportedFailed] = 0
	}
	recs, err := r.st.List(deployStatePrefix)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		s, err := decodeRecord[deployState](rec)
		if err != nil {
			return err
		}
		st, ok := s.Configurations[c.ID]
		if !ok {
			st, ok = s.DeviceConfigurations[c.ID]
		}
		if !ok {
			continue
		}
		res[hubapi.MetricTargeted]++
		if st.Status != hubapi.ConfigurationApplied {
			continue
		}
		res[hubapi.MetricApplied]++
		if !edge {
			continue
		}
		deviceID := strings.TrimPrefix(rec.Key, deployStatePrefix)
		switch r.agentReport(deviceID) {
		case reportSucceeded:
			res[hubapi.MetricReportedSucceeded]++
		case reportFailed:
			res[hubapi.MetricReportedFailed]++
		}
	}
	c.SystemMetrics = &hubapi.ConfigurationMetrics{Results: res, Queries: systemQueries(c)}
	return customMetrics(c, count)
}

// customMetrics fills in c's custom metrics with count (a nil count leaves
// them without results).
func customMetrics(c *Configuration, count QueryCounter) error {
	if c.Metrics == nil {
		c.Metrics = &hubapi.ConfigurationMetrics{}
	}
	if c.Metrics.Queries == nil {
		c.Metrics.Queries = map[string]string{}
	}
	c.Metrics.Results = map[string]int64{}
	var errs []string
	if count == nil {
		return nil
	}
	for name, q := range c.Metrics.Queries {
		n, err := count(q)
		if err != nil {
			n = -1
			errs = append(errs, fmt.Sprintf("metrics.queries.%s: %v", name, err))
		}
		c.Metrics.Results[name] = n
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: configuration %q: %s", ErrInvalid, c.ID, strings.Join(errs, "; "))
	}
	return nil
}

type agentReport int

const (
	reportNone agentReport = iota
	reportSucceeded
	reportFailed
)

// agentReport reads whether a device's agent reported its current
// deployment, and how it went.
func (r *Registry) agentReport(deviceID string) agentReport {
	d, err := r.agentDeployment(deviceID)
	switch {
	case err != nil || d == nil || d.Status() == "pending":
		return reportNone
	case d.Code == 200:
		return reportSucceeded
	default:
		return reportFailed
	}
}

// systemQueries are the queries IoT Hub shows for an edge deployment's
// system metrics (outpost counts them from its own state, with the same
// meaning).
func systemQueries(c *Configuration) map[string]string {
	target := " and " + c.TargetCondition
	switch strings.TrimSpace(c.TargetCondition) {
	case "*":
		target = ""
	case "":
		target = " and false"
	}
	applied := fmt.Sprintf("select deviceId from devices.modules where moduleId = '%s' and configurations.[[%s]].status = 'Applied'", AgentModule, c.ID)
	if len(c.Content.ModulesContent) == 0 {
		return map[string]string{
			hubapi.MetricTargeted: "select deviceId from devices where true" + target,
			hubapi.MetricApplied:  fmt.Sprintf("select deviceId from devices where configurations.[[%s]].status = 'Applied'", c.ID),
		}
	}
	return map[string]string{
		hubapi.MetricTargeted:          "select deviceId from devices where capabilities.iotEdge = true" + target,
		hubapi.MetricApplied:           applied,
		hubapi.MetricReportedSucceeded: applied + " and properties.desired.$version = properties.reported.lastDesiredVersion and properties.reported.lastDesiredStatus.code = 200",
		hubapi.MetricReportedFailed:    applied + " and properties.desired.$version = properties.reported.lastDesiredVersion and properties.reported.lastDesiredStatus.code != 200",
	}
}
