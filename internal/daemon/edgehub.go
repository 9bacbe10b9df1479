package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/syncer"
	"github.com/outpost-edge/outpost/internal/twin"
	"github.com/outpost-edge/outpost/internal/version"
)

// hubStatusInterval is how often the broker's clients are looked at for the
// $edgeHub reported properties (a look is a few map reads; a patch is sent
// only when something changed).
const hubStatusInterval = time.Second

// HubReportedSchemaVersion is the schemaVersion of the $edgeHub reported
// properties, as IoT Edge's hub writes it.
const HubReportedSchemaVersion = "1.0"

// hubReporter writes the $edgeHub twin's reported properties as IoT Edge's
// hub does: schemaVersion, version, lastDesiredVersion and lastDesiredStatus
// of the $edgeHub desired properties, and clients {"{device}/{module}":
// {status: Connected|Disconnected, lastConnectedTimeUtc,
// lastDisconnectedTimeUtc}} from the module broker. Its patches go through
// the syncer's outbox like the agent's, so they wait for the hub offline.
type hubReporter struct {
	deviceID string
	sy       *syncer.Syncer
	clients  func() []broker.ModuleStatus
	log      *slog.Logger
}

// Run reports at once, then whenever the broker's clients or the $edgeHub
// desired properties change, and once more when ctx is done (after the
// agent has stopped the modules: their disconnections are the last news).
func (r *hubReporter) Run(ctx context.Context) error {
	changes := r.sy.Watch(ctx)
	t := time.NewTicker(hubStatusInterval)
	defer t.Stop()
	quiet := false // the last change was news of the child devices: nothing of $edgeHub's
	for {
		if !quiet {
			r.report()
		}
		select {
		case <-ctx.Done():
			r.report()
			return nil
		case <-t.C:
			quiet = false
		case c, ok := <-changes:
			if !ok {
				changes = nil
			}
			quiet = ok && (c.DeviceID != "" || c.Children)
		}
	}
}

// report sends what the $edgeHub reported properties lack of the status.
func (r *hubReporter) report() {
	tw, err := r.sy.Twin(agent.HubModule)
	if err != nil {
		return // not synced yet, or a hub without $edgeHub
	}
	var base map[string]any
	_ = json.Unmarshal(tw.ReportedJSON(), &base)
	doc := hubReported(r.deviceID, tw, r.clients())
	if st, ok := doc["lastDesiredStatus"].(map[string]any); ok {
		if code, desc := routesStatus(tw.DesiredJSON(), r.deployedModules()); code != 200 {
			st["code"], st["description"] = code, desc
		}
	}
	patch := overlay(base, doc)
	if len(patch) == 0 {
		return
	}
	b, err := json.Marshal(patch)
	if err == nil {
		_, err = r.sy.PatchReported(agent.HubModule, b)
	}
	if err != nil {
		r.log.Warn("report the broker's status in $edgeHub", "err", err)
	}
}

// hubReported is the $edgeHub reported status. A client is only ever added
// or updated (IoT Edge keeps the clients that left, with their times): a
// disconnected one keeps the lastConnectedTimeUtc reported before.
func hubReported(deviceID string, tw *twin.Twin, mods []broker.ModuleStatus) map[string]any {
	v := version.Get()
	doc := map[string]any{
		"schemaVersion": HubReportedSchemaVersion,
		"version":       map[string]any{"version": v.Version, "build": v.Date, "commit": v.Commit},
	}
	if desired := tw.Desired(); len(desired) > 0 {
		doc["lastDesiredVersion"] = tw.DesiredVersion()
		doc["lastDesiredStatus"] = map[string]any{"code": 200, "description": ""}
	}
	clients := map[string]any{}
	for _, m := range mods {
		key := deviceID + "/" + m.ModuleID
		if m.Since.IsZero() || !twinKey(key) {
			continue
		}
		at := m.Since.UTC().Format(time.RFC3339Nano)
		if m.Connected {
			clients[key] = map[string]any{"status": "Connected", "lastConnectedTimeUtc": at}
		} else {
			clients[key] = map[string]any{"status": "Disconnected", "lastDisconnectedTimeUtc": at}
		}
	}
	doc["clients"] = clients
	return doc
}

// twinKey reports whether s can be a key of a twin (internal/twin's rule).
func twinKey(s string) bool {
	return s != "" && len(s) <= 1024 && !strings.ContainsFunc(s, func(r rune) bool {
		return r == '.' || r == '$' || r == ' ' || r < 0x20 || r == 0x7f
	})
}

// overlay returns the merge patch that sets in base what cur has and base
// lacks or holds otherwise; it removes nothing. Values compare as JSON.
func overlay(base, cur map[string]any) map[string]any {
	patch := map[string]any{}
	for k, nv := range cur {
		if nm, ok := nv.(map[string]any); ok {
			om, _ := base[k].(map[string]any)
			if p := overlay(om, nm); len(p) > 0 {
				patch[k] = p
			}
			continue
		}
		a, _ := json.Marshal(nv)
		b, _ := json.Marshal(base[k])
		if _, had := base[k]; !had || string(a) != string(b) {
			patch[k] = nv
		}
	}
	return patch
}
