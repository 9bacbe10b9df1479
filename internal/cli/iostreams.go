package cli

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"

	"charm.land/lipgloss/v2"
	"golang.org/x/term"
)

// IOStreams carries the command's standard streams. Data goes to Out,
// progress and status to ErrOut; colour only when Out is a terminal.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	outTTY  bool
	errTTY  bool
	noColor bool
	width   int // columns of Out, when set (SetWidth); else asked of the terminal

	stylesOnce sync.Once
	styles     map[string]lipgloss.Style // status word → its style
}

// System returns the process's streams.
func System() *IOStreams {
	return &IOStreams{
		In:      os.Stdin,
		Out:     os.Stdout,
		ErrOut:  os.Stderr,
		outTTY:  term.IsTerminal(int(os.Stdout.Fd())),
		errTTY:  term.IsTerminal(int(os.Stderr.Fd())),
		noColor: os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb",
	}
}

// TestIO returns streams backed by buffers, as in a pipe (no terminal).
func TestIO() (ios *IOStreams, in, out, errOut *bytes.Buffer) {
	in, out, errOut = &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut, noColor: true}, in, out, errOut
}

// IsTerminal reports whether Out is a terminal.
func (s *IOStreams) IsTerminal() bool { return s.outTTY }

// IsErrTerminal reports whether ErrOut is a terminal (progress bars go there).
func (s *IOStreams) IsErrTerminal() bool { return s.errTTY }

// Color reports whether output may be coloured.
func (s *IOStreams) Color() bool { return s.outTTY && !s.noColor }

// SetNoColor turns colour off (--no-color).
func (s *IOStreams) SetNoColor() { s.noColor = true }

// SetTerminal overrides terminal detection; for tests.
func (s *IOStreams) SetTerminal(out, err bool) { s.outTTY, s.errTTY = out, err }

// statusColors are the colours of status words in tables: green for what
// is as it should be, red for what is broken or off, yellow for what is in
// between (waiting, stopped, not connected). ANSI's basic colours, which
// every terminal shows with its own theme: written as they are, without
// asking the terminal anything.
var statusColors = map[string]string{
	"running": "2", "enabled": "2", "connected": "2", "healthy": "2",
	"failed": "1", "unhealthy": "1", "disabled": "1", "dead": "1",
	"backoff": "3", "stopped": "3", "disconnected": "3",
}

// ColorStatus colours a table cell that starts with a status word
// ("running", "failed (exit 3)") when output may be coloured; other cells,
// and every cell when it may not, come back as they are.
func (s *IOStreams) ColorStatus(cell string) string {
	if !s.Color() {
		return cell
	}
	s.stylesOnce.Do(func() {
		s.styles = make(map[string]lipgloss.Style, len(statusColors))
		for word, c := range statusColors {
			s.styles[word] = lipgloss.NewStyle().Foreground(lipgloss.Color(c))
		}
	})
	word, _, _ := strings.Cut(cell, " ")
	if st, ok := s.styles[strings.ToLower(word)]; ok {
		return st.Render(cell)
	}
	return cell
}

// readInput reads file, or standard input for "-"; name is what to call it
// in messages ("stdin" for "-").
func (f *Factory) readInput(file string) (data []byte, name string, err error) {
	if file == "-" {
		data, err = io.ReadAll(f.IO.In)
		return data, "stdin", err
	}
	data, err = os.ReadFile(file)
	return data, file, err
}
