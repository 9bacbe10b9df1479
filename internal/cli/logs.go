package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"charm.land/lipgloss/v2"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

type logsOptions struct {
	Module    string // "" with All
	All       bool
	Follow    bool
	Tail      int
	SinceText string
	Since     time.Time
}

func logsRun(ctx context.Context, f *Factory, opts *logsOptions) error {
	mc := f.MgmtClient()
	what := opts.Module
	if opts.All {
		what = "--all"
	}
	if opts.Follow {
		var mods []string
		if !opts.All {
			mods = []string{opts.Module}
		}
		p := newLogPrinter(f.IO, opts.All)
		if opts.All { // names aligned from the first line on
			if ms, err := mc.Modules(ctx); err == nil {
				for _, m := range ms {
					p.width = max(p.width, len(m.Name))
				}
			}
		}
		err := mc.Follow(ctx, mgmtclient.FollowOptions{Modules: mods, Tail: opts.Tail, Since: opts.Since}, p.event)
		if err != nil {
			return fmt.Errorf("logs %s: %w", what, err)
		}
		return nil
	}
	lo := mgmtclient.LogOptions{Tail: opts.Tail, Since: opts.Since}
	if !opts.All {
		rc, err := mc.Logs(ctx, opts.Module, lo)
		if err != nil {
			return fmt.Errorf("logs %s: %w", opts.Module, err)
		}
		defer rc.Close()
		if _, err := io.Copy(f.IO.Out, rc); err != nil && ctx.Err() == nil {
			return fmt.Errorf("logs %s: %w", opts.Module, err)
		}
		return nil
	}
	mods, err := mc.Modules(ctx)
	if err != nil {
		return fmt.Errorf("logs --all: %w", err)
	}
	p := newLogPrinter(f.IO, true)
	for _, m := range mods {
		p.width = max(p.width, len(m.Name))
	}
	for _, m := range mods {
		rc, err := mc.Logs(ctx, m.Name, lo)
		if err != nil {
			if errors.Is(err, mgmtclient.ErrNotFound) {
				continue // nothing logged yet
			}
			return fmt.Errorf("logs %s: %w", m.Name, err)
		}
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			p.event(mgmtclient.FollowEvent{Kind: mgmtclient.FollowLine, Module: m.Name, Line: sc.Text()})
		}
		rc.Close()
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			return fmt.Errorf("logs %s: %w", m.Name, err)
		}
	}
	return nil
}

// logPrinter prints what Follow tells: lines to stdout (prefixed with the
// module's name for several modules), markers to stderr.
type logPrinter struct {
	ios    *IOStreams
	prefix bool
	width  int // of the widest module name seen
	colors map[string]lipgloss.Style
	color  bool
}

// prefixColors are the colours of module names in prefixed logs, in turn:
// ANSI's basic colours, which every terminal shows with its own theme.
var prefixColors = []string{"6", "5", "3", "2", "4", "1"}

func newLogPrinter(ios *IOStreams, prefix bool) *logPrinter {
	return &logPrinter{ios: ios, prefix: prefix, colors: map[string]lipgloss.Style{}, color: ios.Color()}
}

func (p *logPrinter) event(ev mgmtclient.FollowEvent) {
	if ev.Kind != mgmtclient.FollowLine {
		fmt.Fprintf(p.ios.ErrOut, "--- %s ---\n", ev.Marker())
		return
	}
	if !p.prefix {
		fmt.Fprintln(p.ios.Out, ev.Line)
		return
	}
	p.width = max(p.width, len(ev.Module))
	name := ev.Module + strings.Repeat(" ", p.width-len(ev.Module))
	if p.color {
		st, ok := p.colors[ev.Module]
		if !ok {
			st = lipgloss.NewStyle().Foreground(lipgloss.Color(prefixColors[len(p.colors)%len(prefixColors)]))
			p.colors[ev.Module] = st
		}
		name = st.Render(name)
	}
	fmt.Fprintf(p.ios.Out, "%s | %s\n", name, ev.Line)
}
