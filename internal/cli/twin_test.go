package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/twin"
)

func TestTwinArgs(t *testing.T) {
	ios, _, _, _ := TestIO()
	f := &Factory{IO: ios}
	m1 := target{Device: "d1", Module: "m1"}
	for _, tc := range []struct {
		args []string
		want any
		err  string
	}{
		{[]string{"get", "d1/m1"}, twinGetOptions{Target: m1}, ""},
		{[]string{"get", "d1"}, twinGetOptions{Target: target{Device: "d1"}}, ""},
		{[]string{"get"}, nil, "takes one DEVICE/MODULE (or DEVICE for the device twin)"},
		{[]string{"get", "d1/m1/x"}, nil, "want one '/'"},
		{[]string{"edit", "d1/m1"}, twinEditOptions{Target: m1}, ""},
		{[]string{"edit", "d1"}, twinEditOptions{Target: target{Device: "d1"}}, ""},
		{[]string{"edit", "a", "b"}, nil, "got 2 arguments"},
		{[]string{"watch", "d1/m1"}, twinWatchOptions{Target: m1, Wait: 30 * time.Second}, ""},
		{[]string{"watch", "d1"}, nil, "want DEVICE/MODULE"},
	} {
		var got any
		var err error
		switch tc.args[0] {
		case "get":
			err = parseCmd(newTwinGetCmd(f, func(o *twinGetOptions) error { got = *o; return nil }), tc.args[1:]...)
		case "edit":
			err = parseCmd(newTwinEditCmd(f, func(o *twinEditOptions) error { got = *o; return nil }), tc.args[1:]...)
		case "watch":
			err = parseCmd(newTwinWatchCmd(f, func(o *twinWatchOptions) error { got = *o; return nil }), tc.args[1:]...)
		}
		if checkParseErr(t, tc.args, err, tc.err) && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: options %+v, want %+v", tc.args, got, tc.want)
		}
	}
}

func TestTwinPatchArgs(t *testing.T) {
	ios, _, _, _ := TestIO()
	f := &Factory{IO: ios}
	m1 := target{Device: "d1", Module: "m1"}
	for _, tc := range []struct {
		args  []string
		want  twinPatchOptions
		patch string
		err   string
	}{
		{args: []string{"d1/m1", "--desired", `{"a": 1}`}, want: twinPatchOptions{Target: m1, Desired: `{"a": 1}`}, patch: `{"properties":{"desired":{"a":1}}}`},
		{args: []string{"d1/m1", "--tags", `{"site":"n"}`}, want: twinPatchOptions{Target: m1, Tags: `{"site":"n"}`}, patch: `{"tags":{"site":"n"}}`},
		{args: []string{"d1", "--desired", `{"a":null}`, "--tags", `{"t":1.50}`, "--if-match", "AAAAAAAAAAI="},
			want:  twinPatchOptions{Target: target{Device: "d1"}, Desired: `{"a":null}`, Tags: `{"t":1.50}`, IfMatch: "AAAAAAAAAAI="},
			patch: `{"properties":{"desired":{"a":null}},"tags":{"t":1.50}}`},
		{args: []string{"d1/m1", "--desired", `{}`}, want: twinPatchOptions{Target: m1, Desired: `{}`}, patch: `{"properties":{"desired":{}}}`},
		{args: []string{"d1/m1", "-f", "patch.json"}, want: twinPatchOptions{Target: m1, File: "patch.json"}},
		{args: []string{"d1/m1", "--file", "-"}, want: twinPatchOptions{Target: m1, File: "-"}},
		{args: []string{"d1/m1"}, err: "nothing to patch: give --desired JSON, --tags JSON or -f FILE"},
		{args: []string{"d1/m1", "-f", "p.json", "--desired", "{}"}, err: "give either -f FILE or --desired/--tags, not both"},
		{args: []string{"d1/m1", "-f", ""}, err: "-f needs a file name"},
		{args: []string{"d1/m1", "--desired", `{"a":`}, err: "invalid --desired: at 1:6: unexpected end of JSON input"},
		{args: []string{"d1/m1", "--desired", `{"a" 1}`}, err: "invalid --desired: at 1:6: invalid character '1' after object key"},
		{args: []string{"d1/m1", "--desired", `[1]`}, err: "invalid --desired: got an array, not a JSON object"},
		{args: []string{"d1/m1", "--desired", `{} {}`}, err: "invalid --desired: at 1:4: unexpected data after the JSON object"},
		{args: []string{"d1/m1", "--tags", ``}, err: "invalid --tags: it is empty"},
		{args: []string{"d1/m1", "--tags", `"x"`}, err: "invalid --tags: got a string"},
		{args: []string{"--desired", "{}"}, err: "takes one DEVICE/MODULE"},
	} {
		var got *twinPatchOptions
		err := parseCmd(newTwinPatchCmd(f, func(o *twinPatchOptions) error { got = o; return nil }), tc.args...)
		if !checkParseErr(t, tc.args, err, tc.err) {
			continue
		}
		if string(got.Patch) != tc.patch {
			t.Errorf("%q: patch %s, want %s", tc.args, got.Patch, tc.patch)
		}
		got.Patch = nil
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q: options %+v, want %+v", tc.args, *got, tc.want)
		}
	}
}

func TestTwinGet(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	mustCreateDevice(t, h, "d1")
	mustCreateModule(t, h, "d1", "m1")
	if _, err := h.Client(t).PatchTwin(ctx, "d1", "m1", []byte(`{"tags":{"site":"north"},"properties":{"desired":{"interval":5,"nested":{"x":1.0}}}}`), ""); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := run(t, "twin", "get", "d1/m1")
	for _, want := range []string{"twin:     d1/m1\n", "version:  2\n", "etag:     AAAAAAAAAAI=\n", "tags:\n  {\n    \"site\": \"north\"\n  }\n",
		"desired ($version 2):\n  {\n    \"interval\": 5,\n    \"nested\": {\n      \"x\": 1.0\n    }\n  }\n", "reported ($version 1):\n  {}\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("twin get: code %d, stdout %q lacks %q; stderr %q", code, out, want, errOut)
		}
	}
	if strings.Contains(out, "$metadata") {
		t.Errorf("twin get shows $metadata in table mode: %q", out)
	}

	code, out, _ = run(t, "twin", "get", "d1/m1", "-o", "json")
	tw := new(twin.Twin)
	if err := tw.UnmarshalJSON([]byte(out)); code != 0 || err != nil || tw.ModuleID != "m1" || tw.DesiredVersion() != 2 || !strings.Contains(out, `"$metadata"`) {
		t.Errorf("twin get -o json: code %d, %v, %q", code, err, out)
	}
	if code, out, _ := run(t, "twin", "get", "d1/m1", "-o", "yaml"); code != 0 || !strings.Contains(out, "interval: 5") || !strings.Contains(out, "moduleId: m1") {
		t.Errorf("twin get -o yaml: code %d, %q", code, out)
	}
	if code, out, _ := run(t, "twin", "get", "d1"); code != 0 || !strings.Contains(out, "twin:     d1\n") {
		t.Errorf("device twin: code %d, %q", code, out)
	}
	for _, arg := range []string{"d1/nope", "nope/m1", "nope"} {
		code, out, errOut := run(t, "twin", "get", arg)
		if code != ExitNotFound || out != "" || !strings.Contains(errOut, "get twin "+arg+":") {
			t.Errorf("twin get %s: code %d, stdout %q, stderr %q", arg, code, out, errOut)
		}
	}
}

func TestTwinPatch(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	c := h.Client(t)
	mustCreateDevice(t, h, "d1")
	mustCreateModule(t, h, "d1", "m1")

	code, out, errOut := run(t, "twin", "patch", "d1/m1", "--desired", `{"interval": 5, "mode": "fast"}`, "--tags", `{"site": "north"}`)
	if code != 0 || out != "" || !strings.Contains(errOut, "patched twin d1/m1: version 2, desired $version 2, etag AAAAAAAAAAI=") {
		t.Fatalf("patch: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	tw, err := c.GetTwin(ctx, "d1", "m1")
	if err != nil || string(tw.DesiredJSON()) != `{"interval":5,"mode":"fast"}` || string(tw.TagsJSON()) != `{"site":"north"}` {
		t.Fatalf("after patch: %s %s %v", tw.DesiredJSON(), tw.TagsJSON(), err)
	}

	// null deletes; -o json prints the new twin.
	code, out, _ = run(t, "twin", "patch", "d1/m1", "--desired", `{"mode": null}`, "--if-match", tw.ETag, "-o", "json")
	got := new(twin.Twin)
	if err := got.UnmarshalJSON([]byte(out)); code != 0 || err != nil || string(got.DesiredJSON()) != `{"interval":5}` {
		t.Fatalf("patch with the current etag -o json: code %d, %v, %q", code, err, out)
	}

	// A stale etag: 4, nothing changes.
	code, _, errOut = run(t, "twin", "patch", "d1/m1", "--desired", `{"interval": 9}`, "--if-match", tw.ETag)
	if code != ExitPrecondition || !strings.Contains(errOut, "patch twin d1/m1:") || !strings.Contains(errOut, "412") {
		t.Errorf("stale etag: code %d, stderr %q", code, errOut)
	}
	if now, _ := c.GetTwin(ctx, "d1", "m1"); string(now.DesiredJSON()) != `{"interval":5}` {
		t.Errorf("a refused patch changed the twin: %s", now.DesiredJSON())
	}

	// -f FILE and -f - (stdin).
	file := filepath.Join(t.TempDir(), "patch.json")
	os.WriteFile(file, []byte("{\n  \"tags\": {\"site\": null, \"rack\": 7},\n  \"properties\": {\"desired\": {\"interval\": 10}}\n}\n"), 0o600)
	if code, _, errOut := run(t, "twin", "patch", "d1/m1", "-f", file); code != 0 {
		t.Fatalf("patch -f: code %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runIn(t, `{"properties":{"desired":{"fromStdin":true}}}`, "twin", "patch", "d1/m1", "-f", "-"); code != 0 {
		t.Fatalf("patch -f -: code %d, stderr %q", code, errOut)
	}
	tw, _ = c.GetTwin(ctx, "d1", "m1")
	if string(tw.DesiredJSON()) != `{"fromStdin":true,"interval":10}` || string(tw.TagsJSON()) != `{"rack":7}` {
		t.Errorf("after -f: desired %s, tags %s", tw.DesiredJSON(), tw.TagsJSON())
	}

	// The device twin.
	if code, _, errOut := run(t, "twin", "patch", "d1", "--tags", `{"floor": 2}`); code != 0 || !strings.Contains(errOut, "patched twin d1:") {
		t.Errorf("device twin: code %d, stderr %q", code, errOut)
	}

	// Bad files, bad patches.
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte("{\n  \"tags\": {\n    \"a\": 1,\n  }\n}\n"), 0o600)
	onlyDesired := filepath.Join(t.TempDir(), "desired.json")
	os.WriteFile(onlyDesired, []byte(`{"interval": 3}`), 0o600)
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"-f", bad}, ExitFailure, []string{"read twin patch: " + bad + ":4:3: invalid character '}'"}},
		{[]string{"-f", onlyDesired}, ExitFailure, []string{"neither tags nor properties", "use --desired JSON"}},
		{[]string{"-f", "/nonexistent/p.json"}, ExitFailure, []string{"no such file"}},
		{[]string{"--desired", `{"a.b": 1}`}, ExitFailure, []string{"patch twin d1/m1:", "properties.desired", "400"}},
		{[]string{"--desired", "{", "-f", bad}, ExitUsage, []string{"not both"}},
	} {
		code, _, errOut := run(t, append([]string{"twin", "patch", "d1/m1"}, tc.args...)...)
		for _, w := range tc.want {
			if code != tc.code || !strings.Contains(errOut, w) {
				t.Errorf("twin patch %q: code %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut, w)
			}
		}
	}
	code, _, errOut = run(t, "twin", "patch", "d1/nope", "--desired", "{}")
	if code != ExitNotFound || !strings.Contains(errOut, "outpost module list d1") {
		t.Errorf("missing module: code %d, stderr %q", code, errOut)
	}
}

// editorScript writes a shell script to use as $EDITOR and returns its path.
func editorScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "editor.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\nset -e\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// keptFile finds the temp file path twin edit names in its messages.
var keptFile = regexp.MustCompile(`\S*outpost-twin-\d+\.json`)

func TestTwinEdit(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	c := h.Client(t)
	mustCreateDevice(t, h, "d1")
	mustCreateModule(t, h, "d1", "m1")
	t.Setenv("VISUAL", "")
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"tags":{"site":"north"},"properties":{"desired":{"a":1,"b":2}}}`), ""); err != nil {
		t.Fatal(err)
	}
	seen := filepath.Join(t.TempDir(), "seen.json")

	// The editor sees tags and desired, and its change lands as a merge patch.
	t.Setenv("EDITOR", editorScript(t, fmt.Sprintf(`cp "$1" %q
sed 's/"a": 1/"a": 10/; s/"b": 2/"c": 3/; s/"site": "north"/"site": "south"/' "$1" > "$1.new"
mv "$1.new" "$1"`, seen)))
	code, out, errOut := run(t, "twin", "edit", "d1/m1")
	if code != 0 || out != "" || !strings.Contains(errOut, "updated twin d1/m1: version 3, desired $version 3") {
		t.Fatalf("edit: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	shown, _ := os.ReadFile(seen)
	if want := "{\n  \"tags\": {\n    \"site\": \"north\"\n  },\n  \"properties\": {\n    \"desired\": {\n      \"a\": 1,\n      \"b\": 2\n    }\n  }\n}\n"; string(shown) != want {
		t.Errorf("the editor saw\n%s\nwant\n%s", shown, want)
	}
	tw, _ := c.GetTwin(ctx, "d1", "m1")
	if string(tw.DesiredJSON()) != `{"a":10,"c":3}` || string(tw.TagsJSON()) != `{"site":"south"}` {
		t.Errorf("after edit: desired %s, tags %s", tw.DesiredJSON(), tw.TagsJSON())
	}
	if keptFile.MatchString(errOut) {
		t.Errorf("a successful edit mentions its temp file: %q", errOut)
	}

	// No change, or a change of layout only: nothing is sent.
	for _, ed := range []string{"true", editorScript(t, `tr -d ' \n' < "$1" > "$1.new"; mv "$1.new" "$1"`)} {
		t.Setenv("EDITOR", ed)
		code, _, errOut := run(t, "twin", "edit", "d1/m1")
		if code != 0 || !strings.Contains(errOut, "no changes, nothing sent") {
			t.Errorf("EDITOR=%s: code %d, stderr %q", ed, code, errOut)
		}
	}
	// With -o json, the twin as it is.
	code, out, errOut = run(t, "twin", "edit", "d1/m1", "-o", "json")
	var same struct{ ETag string }
	if err := json.Unmarshal([]byte(out), &same); code != 0 || err != nil || same.ETag != tw.ETag || !strings.Contains(errOut, "no changes") {
		t.Errorf("unchanged edit -o json: code %d, stdout %q (%v), stderr %q", code, out, err, errOut)
	}
	if now, _ := c.GetTwin(ctx, "d1", "m1"); now.ETag != tw.ETag {
		t.Errorf("an unchanged edit changed the twin: %s → %s", tw.ETag, now.ETag)
	}

	// VISUAL when EDITOR is unset; the device twin.
	t.Setenv("EDITOR", "")
	t.Setenv("VISUAL", editorScript(t, `sed 's/"tags": {}/"tags": {"floor": 2}/' "$1" > "$1.new"; mv "$1.new" "$1"`))
	if code, _, errOut := run(t, "twin", "edit", "d1"); code != 0 || !strings.Contains(errOut, "updated twin d1:") {
		t.Errorf("VISUAL on the device twin: code %d, stderr %q", code, errOut)
	}
	if dt, _ := c.GetTwin(ctx, "d1", ""); string(dt.TagsJSON()) != `{"floor":2}` {
		t.Errorf("device twin tags %s", dt.TagsJSON())
	}
	t.Setenv("VISUAL", "")

	// A failing editor sends nothing.
	t.Setenv("EDITOR", "false")
	if code, _, errOut := run(t, "twin", "edit", "d1/m1"); code != ExitFailure || !strings.Contains(errOut, "nothing was sent") {
		t.Errorf("EDITOR=false: code %d, stderr %q", code, errOut)
	}

	// Broken documents: said where, file kept, nothing sent.
	content := filepath.Join(t.TempDir(), "content.json")
	t.Setenv("EDITOR", editorScript(t, fmt.Sprintf(`cp %q "$1"`, content)))
	for _, tc := range []struct {
		doc, want string
	}{
		{"{\n  \"tags\": {,\n}\n", ":2:12: invalid character ','"},
		{"{\n  \"tags\": {}\n", ":3:1: unexpected end of JSON input"},
		{`{"tags": {}, "properties": {"desired": {}, "reported": {"x": 1}}}`, "properties.reported: only desired can be edited"},
		{`{"tags": {}, "etag": "x"}`, `unknown member "etag"`},
		{`{"tags": [], "properties": {"desired": {}}}`, "tags: want a JSON object"},
		{`[]`, "got an array, not a JSON object"},
	} {
		os.WriteFile(content, []byte(tc.doc), 0o600)
		code, _, errOut := run(t, "twin", "edit", "d1/m1")
		kept := keptFile.FindString(errOut)
		if code != ExitFailure || !strings.Contains(errOut, tc.want) || kept == "" || !strings.Contains(errOut, kept+":") {
			t.Errorf("edited to %q: code %d, stderr %q (want %q and the kept file)", tc.doc, code, errOut, tc.want)
			continue
		}
		if b, err := os.ReadFile(kept); err != nil || string(b) != tc.doc {
			t.Errorf("kept file %s: %q, %v", kept, b, err)
		}
		os.Remove(kept)
	}
	if now, _ := c.GetTwin(ctx, "d1", "m1"); now.ETag != tw.ETag {
		t.Errorf("a broken edit changed the twin: %s → %s", tw.ETag, now.ETag)
	}
}

// TestTwinEditConflict changes the twin on the hub while the editor is
// open: the editor script waits for the test to do so before it saves.
func TestTwinEditConflict(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	c := h.Client(t)
	mustCreateDevice(t, h, "d1")
	mustCreateModule(t, h, "d1", "m1")
	t.Setenv("VISUAL", "")
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"a":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	started, proceed := filepath.Join(dir, "started"), filepath.Join(dir, "proceed")
	t.Setenv("EDITOR", editorScript(t, fmt.Sprintf(`touch %q
while [ ! -f %q ]; do sleep 0.02; done
sed 's/"a": 1/"a": 2/' "$1" > "$1.new"
mv "$1.new" "$1"`, started, proceed)))

	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		ios, _, out, errOut := TestIO()
		code := Run(ctx, ios, []string{"twin", "edit", "d1/m1"})
		done <- result{code, out.String(), errOut.String()}
	}()
	waitFor(t, 10*time.Second, "the editor to start", func() bool { _, err := os.Stat(started); return err == nil })
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"theirs":true}}}`), ""); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(proceed, nil, 0o600)

	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("twin edit did not finish")
	}
	kept := keptFile.FindString(r.errOut)
	for _, want := range []string{
		"changed on the hub while you edited it",
		"Your version (kept in " + kept + "):\n{\n  \"tags\": {},\n  \"properties\": {\n    \"desired\": {\n      \"a\": 2\n    }\n  }\n}\n",
		"The hub's current version (version 3, desired $version 3):\n{\n  \"tags\": {},\n  \"properties\": {\n    \"desired\": {\n      \"a\": 1,\n      \"theirs\": true\n    }\n  }\n}\n",
		"Error: update twin d1/m1:",
		"outpost twin edit d1/m1",
	} {
		if r.code != ExitPrecondition || kept == "" || !strings.Contains(r.errOut, want) {
			t.Errorf("conflict: code %d, stderr %q lacks %q", r.code, r.errOut, want)
		}
	}
	if b, err := os.ReadFile(kept); err != nil || !strings.Contains(string(b), `"a": 2`) {
		t.Errorf("kept file %q: %q, %v", kept, b, err)
	}
	os.Remove(kept)
	if tw, _ := c.GetTwin(ctx, "d1", "m1"); string(tw.DesiredJSON()) != `{"a":1,"theirs":true}` {
		t.Errorf("after the conflict the hub has %s", tw.DesiredJSON())
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watcher runs twin watch until stopped.
type watcher struct {
	out, errOut *syncBuffer
	cancel      context.CancelFunc
	done        chan int
}

func startWatch(t *testing.T, args ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{out: &syncBuffer{}, errOut: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	ios := &IOStreams{In: strings.NewReader(""), Out: w.out, ErrOut: w.errOut}
	go func() { w.done <- Run(ctx, ios, append([]string{"twin", "watch"}, args...)) }()
	t.Cleanup(cancel)
	return w
}

func (w *watcher) lines() []string {
	s := strings.TrimSpace(w.out.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (w *watcher) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-w.done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("twin watch did not stop; stdout %q, stderr %q", w.out.String(), w.errOut.String())
	}
	return -1
}

func TestTwinWatch(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	c := h.Client(t)
	mustCreateDevice(t, h, "d1")
	mustCreateModule(t, h, "d1", "m1")
	mustCreateModule(t, h, "d1", "m2")

	w := startWatch(t, "d1/m1")
	waitFor(t, 5*time.Second, "watch to start", func() bool { return strings.Contains(w.errOut.String(), "watching twin d1/m1 from version 1") })

	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"interval":5,"mode":"fast"}}}`), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first change", func() bool { return len(w.lines()) == 1 })
	// Another module's change prints nothing.
	if _, err := c.PatchTwin(ctx, "d1", "m2", []byte(`{"properties":{"desired":{"other":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"mode":null}},"tags":{"site":"north"}}`), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the second change", func() bool { return len(w.lines()) >= 2 })
	w.cancel()
	if code := w.wait(t); code != 0 {
		t.Errorf("watch stopped with code %d; stderr %q", code, w.errOut.String())
	}
	lines := w.lines()
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  version (\d+)  desired \$version (\d+)  reported \$version 1(.*)$`)
	wantRest := []string{`  desired {"interval":5,"mode":"fast"}`, `  tags {"site":"north"}  desired {"mode":null}`}
	if len(lines) != 2 {
		t.Fatalf("watch printed %q, want 2 lines", lines)
	}
	for i, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil || m[1] != fmt.Sprint(i+2) || m[2] != fmt.Sprint(i+2) || m[3] != wantRest[i] {
			t.Errorf("line %d: %q, want version %d and %q", i+1, l, i+2, wantRest[i])
		}
	}
}

func TestTwinWatchJSON(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	c := h.Client(t)
	mustCreateDevice(t, h, "d1")
	mustCreateModule(t, h, "d1", "m1")

	w := startWatch(t, "d1/m1", "-o", "json")
	waitFor(t, 5*time.Second, "watch to start", func() bool { return strings.Contains(w.errOut.String(), "watching twin d1/m1") })
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"interval":5}}}`), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the desired change", func() bool { return len(w.lines()) == 1 })

	// The module reports through the device's sync upload.
	dev, err := c.GetDevice(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	dc := h.ClientFor(t, h.DeviceConnectionString("d1", "", dev.Authentication.SymmetricKey.PrimaryKey))
	if _, err := dc.UploadReported(ctx, "d1", hubapi.ReportedBatch{Patches: []hubapi.ReportedPatch{{Seq: 1, ModuleID: "m1", Patch: json.RawMessage(`{"temp":21.5}`)}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the reported change", func() bool { return len(w.lines()) == 2 })
	w.cancel()
	w.wait(t)

	var got []twinChange
	for _, l := range w.lines() {
		var ch twinChange
		if err := json.Unmarshal([]byte(l), &ch); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, ch)
	}
	if got[0].DeviceID != "d1" || got[0].ModuleID != "m1" || got[0].Version != 2 || got[0].DesiredVersion != 2 || got[0].ReportedVersion != 1 ||
		string(got[0].Desired) != `{"interval":5}` || got[0].Reported != nil || got[0].Tags != nil || got[0].Time.IsZero() || got[0].ETag == "" {
		t.Errorf("first change %+v", got[0])
	}
	if got[1].Version != 3 || got[1].DesiredVersion != 2 || got[1].ReportedVersion != 2 || string(got[1].Reported) != `{"temp":21.5}` || got[1].Desired != nil {
		t.Errorf("second change %+v", got[1])
	}
}

func TestTwinWatchEnds(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	mustCreateDevice(t, h, "d1")
	mustCreateModule(t, h, "d1", "m1")

	for _, arg := range []string{"d1/nope", "nope/m1"} {
		code, _, errOut := run(t, "twin", "watch", arg)
		if code != ExitNotFound || !strings.Contains(errOut, "watch twin "+arg+":") {
			t.Errorf("watch %s: code %d, stderr %q", arg, code, errOut)
		}
	}

	// The module is deleted: 3.
	w := startWatch(t, "d1/m1")
	waitFor(t, 5*time.Second, "watch to start", func() bool { return strings.Contains(w.errOut.String(), "watching") })
	if err := h.Client(t).DeleteModule(ctx, "d1", "m1", ""); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(t); code != ExitNotFound || !strings.Contains(w.errOut.String(), "module d1/m1 was deleted") {
		t.Errorf("module deleted: code %d, stderr %q", code, w.errOut.String())
	}

	// The hub goes away: 5.
	mustCreateModule(t, h, "d1", "m1")
	w = startWatch(t, "d1/m1")
	waitFor(t, 5*time.Second, "watch to start", func() bool { return strings.Contains(w.errOut.String(), "watching") })
	h.Stop()
	if code := w.wait(t); code != ExitUnavailable || !strings.Contains(w.errOut.String(), "is the hub running") {
		t.Errorf("hub stopped: code %d, stderr %q", code, w.errOut.String())
	}
}

// TestTwinEditTwinRules: an edit that breaks a twin rule is refused before
// anything is sent, with the line:col and the JSON path of the offending
// member, and the file is kept.
func TestTwinEditTwinRules(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	mustCreateDevice(t, h, "d1")
	mustCreateModule(t, h, "d1", "m1")
	t.Setenv("VISUAL", "")
	content := filepath.Join(t.TempDir(), "content.json")
	doc := "{\n  \"tags\": {},\n  \"properties\": {\n    \"desired\": {\"ok\": 1, \"$x\": 1}\n  }\n}\n"
	if err := os.WriteFile(content, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EDITOR", editorScript(t, fmt.Sprintf(`cp %q "$1"`, content)))
	code, _, errOut := run(t, "twin", "edit", "d1/m1")
	kept := keptFile.FindString(errOut)
	if code != ExitFailure || kept == "" || !strings.Contains(errOut, kept+`:4:26: properties.desired["$x"]: key must not start with '$'`) {
		t.Fatalf("edit with a $ key: code %d, stderr %q", code, errOut)
	}
	if b, err := os.ReadFile(kept); err != nil || string(b) != doc {
		t.Errorf("kept file %s: %q, %v", kept, b, err)
	}
	os.Remove(kept)
	if tw, err := h.Client(t).GetTwin(ctx, "d1", "m1"); err != nil || tw.Version != 1 {
		t.Errorf("the refused edit reached the hub: %+v, %v", tw, err)
	}
}
