package twin

import (
	"fmt"
	"strings"
	"testing"
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
