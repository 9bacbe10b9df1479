package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

func newDeploymentCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deployment",
		Short: "Automatic deployments: a manifest the hub applies to every device a target condition matches",
		Long: `Manage automatic deployments (IoT Hub configurations). The hub applies each one
to every edge device whose twin its target condition matches, and keeps doing
so as tags and reported properties change: of the deployments that target a
device the highest priority wins (equal priorities: the most recently created),
and layered deployments of a higher priority are merged on top of it.

A device no longer targeted keeps what it runs. While an automatic deployment
is applied to a device, 'outpost deploy' to it is refused.`,
	}
	cmd.AddCommand(
		newDeploymentCreateCmd(f, nil),
		newDeploymentListCmd(f),
		newDeploymentShowCmd(f),
		newDeploymentDeleteCmd(f),
	)
	return cmd
}

type deploymentCreateOptions struct {
	Resolve         resolveOptions
	ID              string
	File            string
	TargetCondition string
	Priority        int64
	Layered         bool
	Labels          []string
	Metrics         []string
}

func newDeploymentCreateCmd(f *Factory, runF func(*deploymentCreateOptions) error) *cobra.Command {
	opts := &deploymentCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create ID -f MANIFEST --target-condition COND",
		Short: "Create an automatic deployment",
		Long: `Create an automatic deployment from a manifest: outpost's native YAML/JSON or an
Azure IoT Edge deployment ({"modulesContent": …} or a whole configuration
{"content": {"modulesContent": …}}).

A file with IoT Hub's deviceContent ({"deviceContent": {"properties.desired.x":
…}} or {"content": {"deviceContent": …}}) makes an automatic device
configuration instead: the hub writes those desired properties into the device
twin of every device, edge or leaf, the condition matches (the highest priority
one per device).

A file with IoT Hub's moduleContent (the same shape) makes an automatic module
configuration: the hub writes those desired properties into every module twin
the condition matches, once (the highest priority one per module twin). Its
--target-condition is over module twins, in IoT Hub's form
"FROM devices.modules WHERE tags.kind='chiller'" ($edgeAgent and $edgeHub are
left to IoT Edge deployments).

--target-condition selects devices with IoT Hub's query language over the
device twin (tags, properties.reported, deviceId, …); '*' targets every edge
device. --priority (0 or more) decides between deployments that target the same
device: the highest wins.

--layered makes a layered deployment: its manifest sets parts of the twins
with "properties.desired.…" paths (such as "properties.desired.modules.filter"
in $edgeAgent, or "properties.desired.routes.r" in $edgeHub), merged on top of
the device's base deployment when its priority is higher.

` + resolveHelp + `
The images of a layered deployment are kept as written.`,
		Example: `  outpost deployment create prod -f deployment.json --target-condition "tags.environment='prod'" --priority 10
  outpost deployment create filter -f layer.json --layered --priority 20 \
      --target-condition "tags.environment='prod' AND tags.filter=true" --label team=analytics
  outpost deployment create all -f base.yaml --target-condition '*' \
      --metric running="SELECT deviceId FROM devices WHERE properties.reported.ok = true"
  outpost deployment create chillers -f chiller-settings.json --target-condition "tags.kind='chiller'"
  outpost deployment create chiller-modules -f module-chiller.json \
      --target-condition "FROM devices.modules WHERE tags.kind='chiller'"`,
		Args: exactArgs(1, "one deployment ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if opts.File == "" {
				return flagErrorf("deployment create needs -f MANIFEST (a file, or - for stdin)")
			}
			if !cmd.Flags().Changed("target-condition") {
				return flagErrorf("deployment create needs --target-condition, such as \"tags.environment='prod'\" ('*' targets every device)")
			}
			if opts.Priority < 0 {
				return flagErrorf("invalid --priority %d: use 0 or more (the highest wins)", opts.Priority)
			}
			if runF != nil {
				return runF(opts)
			}
			return deploymentCreateRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.File, "file", "f", "", "the manifest `FILE` (- for stdin)")
	fl.StringVar(&opts.TargetCondition, "target-condition", "", "which devices: a `CONDITION` over the device twin, such as \"tags.environment='prod'\"; '*' for all (a module configuration: \"FROM devices.modules WHERE …\")")
	fl.Int64Var(&opts.Priority, "priority", 0, "the deployment's `PRIORITY`: of the deployments targeting a device the highest wins")
	fl.BoolVar(&opts.Layered, "layered", false, "a layered deployment, merged on top of the device's base deployment")
	fl.StringArrayVar(&opts.Labels, "label", nil, "a `KEY=VALUE` label (repeatable)")
	fl.StringArrayVar(&opts.Metrics, "metric", nil, "a custom metric `NAME=QUERY` counting devices (repeatable)")
	addResolveFlags(cmd, &opts.Resolve)
	return cmd
}

func deploymentCreateRun(ctx context.Context, f *Factory, opts *deploymentCreateOptions) error {
	data, name, err := f.readInput(opts.File)
	if err != nil {
		return fmt.Errorf("deployment create: read manifest: %w", err)
	}
	cfg := hubapi.Configuration{
		ID:              opts.ID,
		SchemaVersion:   "1.0",
		TargetCondition: opts.TargetCondition,
		Priority:        opts.Priority,
	}
	if dc, ok := twinContent(data, "deviceContent"); ok {
		if opts.Layered {
			return flagErrorf("%s is a device configuration (deviceContent): --layered is for IoT Edge deployments; drop it", name)
		}
		cfg.Content.DeviceContent = dc
	} else if mc, ok := twinContent(data, "moduleContent"); ok {
		if opts.Layered {
			return flagErrorf("%s is a module configuration (moduleContent): --layered is for IoT Edge deployments; drop it", name)
		}
		cfg.Content.ModuleContent = mc
	} else {
		content, warnings, err := modulesContent(data, name, opts.Layered)
		if err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", w)
		}
		if !opts.Layered {
			if content, err = resolveContentImages(ctx, f, content, opts.Resolve); err != nil {
				return err
			}
		}
		cfg.Content.ModulesContent = content
	}
	if cfg.Labels, err = keyValues(opts.Labels, "--label"); err != nil {
		return err
	}
	metrics, err := keyValues(opts.Metrics, "--metric")
	if err != nil {
		return err
	}
	if metrics != nil {
		cfg.Metrics = &hubapi.ConfigurationMetrics{Queries: metrics}
	}
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	out, err := c.CreateConfiguration(ctx, cfg)
	if errors.Is(err, hubclient.ErrConflict) {
		err = withHint(err, fmt.Sprintf("`outpost deployment show %s` shows it; `outpost deployment delete %s` deletes it", opts.ID, opts.ID))
	}
	if err != nil {
		return fmt.Errorf("create deployment %s: %w", opts.ID, err)
	}
	f.status("created deployment %s (priority %d, target %s)", out.ID, out.Priority, out.TargetCondition)
	return f.Print(out, func(w io.Writer) error { return nil })
}

// twinContent returns the deviceContent or moduleContent (member) of a
// file that holds one, as {member: …} or a whole configuration
// {"content": {member: …}}.
func twinContent(data []byte, member string) (json.RawMessage, bool) {
	body, err := asJSON(data)
	if err != nil {
		return nil, false
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return nil, false
	}
	if c, ok := doc[member]; ok && string(c) != "null" {
		return c, true
	}
	var content map[string]json.RawMessage
	if json.Unmarshal(doc["content"], &content) != nil {
		return nil, false
	}
	c, ok := content[member]
	return c, ok && string(c) != "null"
}

// modulesContent reads a manifest into a configuration's modulesContent:
// an IoT Edge manifest's as it is, a native manifest's rendered as IoT Edge's.
func modulesContent(data []byte, name string, layered bool) (json.RawMessage, []string, error) {
	body, err := asJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("deployment create: %s: %w", name, err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, fmt.Errorf("deployment create: %s: want an object: %w", name, err)
	}
	mc, ok := doc["modulesContent"]
	if !ok {
		var content struct {
			ModulesContent json.RawMessage `json:"modulesContent"`
		}
		if raw, has := doc["content"]; has && json.Unmarshal(raw, &content) == nil && content.ModulesContent != nil {
			mc, ok = content.ModulesContent, true
		}
	}
	if !ok && doc["$edgeAgent"] != nil {
		mc, ok = body, true
	}
	var twins map[string]map[string]json.RawMessage
	if ok {
		if err := json.Unmarshal(mc, &twins); err != nil {
			return nil, nil, fmt.Errorf("deployment create: %s: modulesContent: %w", name, err)
		}
	}
	base := ok && twins["$edgeAgent"]["properties.desired"] != nil
	switch {
	case layered && base:
		return nil, nil, flagErrorf("%s sets all of $edgeAgent's properties.desired: that is a base deployment; drop --layered (a layered one sets \"properties.desired.modules.NAME\" paths)", name)
	case layered && !ok:
		return nil, nil, flagErrorf("%s is a native manifest: a layered deployment is an IoT Edge modulesContent with \"properties.desired.…\" paths; drop --layered for a base deployment", name)
	case layered:
		return mc, nil, nil
	case ok && !base:
		return nil, nil, flagErrorf("%s sets \"properties.desired.…\" paths, not all of $edgeAgent's properties.desired: that is a layered deployment; pass --layered", name)
	}
	m, warnings, err := deployment.Parse(data, name)
	if err != nil {
		var ve *deployment.ValidationError
		if errors.As(err, &ve) {
			return nil, nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("deployment create: the manifest is not valid:\n%w", err), Hint: "fix the fields named above and create it again"}
		}
		return nil, nil, fmt.Errorf("deployment create: %w", err)
	}
	if ok {
		return mc, warnings, nil
	}
	b, err := m.ModulesContent()
	if err != nil {
		return nil, nil, fmt.Errorf("deployment create: %w", err)
	}
	return b, warnings, nil
}

// resolveContentImages resolves the image tags of a base deployment's
// modulesContent to digests.
func resolveContentImages(ctx context.Context, f *Factory, content json.RawMessage, opts resolveOptions) (json.RawMessage, error) {
	if opts.NoResolve {
		return content, nil
	}
	var twins map[string]map[string]json.RawMessage
	if err := json.Unmarshal(content, &twins); err != nil {
		return nil, fmt.Errorf("deployment create: modulesContent: %w", err)
	}
	m, _, err := deployment.FromAgentDesired(twins["$edgeAgent"]["properties.desired"])
	if err != nil {
		return nil, fmt.Errorf("deployment create: %w", err)
	}
	images := map[string]string{}
	for id, mod := range m.Modules {
		images[id] = mod.Image
	}
	resolved, err := resolveImages(ctx, f, "deployment create", images, opts)
	if err != nil {
		return nil, err
	}
	if content, err = deployment.SetImages(content, resolved); err != nil {
		return nil, fmt.Errorf("deployment create: %w", err)
	}
	return content, nil
}

// keyValues reads repeated KEY=VALUE flags.
func keyValues(list []string, flag string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, flagErrorf("invalid %s %q: want KEY=VALUE", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

// deploymentRow is one deployment as list and show print it.
type deploymentRow struct {
	layered bool
	device  bool // an automatic device configuration (deviceContent)
	module  bool // an automatic module configuration (moduleContent)
	metrics map[string]int64
}

func rowOf(c hubapi.Configuration) deploymentRow {
	r := deploymentRow{metrics: map[string]int64{}}
	if c.SystemMetrics != nil {
		r.metrics = c.SystemMetrics.Results
	}
	var twins map[string]map[string]json.RawMessage
	json.Unmarshal(c.Content.ModulesContent, &twins)
	r.layered = len(c.Content.ModulesContent) > 0 && twins["$edgeAgent"]["properties.desired"] == nil
	r.device = len(c.Content.DeviceContent) > 0 && string(c.Content.DeviceContent) != "null"
	r.module = len(c.Content.ModuleContent) > 0 && string(c.Content.ModuleContent) != "null"
	return r
}

func (r deploymentRow) kind() string {
	switch {
	case r.device:
		return "device"
	case r.module:
		return "module"
	case r.layered:
		return "layered"
	}
	return "base"
}

// count is a system metric; "-" for one the configuration does not have (a
// device configuration has no agent reports).
func (r deploymentRow) count(name string) string {
	n, ok := r.metrics[name]
	if !ok {
		return "-"
	}
	return fmt.Sprint(n)
}

func newDeploymentListCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List automatic deployments with their device counts",
		Long: `List the hub's automatic deployments: id, kind (base or layered; device or
module for automatic device or module configurations), priority, target
condition, and how many devices (module twins for a module configuration) each
targets, has been applied to, and whose agents reported it succeeded or failed. -o json|yaml prints them as the
hub returned them (IoT Hub's configuration shape).`,
		Example: "  outpost deployment list\n  outpost deployment list -o json | jq '.[].systemMetrics.results'",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.HubClient()
			if err != nil {
				return err
			}
			list, err := c.ListConfigurations(cmd.Context())
			if err != nil {
				return fmt.Errorf("list deployments: %w", err)
			}
			if list == nil {
				list = []hubapi.Configuration{}
			}
			if len(list) == 0 && f.outputFormat() == "table" {
				f.status("no deployments: `outpost deployment create ID -f MANIFEST --target-condition COND` creates one")
				return nil
			}
			return f.Print(list, func(w io.Writer) error {
				t := NewTable("ID", "KIND", "PRIORITY", "TARGET", "TARGETED", "APPLIED", "SUCCEEDED", "FAILED")
				for _, c := range list {
					r := rowOf(c)
					t.Row(c.ID, r.kind(), fmt.Sprint(c.Priority), orDash(c.TargetCondition), r.count(hubapi.MetricTargeted), r.count(hubapi.MetricApplied), r.count(hubapi.MetricReportedSucceeded), r.count(hubapi.MetricReportedFailed))
				}
				return t.Write(w)
			})
		},
	}
}

func newDeploymentShowCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an automatic deployment with its metrics",
		Long: `Show an automatic deployment: its target condition, priority, labels, system
metrics (targeted, applied, reported successful and failed devices) and custom
metrics. -o json|yaml prints it as the hub returned it, content included.`,
		Example: "  outpost deployment show prod\n  outpost deployment show prod -o json | jq .content.modulesContent",
		Args:    exactArgs(1, "one deployment ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.HubClient()
			if err != nil {
				return err
			}
			cfg, err := c.GetConfiguration(cmd.Context(), args[0])
			if errors.Is(err, hubclient.ErrNotFound) {
				err = withHint(err, "`outpost deployment list` shows the deployments")
			}
			if err != nil {
				return fmt.Errorf("show deployment %s: %w", args[0], err)
			}
			return f.Print(cfg, func(w io.Writer) error {
				r := rowOf(cfg)
				kv := newKV()
				kv.add("deployment", cfg.ID)
				kv.add("kind", r.kind())
				kv.add("priority", fmt.Sprint(cfg.Priority))
				kv.add("target", orDash(cfg.TargetCondition))
				for _, k := range slices.Sorted(maps.Keys(cfg.Labels)) {
					kv.add("label "+k, cfg.Labels[k])
				}
				kv.add("created", cfg.CreatedTimeUtc)
				kv.add("updated", cfg.LastUpdatedTimeUtc)
				kv.add("etag", cfg.ETag)
				for _, m := range []string{hubapi.MetricTargeted, hubapi.MetricApplied, hubapi.MetricReportedSucceeded, hubapi.MetricReportedFailed} {
					if _, ok := r.metrics[m]; ok {
						kv.add(m, r.count(m))
					}
				}
				if cfg.Metrics != nil {
					for _, k := range slices.Sorted(maps.Keys(cfg.Metrics.Queries)) {
						v, ok := cfg.Metrics.Results[k]
						res := "-"
						if ok {
							res = fmt.Sprint(v)
						}
						kv.add("metric "+k, res+"  ("+cfg.Metrics.Queries[k]+")")
					}
				}
				return kv.write(w)
			})
		},
	}
}

func newDeploymentDeleteCmd(f *Factory) *cobra.Command {
	var ifMatchFlag string
	cmd := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "Delete an automatic deployment (devices keep what they run)",
		Long: `Delete an automatic deployment. The devices it was applied to keep running what
they run until another deployment targets them. With --if-match the hub deletes
it only if its etag is still ETAG; otherwise it fails with exit code 4.`,
		Example: "  outpost deployment delete prod",
		Args:    exactArgs(1, "one deployment ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.HubClient()
			if err != nil {
				return err
			}
			if err := c.DeleteConfiguration(cmd.Context(), args[0], ifMatchFlag); err != nil {
				if errors.Is(err, hubclient.ErrNotFound) {
					err = withHint(err, "`outpost deployment list` shows the deployments")
				}
				return fmt.Errorf("delete deployment %s: %w", args[0], err)
			}
			return f.done(doneResult{Action: "deleted"}, "deleted deployment %s", args[0])
		},
	}
	cmd.Flags().StringVar(&ifMatchFlag, "if-match", "", "delete only if the deployment's etag is still `ETAG`")
	return cmd
}
