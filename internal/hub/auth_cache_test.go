package hub

import (
	"testing"
	"time"
)

// TestTokenCache checks when a policy token checked once counts as
// verified again: same keys and before its deadline only.
func TestTokenCache(t *testing.T) {
	var c tokenCache
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pol := &Policy{KeyName: "owner", PrimaryKey: "p1", SecondaryKey: "s1"}
	if c.has("tok", pol, t0) {
		t.Fatal("an unchecked token counts as verified")
	}
	c.add("tok", pol, t0.Add(time.Hour))
	if !c.has("tok", pol, t0.Add(time.Hour)) {
		t.Fatal("a checked token does not count as verified before its deadline")
	}
	if c.has("tok", pol, t0.Add(time.Hour+time.Second)) {
		t.Fatal("a token counts as verified after its deadline")
	}
	c.add("tok", pol, t0.Add(time.Hour))
	for _, rotated := range []*Policy{
		{KeyName: "owner", PrimaryKey: "p2", SecondaryKey: "p1"},
		{KeyName: "owner", PrimaryKey: "p1", SecondaryKey: "s2"},
	} {
		if c.has("tok", rotated, t0) {
			t.Fatalf("a token checked against %+v counts as verified for %+v", pol, rotated)
		}
	}
	if c.has("tok", pol, t0) {
		t.Fatal("a token dropped after a key change came back")
	}
	for i := range maxVerifiedTokens + 1 {
		c.add(string(rune('a'+i%26))+time.Duration(i).String(), pol, t0.Add(time.Hour))
	}
	if len(c.entries) > maxVerifiedTokens {
		t.Fatalf("%d tokens kept, more than %d", len(c.entries), maxVerifiedTokens)
	}
}
