package twin

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func benchmarkPatch(b *testing.B, tw *Twin) {
	patches := [][]byte{
		[]byte(`{"interval":5,"thresholds":{"high":30}}`),
		[]byte(`{"interval":6,"thresholds":{"high":31}}`),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		changed, err := tw.PatchDesired(patches[i%2], t1)
		if err != nil || !changed {
			b.Fatal(changed, err)
		}
	}
}

func BenchmarkPatchDesired(b *testing.B) {
	b.Run("small", func(b *testing.B) {
		tw := New("dev", "mod", t0)
		mustPatch(b)(tw.PatchDesired([]byte(`{"interval":1,"mode":"fast","thresholds":{"high":29,"low":5},"tags":["a","b"]}`), t0))
		benchmarkPatch(b, tw)
	})
	b.Run("32KiB", func(b *testing.B) {
		tw := New("dev", "mod", t0)
		var sb strings.Builder
		sb.WriteString(`{"interval":1,"thresholds":{"high":1}`)
		for i := 0; i < 265; i++ {
			fmt.Fprintf(&sb, `,"setting%03d":{"value":"%s","enabled":true}`, i, strings.Repeat("v", 80))
		}
		sb.WriteString("}")
		mustPatch(b)(tw.PatchDesired([]byte(sb.String()), t0))
		if n := len(tw.DesiredJSON()); n < 31*1024 || n > MaxDesiredSize {
			b.Fatalf("desired is %d bytes", n)
		}
		benchmarkPatch(b, tw)
	})
}

func BenchmarkMarshalJSON(b *testing.B) {
	tw := New("dev", "mod", t0)
	mustPatch(b)(tw.ReplaceDesired(docOfSize(b, 30*1024), t1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tw.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalJSON decodes a twin document: "full" is the encoding/json
// decoder (UnmarshalJSON before the fast path), "fast" is UnmarshalJSON.
func BenchmarkUnmarshalJSON(b *testing.B) {
	small := New("bench", "m1", t0)
	mustPatch(b)(small.PatchDesired([]byte(`{"n":12345,"interval":5}`), t1))
	mustPatch(b)(small.PatchReported([]byte(`{"lastDesiredVersion":2,"status":"running"}`), t1))
	big := New("dev", "mod", t0)
	mustPatch(b)(big.ReplaceDesired(docOfSize(b, 30*1024), t1))
	for _, c := range []struct {
		name string
		tw   *Twin
	}{{"small", small}, {"32KiB", big}} {
		doc := []byte(marshal(b, c.tw))
		for _, d := range []struct {
			name   string
			decode func(*Twin, []byte) error
		}{{"full", (*Twin).unmarshalSlow}, {"fast", (*Twin).UnmarshalJSON}} {
			b.Run(c.name+"/"+d.name, func(b *testing.B) {
				b.SetBytes(int64(len(doc)))
				b.ReportAllocs()
				for b.Loop() {
					var tw Twin
					if err := d.decode(&tw, doc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkApply is the hub's share of BenchmarkTwinPatch in the twin
// package: a PATCH body applied to a module twin, the twin encoded for the
// store, its properties for the answer.
func BenchmarkApply(b *testing.B) {
	tw := New("bench", "m1", t0)
	mustPatch(b)(tw.PatchReported([]byte(`{"lastDesiredVersion":2,"status":"running"}`), t1))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		body := fmt.Appendf(nil, `{"properties":{"desired":{"n":%d,"interval":5}}}`, i)
		if _, err := tw.Apply(body, t1.Add(time.Duration(i)), false); err != nil {
			b.Fatal(err)
		}
		if _, err := tw.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
		_ = tw.SectionJSON(Tags)
		_ = tw.PropertiesJSON()
	}
}

// BenchmarkCheckJSON is the hub's strict check of a PATCH body.
func BenchmarkCheckJSON(b *testing.B) {
	body := []byte(`{"properties":{"desired":{"n":12345,"interval":5,"thresholds":{"high":30,"low":[1,2]}}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}
