package twinedit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/twin"
	"github.com/outpost-edge/outpost/internal/twinedit"
)

// base is a twin with tags {"site": "north"} and desired {"a": 1, "b": 2}.
func base(t *testing.T) *twin.Twin {
	t.Helper()
	tw := twin.New("d1", "m1", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if _, err := tw.Apply([]byte(`{"tags":{"site":"north"},"properties":{"desired":{"a":1,"b":2}}}`), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	return tw
}

func TestDocument(t *testing.T) {
	want := "{\n  \"tags\": {\n    \"site\": \"north\"\n  },\n  \"properties\": {\n    \"desired\": {\n      \"a\": 1,\n      \"b\": 2\n    }\n  }\n}\n"
	if got := string(twinedit.New(base(t)).Doc); got != want {
		t.Errorf("document\n%s\nwant\n%s", got, want)
	}
}

// TestCheckPatch: what an edit sends, and that an edit of layout alone
// sends nothing.
func TestCheckPatch(t *testing.T) {
	s := twinedit.New(base(t))
	for _, tc := range []struct{ doc, patch string }{
		{string(s.Doc), ""},
		{`{"tags":{"site":"north"},"properties":{"desired":{"b":2,"a":1}}}`, ""},
		{`{"tags":{"site":"south"},"properties":{"desired":{"a":10,"c":3}}}`, `{"properties":{"desired":{"a":10,"b":null,"c":3}},"tags":{"site":"south"}}`},
		{`{"properties":{"desired":{"a":1,"b":2}}}`, `{"tags":{"site":null}}`},                                                 // tags left out: {}
		{`{"tags":null,"properties":{"desired":null}}`, `{"properties":{"desired":{"a":null,"b":null}},"tags":{"site":null}}`}, // null sections: {}
		{`{"tags":{"site":"north"},"properties":{"desired":{"a":{"x":[1,2]},"b":2}}}`, `{"properties":{"desired":{"a":{"x":[1,2]}}}}`},
	} {
		e, err := s.Check([]byte(tc.doc))
		if err != nil {
			t.Errorf("%s: %v", tc.doc, err)
			continue
		}
		if string(e.Patch) != tc.patch || string(e.Doc) != tc.doc {
			t.Errorf("%s: patch %s, want %q", tc.doc, e.Patch, tc.patch)
		}
	}
}

// TestCheckErrors: each problem names its place (line:col) and what is
// wrong, from JSON syntax to the twin's own rules.
func TestCheckErrors(t *testing.T) {
	s := twinedit.New(base(t))
	deep := `{"tags": {}, "properties": {"desired": {"x":` + strings.Repeat(`{"n":`, 11) + "1" + strings.Repeat("}", 11) + "}}}"
	for _, tc := range []struct{ doc, want string }{
		{"{\n  \"tags\": {,\n}\n", "at 2:12: invalid character ','"},
		{"{\n  \"tags\": {}\n", "at 3:1: unexpected end of JSON input"},
		{"", "it is empty"},
		{"{}\n  x", "at 2:3: unexpected data after the JSON object"},
		{`[]`, "got an array, not a JSON object"},
		{"{\n  \"tags\": [],\n  \"properties\": {\"desired\": {}}}", "at 2:3: tags: want a JSON object"},
		{"{\n  \"tags\": {},\n  \"etag\": \"x\"\n}", `at 3:3: unknown member "etag"`},
		{"{\"tags\": {},\n \"properties\": {\"desired\": {},\n  \"reported\": {\"x\": 1}}}", "at 3:3: properties.reported: only desired can be edited"},
		{"{\"tags\": {},\n \"properties\": {\"desired\": 5}}", "at 2:17: properties.desired: want a JSON object"},
		{"{\"tags\": {},\n \"properties\": {\"desired\": {\n   \"a\": {\"$x\": 1}}}}", `at 3:10: properties.desired.a["$x"]: key must not start with '$'`},
		{"{\"tags\": {\n   \"a.b\": 1}}", `at 2:4: tags["a.b"]: key must not contain '.'`},
		{"{\"tags\": {}, \"properties\": {\"desired\": {\n  \"a\": [1,\n    {\"b c\": 2}]}}}", `at 3:6: properties.desired.a[1]["b c"]: key must not contain a space`},
		{"{\"tags\": {}, \"properties\": {\"desired\": {\n  \"a\": 9007199254740993}}}", "at 2:3: properties.desired.a: integer 9007199254740993 is out of range"},
		{deep, "at 1:" + fmt.Sprint(strings.Index(deep, `"n"`)+1+9*5) + ": properties.desired.x.n.n.n.n.n.n.n.n.n.n: depth 11 exceeds 10"},
	} {
		_, err := s.Check([]byte(tc.doc))
		var e *twinedit.Error
		if err == nil || !errors.As(err, &e) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q…", tc.doc, err, tc.want)
		}
	}
}

// TestProblemIn checks that a problem in a JSON file is described with its
// place when known, and that an error of another type is described too.
func TestProblemIn(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{twinedit.CheckObject([]byte("{\n  \"a\": 1,\n}")), "p.json:3:1: invalid character '}'"},
		{fmt.Errorf("wrapped: %w", &twinedit.Error{Msg: "got an array, not a JSON object"}), "p.json: got an array, not a JSON object"},
		{os.ErrPermission, "p.json: permission denied"},
	} {
		if got := twinedit.ProblemIn("p.json", tc.err); !strings.HasPrefix(got, tc.want) {
			t.Errorf("ProblemIn(%v) = %q, want %q…", tc.err, got, tc.want)
		}
	}
}

// TestSendConflictRebase runs an edit against a real hub: it lands with
// If-Match; an edit that loses a race is a Conflict with the three
// versions and the places both changed, and re-applied on the hub's twin
// it lands.
func TestSendConflictRebase(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := context.Background()
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: "d1", ModuleID: "m1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"a":1,"b":{"x":1,"y":1}}}}`), ""); err != nil {
		t.Fatal(err)
	}

	s, err := twinedit.Start(ctx, c, "d1", "m1")
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Check([]byte(`{"tags":{"site":"north"},"properties":{"desired":{"a":1,"b":{"x":1,"y":1}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tw, err := s.Send(ctx, c, e)
	if err != nil || tw.Version != 3 || string(tw.TagsJSON()) != `{"site":"north"}` {
		t.Fatalf("send: %v, twin %+v", err, tw)
	}

	// Nothing changed: nothing sent.
	s = twinedit.New(tw)
	e, _ = s.Check(s.Doc)
	if same, err := s.Send(ctx, c, e); err != nil || same != tw {
		t.Errorf("an unchanged edit: %v, %+v", err, same)
	}

	// Yours changes a and b.x; theirs changes b.x, b.y and adds c meanwhile.
	yours := []byte(`{"tags":{"site":"north"},"properties":{"desired":{"a":2,"b":{"x":2,"y":1}}}}`)
	e, err = s.Check(yours)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"b":{"x":3,"y":3},"c":true}}}`), ""); err != nil {
		t.Fatal(err)
	}
	_, err = s.Send(ctx, c, e)
	var conflict *twinedit.Conflict
	if !errors.As(err, &conflict) || !errors.Is(err, hubclient.ErrPrecondition) {
		t.Fatalf("send after a change on the hub: %v, want a conflict (412)", err)
	}
	if conflict.Base != tw || conflict.Theirs == nil || conflict.Theirs.Version != 4 || string(conflict.Yours) != string(yours) {
		t.Errorf("conflict versions: base %+v, theirs %+v, yours %s", conflict.Base, conflict.Theirs, conflict.Yours)
	}
	if got, want := string(conflict.TheirPatch), `{"properties":{"desired":{"b":{"x":3,"y":3},"c":true}}}`; got != want {
		t.Errorf("their patch %s, want %s", got, want)
	}
	if got, want := string(conflict.YourPatch), `{"properties":{"desired":{"a":2,"b":{"x":2}}}}`; got != want {
		t.Errorf("your patch %s, want %s", got, want)
	}
	if want := []string{"properties.desired.b.x"}; !reflect.DeepEqual(conflict.Both, want) {
		t.Errorf("changed on both sides: %q, want %q", conflict.Both, want)
	}
	if now, _ := c.GetTwin(ctx, "d1", "m1"); now.Version != 4 {
		t.Errorf("a conflicting edit changed the twin: version %d", now.Version)
	}

	// Re-applied on theirs, it lands, with If-Match on theirs' etag.
	s2, doc, err := conflict.Rebase()
	if err != nil {
		t.Fatal(err)
	}
	if s2.Base.ETag != conflict.Theirs.ETag {
		t.Errorf("rebased session on etag %s, want theirs %s", s2.Base.ETag, conflict.Theirs.ETag)
	}
	e, err = s2.Check(doc)
	if err != nil {
		t.Fatal(err)
	}
	tw, err = s2.Send(ctx, c, e)
	if err != nil || tw.Version != 5 || string(tw.DesiredJSON()) != `{"a":2,"b":{"x":2,"y":3},"c":true}` {
		t.Fatalf("rebased send: %v, twin %+v", err, tw)
	}
}
