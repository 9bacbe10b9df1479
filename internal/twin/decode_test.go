package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The full decoder (unmarshalSlow) is the oracle of the fast one: whatever
// decodeFast accepts, unmarshalSlow must accept with the same twin, node by
// node (content, metadata, cached sizes).

// sameAsFull checks data through both decoders. It returns whether the fast
// decoder took it.
func sameAsFull(t testing.TB, data []byte) bool {
	t.Helper()
	var fast Twin
	err := decodeFast(data, &fast)
	if err != nil {
		if !errors.Is(err, errSlow) {
			t.Fatalf("decodeFast: %v, want errSlow or nil", err)
		}
		return false
	}
	var full Twin
	if err := full.unmarshalSlow(data); err != nil {
		t.Fatalf("fast decoder accepted what the full one refuses (%v):\n%s", err, data)
	}
	if diff := twinDiff(&fast, &full); diff != "" {
		t.Fatalf("fast and full decoders differ: %s\n%s", diff, data)
	}
	return true
}

// twinDiff says how a differs from b, or "".
func twinDiff(a, b *Twin) string {
	if a.DeviceID != b.DeviceID || a.ModuleID != b.ModuleID || a.ETag != b.ETag || a.Version != b.Version || a.Status != b.Status {
		return fmt.Sprintf("fields %q %q %q %d %q vs %q %q %q %d %q", a.DeviceID, a.ModuleID, a.ETag, a.Version, a.Status,
			b.DeviceID, b.ModuleID, b.ETag, b.Version, b.Status)
	}
	if a.desiredVersion != b.desiredVersion || a.reportedVersion != b.reportedVersion {
		return fmt.Sprintf("section versions %d %d vs %d %d", a.desiredVersion, a.reportedVersion, b.desiredVersion, b.reportedVersion)
	}
	for _, s := range []Section{Tags, Desired, Reported} {
		if d := nodeDiff(a.root(s), b.root(s), s.path()); d != "" {
			return d
		}
	}
	return ""
}

func nodeDiff(a, b *node, at string) string {
	switch {
	case a.isObject() != b.isObject():
		return at + ": object vs leaf"
	case !bytes.Equal(a.raw, b.raw):
		return fmt.Sprintf("%s: %s vs %s", at, a.raw, b.raw)
	case a.updated != b.updated || a.version != b.version:
		return fmt.Sprintf("%s: metadata %q %d vs %q %d", at, a.updated, a.version, b.updated, b.version)
	case a.size != b.size:
		return fmt.Sprintf("%s: size %d vs %d", at, a.size, b.size)
	case len(a.members) != len(b.members):
		return fmt.Sprintf("%s: %d members vs %d", at, len(a.members), len(b.members))
	}
	for i, m := range a.members {
		o := b.members[i]
		if m.key != o.key || m.klen != o.klen {
			return fmt.Sprintf("%s: member %q (%d) vs %q (%d)", at, m.key, m.klen, o.key, o.klen)
		}
		if d := nodeDiff(m.node, o.node, at+"."+m.key); d != "" {
			return d
		}
	}
	return ""
}

// decodeFixtures are twin documents as the hub stores and answers them, and
// as IoT Hub writes them.
func decodeFixtures(t testing.TB) [][]byte {
	var docs [][]byte
	add := func(tw *Twin) {
		b, err := tw.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	add(New("dev", "mod", t0))
	add(New("dev", "", t0))
	tw := New("dev:1", "mod$x", t0)
	for i, p := range []string{
		`{"interval":5,"thresholds":{"high":30,"low":{"a":[1,2,{"z":1,"b":[{}]}]}}}`,
		`{"big":4503599627370495,"bigf":123456789012345678901234567890.0,"f":1.50,"e":1E+3,"neg":-0.0}`,
		`{"s":"tab\t quote\" back\\ nl\n <>& \u2028 é 😀 \u0001","arr":[1,"x",null,{"k":[true,false]}]}`,
		`{"a\"q":{"b":"\u2028x\u0001"},"c":[1,{"d":null}],"e":1.5e3,"ü":{"ß":"\ud83d\ude00"}}`,
		`{"obj":{"deep":{"er":{}}},"t":true,"n":false,"thresholds":{"high":null}}`,
	} {
		at := t0.Add(time.Duration(i+1) * time.Second)
		mustPatch(t)(tw.PatchDesired([]byte(p), at))
		mustPatch(t)(tw.PatchReported([]byte(p), at))
		add(tw)
	}
	mustPatch(t)(tw.PatchTags([]byte(`{"site":{"building":"43","floor":1},"l":["a",{"y":1,"x":2}]}`), t3))
	add(tw)
	var deep strings.Builder
	for i := range MaxDepth {
		fmt.Fprintf(&deep, `{"k%d":`, i)
	}
	deep.WriteString(`[1]` + strings.Repeat("}", MaxDepth))
	mustPatch(t)(tw.PatchDesired([]byte(deep.String()), t3))
	add(tw)
	big := New("d", "m", t0)
	mustPatch(t)(big.ReplaceDesired(docOfSize(t, 30*1024), t1))
	add(big)

	// Indented, as a person or another tool writes it.
	n := len(docs)
	for _, d := range docs[:n] {
		var buf bytes.Buffer
		if err := json.Indent(&buf, d, "", "\t"); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, buf.Bytes())
	}
	docs = append(docs,
		// IoT Hub's answer: more members, no metadata in reported.
		[]byte(`{"deviceId":"devA","etag":"AAAAAAAAAAc=","status":"enabled","connectionState":"Connected","version":7,
		"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"capabilities":{"iotEdge":false},
		"tags":{"deploymentLocation":{"building":"43","floor":"1"}},
		"properties":{"desired":{"telemetryConfig":{"sendFrequency":"5m"},"$metadata":{"$lastUpdated":"2026-01-01T00:00:00Z","$lastUpdatedVersion":5},"$version":5},
		"reported":{"telemetryConfig":{"sendFrequency":"5m","status":"success"},"batteryLevel":55,"$version":4}}}`),
		// Keys out of order, escapes, metadata partly missing.
		[]byte(`{"moduleId":"m","deviceId":"d\u0041","version":3,"properties":{"reported":{"z":1,"a":{"c":2,"b":[{"y":1,"x":"\/"}]},
		"$metadata":{"$lastUpdated":"2026-01-02T00:00:00Z","a":{"b":{"$lastUpdated":"x"}}}},
		"desired":{"$version":9,"b":{"c":{"d":1}},"a":2,"$metadata":{"b":{"$lastUpdatedVersion":3,"c":{}}}}}}`),
		[]byte(`{}`),
		[]byte(`{"tags":null,"properties":null,"etag":null,"version":null}`),
		[]byte(`{"properties":{"desired":null,"reported":{},"other":[1,{"a":"\ud800"}]}}`),
	)
	return docs
}

func TestFastDecoderMatchesFull(t *testing.T) {
	for _, d := range decodeFixtures(t) {
		if !sameAsFull(t, d) {
			t.Errorf("fast decoder refused a valid twin:\n%s", d)
		}
	}
	// What the full decoder refuses, and what it reads in ways the fast one
	// leaves to it.
	for _, d := range []string{
		`[]`, `null`, ``, `{"version":"x"}`, `{"version":1.0}`, `{"tags":[]}`, `{"tags":{"$x":1}}`, `{"tags":{"a":null}}`,
		`{"properties":{"desired":{"a.b":1}}}`, `{"properties":{"desired":{"$version":-1}}}`,
		`{"properties":{"desired":{"$metadata":[]}}}`, `{"properties":{"desired":{"$other":1}}}`,
		`{"properties":{"desired":{"a":1,"$metadata":{"b":{}}}}}`, `{"properties":{"desired":{"a":1,"$metadata":{"a":{"c":{}}}}}}`,
		`{"properties":{"desired":{"a":1,"$metadata":{"a":{"$lastUpdated":1}}}}}`,
		`{"properties":{"reported":{"a":"` + strings.Repeat("x", MaxStringSize+1) + `"}}}`,
		`{"tags":` + string(docOfSize(t, MaxTagsSize+1)) + `}`,
		`{"deviceId":"a","deviceId":"b"}`, `{"DeviceId":"a"}`, `{"deviceId":"\ud800"}`, "{\"deviceId\":\"\xff\"}",
		`{"tags":{"a":1,"a":2}}`, `{"tags":{"a":[{"b":1,"b":1}]}}`, `{} x`, `{"x":[1,]}`,
		`{"properties":{"desired":{"$metadata":{},"a":1}}}`,
		`{"properties":{"reported":{"a":1,"$metadata":{"$lastUpdatedVersion":1}}}}`,
	} {
		if sameAsFull(t, []byte(d)) {
			t.Errorf("fast decoder took %s", d)
		}
	}
}

// TestFastDecoderGenerated compares the two decoders on generated documents:
// random content and metadata, keys in any order, white space, escapes.
func TestFastDecoderGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 3))
	took := 0
	for range 3000 {
		g := docGen{r: r}
		if sameAsFull(t, g.twin()) {
			took++
		}
	}
	t.Logf("the fast decoder took %d of 3000", took)
	if took < 1000 {
		t.Errorf("the fast decoder took %d of 3000 generated twins", took)
	}
}

// docGen writes random twin documents.
type docGen struct {
	r *rand.Rand
	b []byte
}

func (g *docGen) ws() {
	if g.r.IntN(8) == 0 {
		g.b = append(g.b, " \n\t\r"[g.r.IntN(4)])
	}
}

var genKeys = []string{"a", "b", "zz", "a\"q", "é", "\u2028", "k y", "x.y", "$v", "A", "tab\t", "ü", "\\"}
var genStrings = []string{"", "x", "\\u00e9", "\\ud83d\\ude00", "\\\"", "<>&", "\u2028", "\\/", "\\n", "é", "\\ud800", "\\u0000"}
var genNumbers = []string{"0", "-0", "1", "1.50", "1e3", "1E+3", "-2.5e-3", "4503599627370495", "4503599627370496", "12345678901234567890", "1e400"}

func (g *docGen) str(s string) {
	g.b = append(g.b, '"')
	g.b = append(g.b, s...)
	g.b = append(g.b, '"')
}

func (g *docGen) key() string {
	if g.r.IntN(30) == 0 {
		return genKeys[g.r.IntN(len(genKeys))]
	}
	return string(rune('a' + g.r.IntN(6)))
}

// value writes a content value; depth counts down.
func (g *docGen) value(depth int, inArray bool) {
	g.ws()
	switch n := g.r.IntN(10); {
	case n < 3 && depth > 0:
		g.object(depth-1, inArray)
	case n < 4 && depth > 0:
		g.b = append(g.b, '[')
		for i := range g.r.IntN(4) {
			if i > 0 {
				g.b = append(g.b, ',')
			}
			g.value(depth-1, true)
		}
		g.b = append(g.b, ']')
	case n < 6:
		g.str(genStrings[g.r.IntN(len(genStrings))])
	case n < 8:
		g.b = append(g.b, genNumbers[g.r.IntN(len(genNumbers))]...)
	case n < 9:
		g.b = append(g.b, []string{"true", "false"}[g.r.IntN(2)]...)
	default:
		if g.r.IntN(10) == 0 || inArray {
			g.b = append(g.b, "null"...)
		} else {
			g.b = append(g.b, "true"...)
		}
	}
	g.ws()
}

// object writes an object of random members; it returns their keys.
func (g *docGen) object(depth int, inArray bool) []string {
	g.b = append(g.b, '{')
	var keys []string
	for i := range g.r.IntN(5) {
		if i > 0 {
			g.b = append(g.b, ',')
		}
		k := g.key()
		keys = append(keys, k)
		g.ws()
		g.str(k)
		g.ws()
		g.b = append(g.b, ':')
		g.value(depth, inArray)
	}
	g.b = append(g.b, '}')
	return keys
}

// section writes a section: content, then maybe $metadata for some of it,
// and $version.
func (g *docGen) section(withMeta bool) {
	g.b = append(g.b, '{')
	start := len(g.b)
	for i := range g.r.IntN(5) {
		if i > 0 {
			g.b = append(g.b, ',')
		}
		g.str(g.key())
		g.b = append(g.b, ':')
		g.value(3, false)
	}
	content := append([]byte{'{'}, g.b[start:]...)
	content = append(content, '}')
	if withMeta && g.r.IntN(5) > 0 {
		if len(g.b) > start {
			g.b = append(g.b, ',')
		}
		g.b = append(g.b, `"$metadata":`...)
		var v any
		if decodeErr := json.Unmarshal(content, &v); decodeErr == nil {
			g.meta(v)
		} else {
			g.b = append(g.b, "{}"...)
		}
	}
	if withMeta && g.r.IntN(3) > 0 {
		if len(g.b) > start {
			g.b = append(g.b, ',')
		}
		g.b = append(g.b, `"$version":`...)
		g.b = strconv.AppendInt(g.b, int64(g.r.IntN(20))-1, 10)
	}
	g.b = append(g.b, '}')
}

var genTimes = []string{"2026-01-01T00:00:00.0000000Z", "2026-01-02T00:00:00.0000000Z", "x", ""}

// meta writes metadata for the content v, some of it missing.
func (g *docGen) meta(v any) {
	g.b = append(g.b, '{')
	n := 0
	sep := func() {
		if n > 0 {
			g.b = append(g.b, ',')
		}
		n++
	}
	if g.r.IntN(4) > 0 {
		sep()
		g.b = append(g.b, `"$lastUpdated":`...)
		g.str(genTimes[g.r.IntN(len(genTimes))])
	}
	if g.r.IntN(3) > 0 {
		sep()
		g.b = append(g.b, `"$lastUpdatedVersion":`...)
		g.b = strconv.AppendInt(g.b, int64(g.r.IntN(10)), 10)
	}
	if obj, ok := v.(map[string]any); ok {
		for k, c := range obj {
			if g.r.IntN(6) == 0 {
				continue
			}
			sep()
			g.b = strconv.AppendQuote(g.b, k)
			g.b = append(g.b, ':')
			g.meta(c)
		}
	}
	g.b = append(g.b, '}')
}

func (g *docGen) twin() []byte {
	g.b = append(g.b[:0], '{')
	members := []func(){
		func() { g.b = append(g.b, `"deviceId":"dev"`...) },
		func() { g.b = append(g.b, `"moduleId":"m\u0031"`...) },
		func() { g.b = append(g.b, `"etag":"AAAAAAAAAAU="`...) },
		func() { g.b = append(g.b, `"version":`...); g.b = strconv.AppendInt(g.b, int64(g.r.IntN(9)), 10) },
		func() { g.b = append(g.b, `"status":"enabled"`...) },
		func() { g.b = append(g.b, `"tags":`...); g.section(false) },
		func() {
			g.b = append(g.b, `"properties":{"desired":`...)
			g.section(true)
			g.b = append(g.b, `,"reported":`...)
			g.section(true)
			g.b = append(g.b, '}')
		},
		func() { g.b = append(g.b, `"connectionState":"Disconnected","other":[{"a":1,"a":2},"\ud800"]`...) },
	}
	g.r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	for i, m := range members[:1+g.r.IntN(len(members))] {
		if i > 0 {
			g.b = append(g.b, ',')
		}
		g.ws()
		m()
		g.ws()
	}
	g.b = append(g.b, '}')
	return bytes.Clone(g.b)
}

// FuzzDecodeTwinFast checks the fast decoder against the full one: what it
// accepts, the full decoder accepts as the same twin. It cannot fail
// falsely: the full decoder defines the result.
func FuzzDecodeTwinFast(f *testing.F) {
	for _, d := range decodeFixtures(f) {
		f.Add(d)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		g := docGen{r: r}
		f.Add(g.twin())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsFull(t, data)
		// And UnmarshalJSON, whichever decoder answers, never panics and
		// errs only with *Error.
		var tw Twin
		if err := tw.UnmarshalJSON(data); err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
		}
	})
}

// sameValueAsFull checks data through decodeValueFast and decodeAtSlow; it
// returns whether the fast decoder took it.
func sameValueAsFull(t testing.TB, data []byte) bool {
	t.Helper()
	fast, err := decodeValueFast(data)
	if err != nil {
		if !errors.Is(err, errSlow) {
			t.Fatalf("decodeValueFast: %v, want errSlow or nil", err)
		}
		return false
	}
	full, err := decodeAtSlow(data, nil)
	if err != nil {
		t.Fatalf("fast decoder accepted what the full one refuses (%v):\n%s", err, data)
	}
	if !reflect.DeepEqual(fast, full) {
		t.Fatalf("fast and full decoders differ:\n%#v\n%#v\n%s", fast, full, data)
	}
	return true
}

func TestFastValueDecoderMatchesFull(t *testing.T) {
	// It takes all that the full decoder takes (nesting up to 512).
	complete := func(d []byte) {
		t.Helper()
		if _, err := decodeAtSlow(d, nil); !sameValueAsFull(t, d) && err == nil {
			t.Errorf("fast decoder refused what the full one takes:\n%s", d)
		}
	}
	for _, d := range decodeFixtures(t) {
		complete(d)
	}
	for _, d := range []string{`[]`, `[1, "a" ,{}]`, `null`, ` true `, `-0.5e+7`, `"\ud83d\ude00\/"`, `{"a":{"b":[{}]}}`} {
		if !sameValueAsFull(t, []byte(d)) {
			t.Errorf("fast decoder refused %s", d)
		}
	}
	for _, d := range []string{``, ` `, `{"a":1,"a":2}`, `"\ud800"`, "\"\xff\"", `[1,]`, `{} {}`, `01`, `1.`, `tru`, `{"a"}`,
		strings.Repeat("[", 600) + strings.Repeat("]", 600)} {
		if sameValueAsFull(t, []byte(d)) {
			t.Errorf("fast decoder took %q", d)
		}
	}
	r := rand.New(rand.NewPCG(7, 14))
	for range 3000 {
		g := docGen{r: r}
		complete(g.twin())
	}
}

// FuzzDecodeValueFast checks decodeValueFast against encoding/json and the
// strict scanner, which define the result.
func FuzzDecodeValueFast(f *testing.F) {
	for _, d := range decodeFixtures(f) {
		f.Add(d)
	}
	for _, s := range []string{`{"a":1,"a":2}`, `"\ud800"`, "\"\xff\"", `[1,[2,{"x":null}]]`, `-0.5e+7`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameValueAsFull(t, data)
	})
}

func TestFormatTimeMatchesFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	zones := []*time.Location{time.UTC, time.FixedZone("e", 5*3600+1800), time.FixedZone("w", -11*3600)}
	times := []time.Time{{}, time.Unix(0, 0), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), t0}
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(400e9)-62e9, r.Int64N(1e9)).In(zones[r.IntN(len(zones))]))
	}
	for _, tm := range times {
		if got, want := formatTime(tm), tm.UTC().Format(TimeLayout); got != want {
			t.Fatalf("formatTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

// TestEncodersAllocateOnce checks that the buffers the encoders allocate
// hold what they write: one allocation each, never a growth.
func TestEncodersAllocateOnce(t *testing.T) {
	for _, d := range decodeFixtures(t) {
		var tw Twin
		if err := tw.UnmarshalJSON(d); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			f    func()
		}{
			{"MarshalJSON", func() { _, _ = tw.MarshalJSON() }},
			{"PropertiesJSON", func() { tw.PropertiesJSON() }},
			{"SectionJSON(Desired)", func() { tw.SectionJSON(Desired) }},
			{"SectionJSON(Reported)", func() { tw.SectionJSON(Reported) }},
			{"SectionJSON(Tags)", func() { tw.SectionJSON(Tags) }},
			{"DesiredJSON", func() { tw.DesiredJSON() }},
		} {
			if n := testing.AllocsPerRun(5, c.f); n > 1 {
				t.Errorf("%s: %v allocations, want at most 1\n%s", c.name, n, d)
			}
		}
	}
}

// sameCheckAsFull checks data through checkFast and checkJSONSlow.
func sameCheckAsFull(t testing.TB, data []byte) {
	t.Helper()
	fast, full := checkFast(data), checkJSONSlow(data)
	if fast && full != nil {
		t.Fatalf("checkFast accepted what checkJSONSlow refuses (%v):\n%s", full, data)
	}
	// It refuses only nesting past maxSkipDepth of what the full one takes.
	if !fast && full == nil && bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) <= maxSkipDepth {
		t.Fatalf("checkFast refused what checkJSONSlow accepts:\n%s", data)
	}
}

func TestCheckFastMatchesFull(t *testing.T) {
	for _, d := range decodeFixtures(t) {
		sameCheckAsFull(t, d)
	}
	many := `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9`
	for _, d := range []string{``, ` `, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `"\ud800"`, "\"\xff\"", `[1,]`, `{} {}`, `01`, `1.`,
		`tru`, `{"a"}`, many + `}`, many + `,"k3":1}`, `[{"a":[{"b":1,"b":2}]}]`, `{"a":{"b":1},"c":{"b":1}}`} {
		sameCheckAsFull(t, []byte(d))
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		g := docGen{r: r}
		sameCheckAsFull(t, g.twin())
	}
}

// FuzzCheckFast checks checkFast against checkJSONSlow.
func FuzzCheckFast(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `"\ud800"`, "\"\xff\"", `[1,[2,{"x":null}]]`, `{"a":1,"\u0061":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameCheckAsFull(t, data)
	})
}
