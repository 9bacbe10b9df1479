package hub

import (
	"fmt"
	"testing"
)

// TestEchoesBounded: what the hub remembers of the twins it sent and the
// uploads wrote stays bounded; once forgotten, a twin counts as not echoed
// (it is sent, which is always safe).
func TestEchoesBounded(t *testing.T) {
	var h Hub
	h.sent("twins/d/m", 7, 7)
	if !h.echoed("twins/d/m", 7, 7) {
		t.Fatal("a twin the device was sent at version 7 is not an echo at 7")
	}
	for i := range maxEchoes {
		h.remember(fmt.Sprintf("twins/d%d/m", i), echo{v: 1, base: 1})
	}
	n := 0
	h.echoes.Range(func(any, any) bool { n++; return true })
	if n > maxEchoes || h.nEchoes.Load() > maxEchoes {
		t.Fatalf("%d echoes remembered (counted %d), at most %d", n, h.nEchoes.Load(), maxEchoes)
	}
	if h.echoed("twins/d/m", 7, 7) {
		t.Fatal("a forgotten twin still counts as an echo")
	}
}
