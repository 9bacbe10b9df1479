package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	goruntime "runtime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/version"
)

// maxDescription bounds a statusDescription (twin strings are at most 4 KiB).
const maxDescription = 1024

// reportLoop sends the agent's status to the $edgeAgent twin's reported
// properties whenever it changes: at once, then at most once per
// ReportInterval, each time only what changed (a merge patch).
func (a *Agent) reportLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.changed:
		}
		a.sendReport()
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.ReportInterval):
		}
	}
}

// flushReport sends what is left to report, once the modules are stopped.
func (a *Agent) flushReport(context.Context) { a.sendReport() }

// sendReport diffs the status against the $edgeAgent twin's reported
// properties as the device knows them (what the hub has, with the patches
// still queued on top) and sends the difference. Diffing against the twin,
// not against what was sent last, makes the hub's copy right again whenever
// it lost what it had: a device identity created anew, a hub restored.
func (a *Agent) sendReport() {
	a.reportMu.Lock()
	defer a.reportMu.Unlock()
	base := map[string]any{}
	if t, err := a.cfg.Syncer.Twin(AgentModule); err == nil {
		base = stripDollar(normalize(t.Reported()))
	}
	patch := mergeDiff(base, normalize(a.reportedDoc()))
	if len(patch) == 0 {
		return
	}
	b, err := json.Marshal(patch)
	if err != nil {
		a.log.Error("report status", "err", err)
		return
	}
	if _, err := a.cfg.Syncer.PatchReported(AgentModule, b); err != nil {
		a.log.Error("report status", "err", err)
		a.notify() // try again
	}
}

// ReportedSchemaVersion is the schemaVersion of the agent's reported
// status, as IoT Edge's agent writes it.
const ReportedSchemaVersion = "1.0"

// reportedDoc is the agent's full reported status, in the shape of IoT
// Edge's $edgeAgent reported properties.
func (a *Agent) reportedDoc() map[string]any {
	v := version.Get()
	doc := map[string]any{
		"schemaVersion": ReportedSchemaVersion,
		"version":       map[string]any{"version": v.Version, "build": v.Date, "commit": v.Commit},
		"runtime": map[string]any{
			"type":     a.cfg.Runtime.Name(),
			"platform": map[string]any{"os": goruntime.GOOS, "architecture": goruntime.GOARCH, "version": v.Version},
		},
	}
	a.mu.Lock()
	d, started := a.desired, a.started
	a.mu.Unlock()
	doc["systemModules"] = a.systemModules(started)
	if d.read {
		doc["lastDesiredVersion"] = d.version
		st := map[string]any{"code": d.code}
		if d.description != "" {
			st["description"] = truncate(d.description, maxDescription)
		}
		doc["lastDesiredStatus"] = st
	}
	mods := map[string]any{}
	for _, m := range a.Modules() {
		settings := map[string]any{"image": m.Image}
		if m.ImageDigest != "" {
			settings["imageHash"] = m.ImageDigest
		}
		r := map[string]any{
			"runtimeStatus": m.RuntimeStatus,
			"restartCount":  m.RestartCount,
			"status":        m.DesiredStatus,
			"restartPolicy": m.RestartPolicy,
			"type":          "docker",
			"settings":      settings,
		}
		if m.Version != "" {
			r["version"] = m.Version
		}
		if m.Description != "" {
			r["statusDescription"] = truncate(m.Description, maxDescription)
		}
		if m.ExitCode != nil {
			r["exitCode"] = *m.ExitCode
		}
		if m.ImageDigest != "" {
			r["imageDigest"] = m.ImageDigest
		}
		for k, t := range map[string]time.Time{
			"lastStartTimeUtc":   m.StartedAt,
			"lastExitTimeUtc":    m.ExitedAt,
			"lastRestartTimeUtc": m.LastRestartAt,
		} {
			if !t.IsZero() {
				r[k] = t.UTC().Format(time.RFC3339Nano)
			}
		}
		mods[m.Name] = r
	}
	doc["modules"] = mods
	return doc
}

// systemModules is the reported status of IoT Edge's system modules, which
// are the daemon: edgeAgent (this agent) runs since Run began, edgeHub (the
// module broker) as BrokerRunning says.
func (a *Agent) systemModules(started time.Time) map[string]any {
	settings := map[string]any{"image": deployment.SystemImage}
	sys := func(running bool) map[string]any {
		m := map[string]any{"type": "docker", "settings": settings, "runtimeStatus": "unknown", "restartCount": 0}
		if running {
			m["runtimeStatus"], m["statusDescription"], m["exitCode"] = "running", "running", 0
			if !started.IsZero() {
				m["lastStartTimeUtc"] = started.UTC().Format(time.RFC3339Nano)
			}
		}
		return m
	}
	hub := sys(a.cfg.BrokerRunning != nil && a.cfg.BrokerRunning())
	hub["status"], hub["restartPolicy"] = deployment.StatusRunning, deployment.RestartAlways
	return map[string]any{"edgeAgent": sys(true), "edgeHub": hub}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// normalize gives v the shape a twin gives it back: JSON numbers as
// json.Number, objects as map[string]any.
func normalize(v map[string]any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return map[string]any{}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil || out == nil {
		return map[string]any{}
	}
	return out
}

// stripDollar drops $metadata, $version and the like at every level.
func stripDollar(m map[string]any) map[string]any {
	for k, v := range m {
		if strings.HasPrefix(k, "$") {
			delete(m, k)
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			stripDollar(sub)
		}
	}
	return m
}

// mergeDiff returns the JSON merge patch (RFC 7386) that turns old into cur.
func mergeDiff(old, cur map[string]any) map[string]any {
	p := map[string]any{}
	for k := range old {
		if _, ok := cur[k]; !ok {
			p[k] = nil
		}
	}
	for k, nv := range cur {
		ov, ok := old[k]
		nm, nIsMap := nv.(map[string]any)
		om, oIsMap := ov.(map[string]any)
		switch {
		case ok && nIsMap && oIsMap:
			if d := mergeDiff(om, nm); len(d) > 0 {
				p[k] = d
			}
		case !ok || !reflect.DeepEqual(ov, nv):
			p[k] = nv
		}
	}
	return p
}
