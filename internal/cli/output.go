package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"charm.land/lipgloss/v2"
	"go.yaml.in/yaml/v3"
)

// Table is a simple aligned table, as kubectl prints them.
type Table struct {
	header []string
	rows   [][]string
}

// NewTable starts a table with the given column names.
func NewTable(header ...string) *Table { return &Table{header: header} }

// Row adds a row.
func (t *Table) Row(cells ...string) { t.rows = append(t.rows, cells) }

// Write prints the table to w, each column as wide as its widest cell plus
// three spaces. Widths are those seen on a terminal, so cells coloured
// with escape sequences (IOStreams.ColorStatus) line up too.
func (t *Table) Write(w io.Writer) error {
	header := make([]string, len(t.header))
	for i, h := range t.header {
		header[i] = strings.ToUpper(h)
	}
	rows := append([][]string{header}, t.rows...)
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], lipgloss.Width(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-lipgloss.Width(c)+3))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// doneResult is what a command that changes something, and has nothing else
// to show, prints with -o json|yaml: what it did to what.
type doneResult struct {
	Action   string `json:"action"` // "deleted", "restarted"
	DeviceID string `json:"deviceId,omitempty"`
	ModuleID string `json:"moduleId,omitempty"`
}

// done reports a change: a status line on stderr and, with -o json|yaml,
// res on stdout (a table has nothing to show).
func (f *Factory) done(res doneResult, format string, a ...any) error {
	f.status(format, a...)
	if f.outputFormat() == "table" {
		return nil
	}
	return f.Print(res, nil)
}

// Print writes v to stdout in the chosen output format: JSON or YAML of v,
// or, for table, what human writes.
func (f *Factory) Print(v any, human func(w io.Writer) error) error {
	return printAs(f.IO.Out, f.Config().GetString("output"), v, human)
}

// printStreamed prints one item of a stream (a watch) as a JSON line or a
// YAML document when -o asks for one; done is false for the human format,
// which the caller writes itself.
func (f *Factory) printStreamed(v any) (done bool, err error) {
	w := f.IO.Out
	switch f.outputFormat() {
	case "json":
		b, err := json.Marshal(v)
		if err != nil {
			return true, err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return true, err
	case "yaml":
		if _, err := io.WriteString(w, "---\n"); err != nil {
			return true, err
		}
		return true, writeYAML(w, v)
	}
	return false, nil
}

func printAs(w io.Writer, format string, v any, human func(w io.Writer) error) error {
	switch format {
	case "json":
		return writeJSON(w, v)
	case "yaml":
		return writeYAML(w, v)
	}
	if human == nil {
		return writeJSON(w, v)
	}
	return human(w)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeYAML writes v as YAML with the field names and key order of its JSON
// form (JSON is YAML, so the JSON text decodes into ordered nodes).
func writeYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return err
	}
	blockStyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Style&yaml.DoubleQuotedStyle != 0 && n.Tag == "!!str" {
		n.Style = 0 // let the encoder quote only where it must
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}
