package common_test

import (
	"os"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/tui/common"
)

// TestKeysDocumented: docs/tui.md's table of keys is the KeyMap's help,
// row for row, and no key is bound twice.
func TestKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/tui.md")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	seen := map[string]string{}
	for _, b := range common.DefaultKeyMap().Bindings() {
		h := b.Help()
		want = append(want, "| `"+h.Key+"` | "+h.Desc+" |")
		for _, k := range b.Keys() {
			// n and esc answer a dialog, where the other bindings are off.
			if other, dup := seen[k]; dup && h.Desc != "no" && other != "no" {
				t.Errorf("key %q is bound to both %q and %q", k, other, h.Desc)
			}
			seen[k] = h.Desc
		}
	}
	if !strings.Contains(string(doc), strings.Join(want, "\n")) {
		t.Errorf("docs/tui.md's table of keys is not the KeyMap's; want these rows:\n%s", strings.Join(want, "\n"))
	}
}
