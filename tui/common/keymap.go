package common

import "charm.land/bubbles/v2/key"

// KeyMap is every key of the UI, in one place: views match messages
// against these bindings (never raw key strings), and the help bar and `?`
// show their help. docs/tui.md's table of keys is made from it.
type KeyMap struct {
	Up       key.Binding
	Down     key.Binding
	PageUp   key.Binding
	PageDown key.Binding
	Home     key.Binding
	End      key.Binding
	Left     key.Binding
	Right    key.Binding

	Select key.Binding
	Back   key.Binding
	Filter key.Binding
	Help   key.Binding
	Quit   key.Binding

	NextTab  key.Binding
	Metadata key.Binding // show $metadata of the key under the cursor
	Edit     key.Binding // edit in place
	External key.Binding // edit in $EDITOR
	Send     key.Binding
	Preview  key.Binding // the merge patch that would be sent
	Reapply  key.Binding // after a conflict: re-apply on theirs
	Discard  key.Binding
	Logs     key.Binding
	Follow   key.Binding
	Restart  key.Binding
	Yes      key.Binding
	No       key.Binding

	SearchNext key.Binding // the next match of a search (logs)
	SearchPrev key.Binding

	Tree        key.Binding // the twin as a tree or as JSON
	Toggle      key.Binding // expand or collapse the node under the cursor
	ExpandAll   key.Binding
	CollapseAll key.Binding
}

// DefaultKeyMap returns outpost's keys.
func DefaultKeyMap() *KeyMap {
	b := func(help string, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return &KeyMap{
		Up:       b("↑/k", "up", "up", "k"),
		Down:     b("↓/j", "down", "down", "j"),
		PageUp:   b("pgup", "page up", "pgup", "ctrl+b"),
		PageDown: b("pgdn", "page down", "pgdown", "ctrl+f"),
		Home:     b("g/home", "first", "home", "g"),
		End:      b("G/end", "last", "end", "G"),
		Left:     b("←/h", "left", "left", "h"),
		Right:    b("→/l", "right", "right", "l"),

		Select: b("enter", "open", "enter"),
		Back:   b("esc", "back", "esc"),
		Filter: b("/", "filter", "/"),
		Help:   b("?", "all keys", "?"),
		Quit:   b("q", "quit", "q", "ctrl+c"),

		NextTab:  b("tab", "next side or tab", "tab"),
		Metadata: b("m", "$metadata", "m"),
		Edit:     b("i", "edit here", "i"),
		External: b("e", "edit in $EDITOR", "e"),
		Send:     b("ctrl+s", "send", "ctrl+s"),
		Preview:  b("ctrl+p", "patch preview", "ctrl+p"),
		Reapply:  b("r", "re-apply on theirs", "r"),
		Discard:  b("d", "discard mine", "d"),
		Logs:     b("L", "logs", "L"),
		Follow:   b("f", "follow", "f"),
		Restart:  b("R", "restart", "R"),
		Yes:      b("y", "yes", "y", "Y"),
		No:       b("n", "no", "n", "N", "esc"),

		SearchNext: b("n", "next match", "n"),
		SearchPrev: b("N", "previous match", "N"),

		Tree:        b("t", "tree/JSON", "t"),
		Toggle:      b("space", "expand/collapse", "space"),
		ExpandAll:   b("E", "expand all", "E"),
		CollapseAll: b("C", "collapse all", "C"),
	}
}

// Bindings returns every binding with help, in the order of the key map,
// for the reference (docs/tui.md).
func (k *KeyMap) Bindings() []key.Binding {
	return []key.Binding{
		k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End, k.Left, k.Right,
		k.Select, k.Back, k.Filter, k.Help, k.Quit,
		k.NextTab, k.Metadata, k.Edit, k.External, k.Send, k.Preview,
		k.Reapply, k.Discard, k.Logs, k.Follow, k.Restart, k.Yes, k.No,
		k.SearchNext, k.SearchPrev,
		k.Tree, k.Toggle, k.ExpandAll, k.CollapseAll,
	}
}

// Moves are the cursor keys, for full help.
func (k *KeyMap) Moves() []key.Binding {
	return []key.Binding{k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End}
}

// Globals are the keys every view has, for full help.
func (k *KeyMap) Globals() []key.Binding {
	return []key.Binding{k.Back, k.Help, k.Quit}
}
