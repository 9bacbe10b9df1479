package cli

import (
	"bytes"
	"io"
	"os"

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
