package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/twin"
	"github.com/outpost-edge/outpost/internal/twinedit"
)

func newTwinCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "twin",
		Short: "Read, patch, edit and watch module and device twins",
		Long: `Read and write twins on the hub: a module's (DEVICE/MODULE) or a device's own
(DEVICE). Operators write tags and desired properties; modules write reported
properties. Writes are JSON merge patches (RFC 7386): null deletes a member.
These commands need an operator's connection string (--hub) and the hub's CA
(--ca).`,
	}
	cmd.AddCommand(
		newTwinGetCmd(f, nil),
		newTwinPatchCmd(f, nil),
		newTwinEditCmd(f, nil),
		newTwinWatchCmd(f, nil),
	)
	return cmd
}

type twinGetOptions struct {
	Target target
}

func newTwinGetCmd(f *Factory, runF func(*twinGetOptions) error) *cobra.Command {
	opts := &twinGetOptions{}
	return &cobra.Command{
		Use:   "get DEVICE[/MODULE]",
		Short: "Print a module's or a device's twin",
		Long: `Print a twin: tags, desired and reported properties with their $version, etag
and version. -o json|yaml prints the twin as the hub returned it, $metadata
included.`,
		Example: `  outpost twin get dev-1/tempsensor
  outpost twin get dev-1/tempsensor -o json | jq .properties.reported
  outpost twin get dev-1`,
		Args: exactArgs(1, "one DEVICE/MODULE (or DEVICE for the device twin)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleOptional)
			if err != nil {
				return err
			}
			opts.Target = t
			if runF != nil {
				return runF(opts)
			}
			return twinGetRun(cmd.Context(), f, opts)
		},
	}
}

func twinGetRun(ctx context.Context, f *Factory, opts *twinGetOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	tw, err := c.GetTwin(ctx, opts.Target.Device, opts.Target.Module)
	if err != nil {
		return fmt.Errorf("get twin %s: %w", opts.Target, notFoundHint(err, opts.Target))
	}
	return f.Print(tw, func(w io.Writer) error { return writeTwin(w, tw) })
}

// writeTwin prints a twin for people: the identity fields, then each
// section as indented JSON without $metadata.
func writeTwin(w io.Writer, tw *twin.Twin) error {
	name := tw.DeviceID
	if tw.ModuleID != "" {
		name += "/" + tw.ModuleID
	}
	kv := newKV()
	kv.add("twin", name)
	kv.add("etag", tw.ETag)
	kv.add("version", fmt.Sprint(tw.Version))
	kv.add("status", orDash(tw.Status))
	if err := kv.write(w); err != nil {
		return err
	}
	for _, s := range []struct {
		title string
		doc   []byte
	}{
		{"tags:", tw.TagsJSON()},
		{fmt.Sprintf("desired ($version %d):", tw.DesiredVersion()), tw.DesiredJSON()},
		{fmt.Sprintf("reported ($version %d):", tw.ReportedVersion()), tw.ReportedJSON()},
	} {
		var b bytes.Buffer
		if err := json.Indent(&b, s.doc, "  ", "  "); err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n  %s\n", s.title, b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// twinWritten reports a write: a status line, or the twin with -o json|yaml.
func twinWritten(f *Factory, verb string, tw *twin.Twin) error {
	if f.outputFormat() == "table" {
		f.status("%s twin %s: version %d, desired $version %d, etag %s", verb, twinName(tw), tw.Version, tw.DesiredVersion(), tw.ETag)
		return nil
	}
	return f.Print(tw, nil)
}

// twinUnchanged reports an edit that changed nothing: a status line and,
// with -o json|yaml, the twin as it is.
func twinUnchanged(f *Factory, t target, tw *twin.Twin) error {
	f.status("twin %s: no changes, nothing sent", t)
	if f.outputFormat() == "table" {
		return nil
	}
	return f.Print(tw, nil)
}

func twinName(tw *twin.Twin) string {
	return target{Device: tw.DeviceID, Module: tw.ModuleID}.String()
}

type twinPatchOptions struct {
	Target  target
	Desired string // --desired JSON
	Tags    string // --tags JSON
	File    string // -f FILE ("-" for stdin)
	IfMatch string
	Patch   []byte // built from --desired and --tags; nil with -f
}

func newTwinPatchCmd(f *Factory, runF func(*twinPatchOptions) error) *cobra.Command {
	opts := &twinPatchOptions{}
	cmd := &cobra.Command{
		Use:   "patch DEVICE[/MODULE] (--desired JSON | --tags JSON | -f FILE)",
		Short: "Merge a patch into a twin's desired properties or tags",
		Long: `Merge a JSON merge patch (RFC 7386; null deletes a member) into a twin's
desired properties (--desired) and/or tags (--tags), or apply an IoT Hub twin
patch read from a file (-f FILE; '-' reads stdin):

  {"tags": {…}, "properties": {"desired": {…}}}

With --if-match the hub applies it only if the twin's etag is still ETAG;
otherwise it fails with exit code 4. It prints the new version and etag on
stderr, or the whole new twin with -o json|yaml.`,
		Example: `  outpost twin patch dev-1/tempsensor --desired '{"interval": 5}'
  outpost twin patch dev-1/tempsensor --desired '{"interval": null}' --tags '{"site": "north"}'
  outpost twin patch dev-1/tempsensor -f patch.json --if-match AAAAAAAAAAM=
  echo '{"properties":{"desired":{"interval":10}}}' | outpost twin patch dev-1/tempsensor -f -`,
		Args: exactArgs(1, "one DEVICE/MODULE (or DEVICE for the device twin)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleOptional)
			if err != nil {
				return err
			}
			opts.Target = t
			fl := cmd.Flags()
			hasDesired, hasTags, hasFile := fl.Changed("desired"), fl.Changed("tags"), fl.Changed("file")
			switch {
			case hasFile && (hasDesired || hasTags):
				return flagErrorf("give either -f FILE or --desired/--tags, not both")
			case !hasFile && !hasDesired && !hasTags:
				return flagErrorf("nothing to patch: give --desired JSON, --tags JSON or -f FILE")
			case hasFile && opts.File == "":
				return flagErrorf("-f needs a file name, or '-' for stdin")
			}
			if !hasFile {
				if opts.Patch, err = buildTwinPatch(opts.Desired, hasDesired, opts.Tags, hasTags); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return twinPatchRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Desired, "desired", "", "merge patch of the desired properties, a `JSON` object")
	fl.StringVar(&opts.Tags, "tags", "", "merge patch of the tags, a `JSON` object")
	fl.StringVarP(&opts.File, "file", "f", "", "read an IoT Hub twin patch from `FILE` ('-' for stdin)")
	fl.StringVar(&opts.IfMatch, "if-match", "", "apply only if the twin's etag is still `ETAG`")
	return cmd
}

// buildTwinPatch makes an IoT Hub twin patch from --desired and --tags.
func buildTwinPatch(desired string, hasDesired bool, tags string, hasTags bool) ([]byte, error) {
	doc := map[string]any{}
	if hasDesired {
		raw, err := jsonObjectFlag("desired", desired)
		if err != nil {
			return nil, err
		}
		doc["properties"] = map[string]json.RawMessage{"desired": raw}
	}
	if hasTags {
		raw, err := jsonObjectFlag("tags", tags)
		if err != nil {
			return nil, err
		}
		doc["tags"] = raw
	}
	return json.Marshal(doc)
}

// jsonObjectFlag checks that a flag's value is one JSON object.
func jsonObjectFlag(name, value string) (json.RawMessage, error) {
	data := []byte(value)
	if err := checkJSONObject(data); err != nil {
		return nil, flagErrorf("invalid --%s: %v; want a JSON object such as '{\"interval\": 5}'", name, err)
	}
	return json.RawMessage(data), nil
}

// checkJSONObject checks that data is exactly one JSON object; its errors
// say where (line:col) the problem is.
func checkJSONObject(data []byte) error { return twinedit.CheckObject(data) }

// jsonProblemIn says what is wrong with file's JSON: file:line:col: msg
// when the place is known.
func jsonProblemIn(file string, err error) string { return twinedit.ProblemIn(file, err) }

func twinPatchRun(ctx context.Context, f *Factory, opts *twinPatchOptions) error {
	t := opts.Target
	patch := opts.Patch
	if patch == nil {
		var err error
		if patch, err = readTwinPatchFile(f, opts.File); err != nil {
			return err
		}
	}
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	tw, err := c.PatchTwin(ctx, t.Device, t.Module, patch, opts.IfMatch)
	if err != nil {
		if errors.Is(err, hubclient.ErrPrecondition) {
			err = withHint(err, fmt.Sprintf("the twin changed since you read its etag: `outpost twin get %s` shows the current one", t))
		}
		return fmt.Errorf("patch twin %s: %w", t, notFoundHint(err, t))
	}
	return twinWritten(f, "patched", tw)
}

// readTwinPatchFile reads an IoT Hub twin patch from file ("-": stdin).
func readTwinPatchFile(f *Factory, file string) ([]byte, error) {
	data, name, err := f.readInput(file)
	if err != nil {
		return nil, fmt.Errorf("read twin patch: %w", err)
	}
	if err := checkJSONObject(data); err != nil {
		return nil, fmt.Errorf("read twin patch: %s", jsonProblemIn(name, err))
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read twin patch from %s: %w", name, err)
	}
	_, hasTags := doc["tags"]
	_, hasProps := doc["properties"]
	if !hasTags && !hasProps {
		return nil, &ExitError{Code: ExitFailure,
			Err:  fmt.Errorf("read twin patch from %s: it has neither tags nor properties, so it would change nothing", name),
			Hint: `a twin patch looks like {"tags": {…}, "properties": {"desired": {…}}}; to patch desired properties alone, use --desired JSON`}
	}
	return data, nil
}

type twinEditOptions struct {
	Target target
}

func newTwinEditCmd(f *Factory, runF func(*twinEditOptions) error) *cobra.Command {
	opts := &twinEditOptions{}
	return &cobra.Command{
		Use:   "edit DEVICE[/MODULE]",
		Short: "Edit a twin's desired properties and tags in your editor",
		Long: `Open a twin's tags and desired properties in an editor ($EDITOR, then $VISUAL,
then vi) as {"tags": {…}, "properties": {"desired": {…}}}, and send what you
changed as a merge patch, only if nobody changed the twin meanwhile (If-Match
with the etag read).

Nothing is sent when you change nothing. If the file is not valid JSON after
editing, breaks a twin rule (key names, depth, sizes; the error names the
line:col and the JSON path), or the hub refuses the change, the file is kept
and its path printed, so your edit is not lost. If the twin changed on the hub meanwhile, both
versions are printed (yours and the hub's) and it exits with code 4.`,
		Example: `  outpost twin edit dev-1/tempsensor
  EDITOR=nano outpost twin edit dev-1`,
		Args: exactArgs(1, "one DEVICE/MODULE (or DEVICE for the device twin)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleOptional)
			if err != nil {
				return err
			}
			opts.Target = t
			if runF != nil {
				return runF(opts)
			}
			return twinEditRun(cmd.Context(), f, opts)
		},
	}
}

// editor is the command that edits a file: $EDITOR, then $VISUAL, then vi.
func editor() string { return twinedit.Editor() }

// runEditor runs the editor on path with the command's streams. It is not
// tied to the command's context: Ctrl-C inside the editor belongs to the
// editor.
func runEditor(f *Factory, path string) error {
	cmd := twinedit.EditorCommand(path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f.IO.In, f.IO.Out, f.IO.ErrOut
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("editor %q: %w", editor(), err)
	}
	return nil
}

func twinEditRun(ctx context.Context, f *Factory, opts *twinEditOptions) error {
	t := opts.Target
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	sess, err := twinedit.Start(ctx, c, t.Device, t.Module)
	if err != nil {
		return fmt.Errorf("get twin %s: %w", t, notFoundHint(err, t))
	}
	before := sess.Doc

	tmp, err := os.CreateTemp("", "outpost-twin-*.json")
	if err != nil {
		return fmt.Errorf("edit twin %s: %w", t, err)
	}
	path := tmp.Name()
	keep := false
	defer func() {
		if !keep {
			os.Remove(path)
		}
	}()
	if _, err := tmp.Write(before); err != nil {
		tmp.Close()
		return fmt.Errorf("edit twin %s: %w", t, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("edit twin %s: %w", t, err)
	}

	if err := runEditor(f, path); err != nil {
		return fmt.Errorf("edit twin %s: %w; nothing was sent", t, err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("edit twin %s: read back %s: %w", t, path, err)
	}
	edit, err := sess.Check(after)
	if err != nil {
		keep = true
		return &ExitError{Code: ExitFailure,
			Err:  fmt.Errorf("edit twin %s: %s", t, jsonProblemIn(path, err)),
			Hint: fmt.Sprintf("nothing was sent; your edit is kept in %s: run `outpost twin edit %s` again and copy your changes from it", path, t)}
	}
	if edit.Patch == nil {
		return twinUnchanged(f, t, sess.Base)
	}

	updated, err := sess.Send(ctx, c, edit)
	var conflict *twinedit.Conflict
	if errors.As(err, &conflict) {
		keep = true
		printEditConflict(f, t, conflict, path)
		return &ExitError{Code: ExitPrecondition,
			Err:  fmt.Errorf("update twin %s: %w", t, conflict.Err),
			Hint: fmt.Sprintf("run `outpost twin edit %s` again and redo your change on the current version (yours is kept in %s)", t, path)}
	}
	if err != nil {
		keep = true
		return fmt.Errorf("update twin %s: %w (your edit is kept in %s)", t, notFoundHint(err, t), path)
	}
	return twinWritten(f, "updated", updated)
}

// printEditConflict shows, on stderr, the edited version and the hub's
// current one after an edit lost a race.
func printEditConflict(f *Factory, t target, c *twinedit.Conflict, path string) {
	w := f.IO.ErrOut
	yours := c.Yours
	if c.Theirs == nil {
		fmt.Fprintf(w, "The twin %s changed on the hub while you edited it (etag %s); nothing was sent.\n\n", t, c.Base.ETag)
		fmt.Fprintf(w, "Your version (kept in %s):\n%s\n", path, bytes.TrimRight(yours, "\n"))
		fmt.Fprintf(w, "The hub's current version could not be read: %v\n\n", c.TheirsErr)
		return
	}
	cur := c.Theirs
	fmt.Fprintf(w, "The twin %s changed on the hub while you edited it (etag %s, now %s); nothing was sent.\n\n", t, c.Base.ETag, cur.ETag)
	fmt.Fprintf(w, "Your version (kept in %s):\n%s\n\n", path, bytes.TrimRight(yours, "\n"))
	fmt.Fprintf(w, "The hub's current version (version %d, desired $version %d):\n%s\n", cur.Version, cur.DesiredVersion(), c.TheirsDoc)
}

type twinWatchOptions struct {
	Target target
	Wait   time.Duration // long-poll wait per request
}

// twinChange is one change twin watch prints: the new versions and, per
// section, the merge patch that turned the old content into the new.
type twinChange struct {
	Time            time.Time       `json:"time"`
	DeviceID        string          `json:"deviceId"`
	ModuleID        string          `json:"moduleId"`
	ETag            string          `json:"etag"`
	Version         int64           `json:"version"`
	DesiredVersion  int64           `json:"desiredVersion"`
	ReportedVersion int64           `json:"reportedVersion"`
	Tags            json.RawMessage `json:"tags,omitempty"`
	Desired         json.RawMessage `json:"desired,omitempty"`
	Reported        json.RawMessage `json:"reported,omitempty"`
}

func newTwinWatchCmd(f *Factory, runF func(*twinWatchOptions) error) *cobra.Command {
	opts := &twinWatchOptions{Wait: 30 * time.Second}
	return &cobra.Command{
		Use:   "watch DEVICE/MODULE",
		Short: "Print each change of a module twin as it happens",
		Long: `Follow a module twin and print one line per change: the time it was seen, the
twin's version and the desired and reported $version, and what changed in
each section as a merge patch. With -o json, one JSON object per line
({"time", "deviceId", "moduleId", "etag", "version", "desiredVersion",
"reportedVersion", "tags", "desired", "reported"}, sections only when they
changed); with -o yaml, one YAML document per change.

It follows the hub's device sync long-poll, so changes show at once. It runs
until interrupted (Ctrl-C), and stops with an error when the hub becomes
unreachable (exit code 5) or the module is deleted (exit code 3).`,
		Example: `  outpost twin watch dev-1/tempsensor
  outpost twin watch dev-1/tempsensor -o json | jq -c .reported`,
		Args: exactArgs(1, "one DEVICE/MODULE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleRequired)
			if err != nil {
				return err
			}
			opts.Target = t
			if runF != nil {
				return runF(opts)
			}
			return twinWatchRun(cmd.Context(), f, opts)
		},
	}
}

func twinWatchRun(ctx context.Context, f *Factory, opts *twinWatchOptions) error {
	t := opts.Target
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	// The watch stops with the first error: the CLI does not wait for a hub
	// that went away (exit code 5), it says so.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.WatchTwin(ctx, t.Device, t.Module, hubclient.WithWait(opts.Wait))
	if err != nil {
		return fmt.Errorf("watch twin %s: %w", t, err)
	}
	for ev := range events {
		switch ev.Kind {
		case hubclient.TwinInitial:
			cur := ev.Twin
			f.status("watching twin %s from version %d (desired $version %d, reported $version %d); Ctrl-C stops",
				t, cur.Version, cur.DesiredVersion(), cur.ReportedVersion())
		case hubclient.TwinChanged:
			ch, err := changeOf(ev.Prev, ev.Twin, f.Now())
			if err != nil {
				return fmt.Errorf("watch twin %s: %w", t, err)
			}
			if err := writeChange(f, ch); err != nil {
				return err
			}
		case hubclient.LinkDown, hubclient.WatchEnded:
			var gone *hubclient.ModuleNotFoundError
			if errors.As(ev.Err, &gone) {
				what := "not found"
				if gone.Deleted {
					what = "was deleted"
				}
				return fmt.Errorf("watch twin %s: %w", t, moduleGone(t, what))
			}
			return fmt.Errorf("watch twin %s: %w", t, notFoundHint(ev.Err, target{Device: t.Device}))
		}
	}
	return nil // interrupted
}

func moduleGone(t target, what string) error {
	return &ExitError{Code: ExitNotFound, Err: fmt.Errorf("module %s %s", t, what),
		Hint: "`outpost module list " + t.Device + "` shows the device's modules"}
}

// changeOf describes the change from a to b.
func changeOf(a, b *twin.Twin, now time.Time) (twinChange, error) {
	ch := twinChange{
		Time: now.UTC().Truncate(time.Millisecond), DeviceID: b.DeviceID, ModuleID: b.ModuleID, ETag: b.ETag,
		Version: b.Version, DesiredVersion: b.DesiredVersion(), ReportedVersion: b.ReportedVersion(),
	}
	for _, s := range []struct {
		dst      *json.RawMessage
		from, to []byte
	}{
		{&ch.Tags, a.TagsJSON(), b.TagsJSON()},
		{&ch.Desired, a.DesiredJSON(), b.DesiredJSON()},
		{&ch.Reported, a.ReportedJSON(), b.ReportedJSON()},
	} {
		p, err := twin.Diff(s.from, s.to)
		if err != nil {
			return ch, err
		}
		if string(p) != "{}" {
			*s.dst = p
		}
	}
	return ch, nil
}

// writeChange prints one change: a line, a JSON line or a YAML document.
func writeChange(f *Factory, ch twinChange) error {
	if done, err := f.printStreamed(ch); done {
		return err
	}
	w := f.IO.Out
	var b strings.Builder
	fmt.Fprintf(&b, "%s  version %d  desired $version %d  reported $version %d",
		ch.Time.Format(time.RFC3339), ch.Version, ch.DesiredVersion, ch.ReportedVersion)
	for _, s := range []struct {
		name string
		p    json.RawMessage
	}{{"tags", ch.Tags}, {"desired", ch.Desired}, {"reported", ch.Reported}} {
		if s.p != nil {
			fmt.Fprintf(&b, "  %s %s", s.name, s.p)
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}
