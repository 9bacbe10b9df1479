package devloop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// palette is the colours of module names (ANSI: cyan, yellow, green,
// magenta, blue, bright red, bright cyan, bright yellow).
var palette = []string{"36", "33", "32", "35", "34", "91", "96", "93"}

// printer writes module log lines prefixed by the module's name (padded to
// the longest name, coloured when asked) and the loop's status lines.
type printer struct {
	mu     sync.Mutex
	out    io.Writer
	status io.Writer
	color  bool
	width  int
	colors map[string]string
}

func newPrinter(out, status io.Writer, color bool, names []string) *printer {
	p := &printer{out: out, status: status, color: color, colors: map[string]string{}}
	for i, n := range names {
		p.colors[n] = palette[i%len(palette)]
		p.width = max(p.width, len(n))
	}
	return p
}

// line writes one line of module's output.
func (p *printer) line(module, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prefix := fmt.Sprintf("%-*s |", p.width, module)
	if p.color {
		c := p.colors[module]
		if c == "" {
			c = palette[len(p.colors)%len(palette)]
			p.colors[module] = c
		}
		prefix = "\x1b[" + c + "m" + prefix + "\x1b[0m"
	}
	fmt.Fprintf(p.out, "%s %s\n", prefix, text)
}

// statusf writes a status line of the loop.
func (p *printer) statusf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.status, "• "+format+"\n", a...)
}

// failf writes a problem, in red when colour is on.
func (p *printer) failf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := fmt.Sprintf(format, a...)
	if p.color {
		msg = "\x1b[31m" + msg + "\x1b[0m"
	}
	fmt.Fprintf(p.status, "✗ %s\n", msg)
}

// logLine is one line of a module's output, with the time the daemon read it.
type logLine struct {
	at   time.Time
	text string
}

// follow streams module's logs from since on, across the re-creates and
// restarts of its instance, until ctx is done: each time a stream ends (the
// instance exited), it opens the next one at a kick (a change of the
// module's status) and asks for the lines after the last it saw.
func follow(ctx context.Context, mc *mgmtclient.Client, module string, since time.Time, kick <-chan struct{}, each func(logLine)) {
	for ctx.Err() == nil {
		rc, err := mc.Logs(ctx, module, mgmtclient.LogOptions{Follow: true, Since: since, Timestamps: true})
		if err == nil {
			sc := bufio.NewScanner(rc)
			sc.Buffer(make([]byte, 64<<10), 2<<20)
			for sc.Scan() {
				l := parseLine(sc.Bytes())
				if !l.at.IsZero() {
					since = l.at.Add(time.Nanosecond)
				}
				each(l)
			}
			rc.Close()
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-time.After(2 * time.Second): // a kick lost to a broken event stream
		}
	}
}

// parseLine splits "TIME TEXT" as the daemon writes it with timestamps.
func parseLine(b []byte) logLine {
	ts, text, ok := bytes.Cut(b, []byte(" "))
	if ok {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
			return logLine{at: t, text: strings.TrimRight(string(text), "\r")}
		}
	}
	return logLine{text: string(b)}
}
