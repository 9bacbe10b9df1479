// Package twinedit is the logic of editing a twin's tags and desired
// properties as one JSON document, shared by `outpost twin edit` (which
// edits it in $EDITOR) and the TUI (which edits it in its own widget): the
// document shown, its validation with positions (syntax, shape, the twin
// core's rules), the merge patch an edit makes, sending it only with
// If-Match, and the three-way view of a conflict when the twin changed on
// the hub meanwhile. It holds no terminal code.
package twinedit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/twin"
)

// Hub reads and patches twins; *hubclient.Client is one.
type Hub interface {
	GetTwin(ctx context.Context, deviceID, moduleID string) (*twin.Twin, error)
	PatchTwin(ctx context.Context, deviceID, moduleID string, patch []byte, etag string) (*twin.Twin, error)
}

// Document is what an edit shows of tw: {"tags": …, "properties":
// {"desired": …}}, indented by two spaces, with a final newline.
func Document(tw *twin.Twin) []byte {
	var raw bytes.Buffer
	raw.WriteString(`{"tags":`)
	raw.Write(tw.TagsJSON())
	raw.WriteString(`,"properties":{"desired":`)
	raw.Write(tw.DesiredJSON())
	raw.WriteString(`}}`)
	return indent(raw.Bytes())
}

func indent(compact []byte) []byte {
	var b bytes.Buffer
	if err := json.Indent(&b, compact, "", "  "); err != nil {
		panic("twinedit: a twin's own JSON does not indent: " + err.Error())
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// Parse reads an edited {"tags", "properties": {"desired"}} document and
// returns it in compact form, a missing or null section as {}. Its errors
// are *Error.
func Parse(data []byte) ([]byte, error) {
	if err := CheckObject(data); err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, posError(data, err)
	}
	section := func(raw json.RawMessage, path string) (json.RawMessage, error) {
		if raw == nil || string(raw) == "null" {
			return json.RawMessage(`{}`), nil
		}
		if err := CheckObject(raw); err != nil {
			return nil, placed(data, path, path+": want a JSON object")
		}
		return raw, nil
	}
	var props map[string]json.RawMessage
	for k, v := range doc {
		switch k {
		case "tags":
		case "properties":
			if string(v) != "null" {
				if err := json.Unmarshal(v, &props); err != nil {
					return nil, placed(data, "properties", "properties: want a JSON object holding desired")
				}
			}
		default:
			return nil, placed(data, "["+strconv.Quote(k)+"]", fmt.Sprintf("unknown member %q: the document holds tags and properties.desired only", k))
		}
	}
	for k := range props {
		if k != "desired" {
			return nil, placed(data, "properties."+k, fmt.Sprintf("properties.%s: only desired can be edited here (reported properties are the module's)", k))
		}
	}
	tags, err := section(doc["tags"], "tags")
	if err != nil {
		return nil, err
	}
	desired, err := section(props["desired"], "properties.desired")
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"tags":       tags,
		"properties": map[string]json.RawMessage{"desired": desired},
	})
}

// placed is an *Error about the member at path of data, with its place
// when it can be found.
func placed(data []byte, path, msg string) *Error {
	e := &Error{Path: path, Msg: msg}
	if off, ok := locate(data, path); ok {
		e.Line, e.Col = LineCol(data, off)
	}
	return e
}

// Session is one edit of a twin: the twin it started from and the document
// the editor starts with.
type Session struct {
	Base *twin.Twin // the twin as read; its etag goes in If-Match
	Doc  []byte     // Document(Base)
	from []byte     // Doc parsed
}

// New starts an edit of base.
func New(base *twin.Twin) *Session {
	doc := Document(base)
	from, err := Parse(doc)
	if err != nil {
		panic("twinedit: a twin's own document does not parse: " + err.Error())
	}
	return &Session{Base: base, Doc: doc, from: from}
}

// Start reads the twin from the hub and starts an edit of it.
func Start(ctx context.Context, hub Hub, deviceID, moduleID string) (*Session, error) {
	tw, err := hub.GetTwin(ctx, deviceID, moduleID)
	if err != nil {
		return nil, err
	}
	return New(tw), nil
}

// Edit is a checked edit: the document as edited and the twin patch it
// makes ({"tags": …, "properties": {"desired": …}} with null for removed
// members); Patch is nil when the edit changes nothing.
type Edit struct {
	Doc   []byte
	Patch []byte
}

// Check validates an edited document and computes its patch: the JSON,
// the document's shape, then the twin's rules (key names, depth, sizes,
// numbers) as the hub applies them, so the hub will not refuse it for its
// content. Its errors are *Error, with line:col when the place is known.
func (s *Session) Check(edited []byte) (*Edit, error) {
	e := &Edit{Doc: edited}
	if bytes.Equal(edited, s.Doc) {
		return e, nil
	}
	to, err := Parse(edited)
	if err != nil {
		return nil, err
	}
	patch, err := twin.Diff(s.from, to)
	if err != nil {
		return nil, &Error{Msg: err.Error()}
	}
	if string(patch) == "{}" {
		return e, nil
	}
	if _, err := s.Base.Clone().Apply(patch, time.Now(), false); err != nil {
		var te *twin.Error
		if errors.As(err, &te) && te.Path != "" {
			return nil, placed(edited, te.Path, te.Error())
		}
		return nil, &Error{Msg: err.Error()}
	}
	e.Patch = patch
	return e, nil
}

// Send sends e's patch with If-Match on the base twin's etag and returns
// the twin the hub now holds. When the twin changed on the hub meanwhile
// (412), the error is a *Conflict. An edit without a patch sends nothing
// and returns the base twin.
func (s *Session) Send(ctx context.Context, hub Hub, e *Edit) (*twin.Twin, error) {
	if e.Patch == nil {
		return s.Base, nil
	}
	etag := s.Base.ETag
	if etag == "" {
		return nil, errors.New("the twin has no etag: nothing is sent without If-Match")
	}
	tw, err := hub.PatchTwin(ctx, s.Base.DeviceID, s.Base.ModuleID, e.Patch, etag)
	if errors.Is(err, errdefs.ErrPrecondition) {
		c := &Conflict{Err: err, Base: s.Base, BaseDoc: s.Doc, Yours: e.Doc, YourPatch: e.Patch}
		cur, gerr := hub.GetTwin(ctx, s.Base.DeviceID, s.Base.ModuleID)
		if gerr != nil {
			c.TheirsErr = gerr
			return nil, c
		}
		if err := c.compare(cur); err != nil {
			return nil, fmt.Errorf("%w; comparing the versions: %v", c, err)
		}
		return nil, c
	}
	return tw, err
}

// Conflict is an edit that lost a race: the twin changed on the hub after
// it was read. Nothing was sent. It holds the three versions: base (what
// the edit started from), theirs (the hub's now) and yours.
type Conflict struct {
	Err        error      // the hub's answer (412); errors.Is(c, ErrPrecondition)
	Base       *twin.Twin // the twin the edit started from
	BaseDoc    []byte     // Document(Base)
	Theirs     *twin.Twin // the hub's twin now; nil if it could not be read
	TheirsDoc  []byte     // Document(Theirs)
	TheirsErr  error      // why Theirs could not be read
	Yours      []byte     // the edited document, as edited
	YourPatch  []byte     // the patch of your edit from base
	TheirPatch []byte     // the patch of the hub's changes from base
	// Both lists the JSON paths (properties.desired.a, tags["x.y"]) that
	// both patches change, sorted: where re-applying yours on theirs
	// overwrites their change.
	Both []string
}

func (c *Conflict) Error() string {
	return "the twin changed on the hub since it was read; nothing was sent: " + c.Err.Error()
}

func (c *Conflict) Unwrap() error { return c.Err }

func (c *Conflict) compare(theirs *twin.Twin) error {
	c.Theirs, c.TheirsDoc = theirs, Document(theirs)
	baseC, err := Parse(c.BaseDoc)
	if err != nil {
		return err
	}
	theirsC, err := Parse(c.TheirsDoc)
	if err != nil {
		return err
	}
	if c.TheirPatch, err = twin.Diff(baseC, theirsC); err != nil {
		return err
	}
	var mine, their map[string]any
	if err := json.Unmarshal(c.YourPatch, &mine); err != nil {
		return err
	}
	if err := json.Unmarshal(c.TheirPatch, &their); err != nil {
		return err
	}
	c.Both = overlap(mine, their, "", nil)
	slices.Sort(c.Both)
	return nil
}

// overlap appends the paths below prefix that both merge patches a and b
// change.
func overlap(a, b map[string]any, prefix string, out []string) []string {
	for k, av := range a {
		bv, ok := b[k]
		if !ok {
			continue
		}
		p := joinPath(prefix, k)
		am, aObj := av.(map[string]any)
		bm, bObj := bv.(map[string]any)
		if aObj && bObj {
			out = overlap(am, bm, p, out)
			continue
		}
		out = append(out, p)
	}
	return out
}

// joinPath writes paths as the twin core does: a.b, or a["x.y"] for a name
// that is not plain.
func joinPath(prefix, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return prefix + "[" + strconv.Quote(key) + "]"
	case prefix == "":
		return key
	}
	return prefix + "." + key
}

// Rebase re-applies your patch on theirs: it returns a session on the
// hub's twin now and the document to edit or send from it. Where both
// changed the same member, yours wins (Both lists those places).
func (c *Conflict) Rebase() (*Session, []byte, error) {
	if c.Theirs == nil {
		return nil, nil, fmt.Errorf("the hub's twin could not be read: %w", c.TheirsErr)
	}
	s := New(c.Theirs)
	doc, err := twin.MergePatch(s.from, c.YourPatch)
	if err != nil {
		return nil, nil, err
	}
	return s, indent(doc), nil
}
