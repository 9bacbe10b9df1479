package twin

import (
	"encoding/json"
	"strings"
	"testing"
)

// meta returns the $metadata node at the dotted path ("" for the root) of a
// section, or nil.
func meta(t *testing.T, tw *Twin, s Section, dotted string) map[string]any {
	t.Helper()
	var sec map[string]any
	if err := json.Unmarshal(tw.SectionJSON(s), &sec); err != nil {
		t.Fatal(err)
	}
	m, _ := sec["$metadata"].(map[string]any)
	if dotted == "" {
		return m
	}
	for _, k := range strings.Split(dotted, ".") {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

func wantMeta(t *testing.T, tw *Twin, s Section, dotted, updated string, version int) {
	t.Helper()
	m := meta(t, tw, s, dotted)
	if m == nil {
		t.Errorf("%s %q: no metadata", s, dotted)
		return
	}
	if got := m["$lastUpdated"]; got != updated {
		t.Errorf("%s %q: $lastUpdated = %v, want %s", s, dotted, got, updated)
	}
	got, has := m["$lastUpdatedVersion"]
	switch {
	case version == 0 && has:
		t.Errorf("%s %q: unexpected $lastUpdatedVersion %v", s, dotted, got)
	case version != 0 && got != float64(version):
		t.Errorf("%s %q: $lastUpdatedVersion = %v, want %d", s, dotted, got, version)
	}
}

func TestDesiredMetadata(t *testing.T) {
	ts0, ts1, ts2, ts3 := formatTime(t0), formatTime(t1), formatTime(t2), formatTime(t3)
	tw := New("d", "m", t0)
	wantMeta(t, tw, Desired, "", ts0, 1)

	mustPatch(t)(tw.PatchDesired([]byte(`{"a":{"b":1,"c":{"x":true}},"d":3,"arr":[{"x":1}]}`), t1))
	if tw.DesiredVersion() != 2 {
		t.Fatalf("$version = %d", tw.DesiredVersion())
	}
	for _, p := range []string{"", "a", "a.b", "a.c", "a.c.x", "d", "arr"} {
		wantMeta(t, tw, Desired, p, ts1, 2)
	}
	// Arrays are leaves: no metadata inside them.
	if m := meta(t, tw, Desired, "arr"); len(m) != 2 {
		t.Errorf("array metadata = %v, want only $lastUpdated and $lastUpdatedVersion", m)
	}

	// A nested change updates the node and its ancestors, not its siblings.
	mustPatch(t)(tw.PatchDesired([]byte(`{"a":{"c":{"x":false}}}`), t2))
	for _, p := range []string{"", "a", "a.c", "a.c.x"} {
		wantMeta(t, tw, Desired, p, ts2, 3)
	}
	for _, p := range []string{"a.b", "d", "arr"} {
		wantMeta(t, tw, Desired, p, ts1, 2)
	}

	// A delete removes the member's metadata and updates its parent.
	mustPatch(t)(tw.PatchDesired([]byte(`{"a":{"c":null}}`), t3))
	if m := meta(t, tw, Desired, "a.c"); m != nil {
		t.Errorf("metadata of deleted a.c remains: %v", m)
	}
	wantMeta(t, tw, Desired, "", ts3, 4)
	wantMeta(t, tw, Desired, "a", ts3, 4)
	wantMeta(t, tw, Desired, "a.b", ts1, 2)
	wantMeta(t, tw, Desired, "d", ts1, 2)

	// A leaf replaced by an object and an object replaced by a leaf.
	mustPatch(t)(tw.PatchDesired([]byte(`{"d":{"e":1},"a":5}`), t1))
	wantMeta(t, tw, Desired, "d", ts1, 5)
	wantMeta(t, tw, Desired, "d.e", ts1, 5)
	wantMeta(t, tw, Desired, "a", ts1, 5)
	if m := meta(t, tw, Desired, "a.b"); m != nil {
		t.Errorf("metadata under a leaf: %v", m)
	}
	wantMeta(t, tw, Desired, "arr", ts1, 2)

	// A patch that changes nothing touches no metadata.
	before := string(tw.SectionJSON(Desired))
	changed, err := tw.PatchDesired([]byte(`{"d":{"e":1},"a":5,"gone":null}`), t3)
	if err != nil || changed {
		t.Fatalf("no-op patch: %v %v", changed, err)
	}
	if after := string(tw.SectionJSON(Desired)); after != before {
		t.Errorf("no-op patch changed metadata")
	}

	// Full section text after a small sequence, to pin the wire shape.
	tw = New("d", "m", t0)
	mustPatch(t)(tw.PatchDesired([]byte(`{"a":{"b":1}}`), t1))
	want := `{"a":{"b":1},"$metadata":{"$lastUpdated":"` + ts1 + `","$lastUpdatedVersion":2,` +
		`"a":{"$lastUpdated":"` + ts1 + `","$lastUpdatedVersion":2,"b":{"$lastUpdated":"` + ts1 + `","$lastUpdatedVersion":2}}},"$version":2}`
	if got := string(tw.SectionJSON(Desired)); got != want {
		t.Errorf("section:\n got %s\nwant %s", got, want)
	}
}

func TestReportedMetadata(t *testing.T) {
	ts0, ts1, ts2 := formatTime(t0), formatTime(t1), formatTime(t2)
	tw := New("d", "m", t0)
	wantMeta(t, tw, Reported, "", ts0, 0)
	mustPatch(t)(tw.PatchReported([]byte(`{"m":{"a":{"status":"running"},"b":{"status":"stopped"}}}`), t1))
	mustPatch(t)(tw.PatchReported([]byte(`{"m":{"a":{"status":"failed"}}}`), t2))
	for _, p := range []string{"", "m", "m.a", "m.a.status"} {
		wantMeta(t, tw, Reported, p, ts2, 0)
	}
	for _, p := range []string{"m.b", "m.b.status"} {
		wantMeta(t, tw, Reported, p, ts1, 0)
	}
	// Desired metadata is untouched by reported writes.
	wantMeta(t, tw, Desired, "", ts0, 1)
}

func TestReplaceKeepsUnchangedMetadata(t *testing.T) {
	ts1, ts2 := formatTime(t1), formatTime(t2)
	tw := New("d", "m", t0)
	mustPatch(t)(tw.PatchDesired([]byte(`{"keep":1,"obj":{"same":"x","change":1,"drop":2},"gone":true}`), t1))
	mustPatch(t)(tw.ReplaceDesired([]byte(`{"keep":1,"obj":{"same":"x","change":2},"new":[1]}`), t2))
	if got := string(tw.DesiredJSON()); got != `{"keep":1,"new":[1],"obj":{"change":2,"same":"x"}}` {
		t.Fatalf("desired = %s", got)
	}
	wantMeta(t, tw, Desired, "", ts2, 3)
	wantMeta(t, tw, Desired, "keep", ts1, 2)
	wantMeta(t, tw, Desired, "obj", ts2, 3)
	wantMeta(t, tw, Desired, "obj.same", ts1, 2)
	wantMeta(t, tw, Desired, "obj.change", ts2, 3)
	wantMeta(t, tw, Desired, "new", ts2, 3)
	for _, p := range []string{"gone", "obj.drop"} {
		if m := meta(t, tw, Desired, p); m != nil {
			t.Errorf("metadata of removed %s remains", p)
		}
	}
}

// TestCachedSizes checks the sizes kept in nodes against the encoded content.
func TestCachedSizes(t *testing.T) {
	tw := New("d", "m", t0)
	mustPatch(t)(tw.PatchDesired([]byte(`{"a\"q":{"b":"\u2028x\u0001"},"c":[1,{"d":null}],"e":1.5e3}`), t1))
	mustPatch(t)(tw.PatchDesired([]byte(`{"a\"q":{"b":null,"z":{}},"c":null}`), t2))
	checkSizes(t, tw.desired)
	if tw.desired.size != len(tw.DesiredJSON()) {
		t.Errorf("root size %d, JSON %d", tw.desired.size, len(tw.DesiredJSON()))
	}
}

func checkSizes(t testing.TB, n *node) {
	t.Helper()
	if got := len(appendContent(nil, n)); got != n.size {
		t.Errorf("node %s: cached size %d, encoded %d", appendContent(nil, n), n.size, got)
	}
	for i, m := range n.members {
		if i > 0 && n.members[i-1].key >= m.key {
			t.Errorf("members not sorted: %q before %q", n.members[i-1].key, m.key)
		}
		if m.klen != quotedLen(m.key) {
			t.Errorf("member %q: klen %d", m.key, m.klen)
		}
		checkSizes(t, m.node)
	}
}
