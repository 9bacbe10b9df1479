package mgmtclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// FollowKind says what a FollowEvent is.
type FollowKind int

// The kinds of FollowEvent.
const (
	// FollowLine is a line of a module's logs.
	FollowLine FollowKind = iota
	// FollowStarted: a module that had no instance when following began (or
	// a module deployed since) has one now.
	FollowStarted
	// FollowRestarted: a module's instance was replaced by a new one of the
	// same image and version (a crash and its restart, outpost restart).
	FollowRestarted
	// FollowRecreated: a module's instance was replaced by one of another
	// image, digest or version (a new deployment).
	FollowRecreated
	// FollowExited: a module's instance exited and none runs now (back-off,
	// failed, stopped).
	FollowExited
	// FollowRemoved: a module left the deployment.
	FollowRemoved
	// FollowLost: the daemon's event stream broke (the daemon stopped);
	// Follow tries again until ctx is done.
	FollowLost
	// FollowReconnected: the daemon answers again after a FollowLost.
	FollowReconnected
)

// FollowEvent is a log line of a module, or a change of its instance that
// a person reading the lines should be told of (a marker).
type FollowEvent struct {
	Kind   FollowKind
	Module string // "" for FollowLost and FollowReconnected
	// Time is when the daemon read the line, or when the change happened.
	Time time.Time
	// Line is the log line without its newline (FollowLine).
	Line string
	// Instance is the module's status after the change (markers of a module).
	Instance *Module
	// Err is why the daemon's events broke (FollowLost).
	Err error
}

// Marker is the text of a marker event: "tempsensor restarted (instance pid
// 1234, restart 2)". It is "" for a line.
func (e FollowEvent) Marker() string {
	m := e.Instance
	switch e.Kind {
	case FollowStarted:
		return fmt.Sprintf("%s started (%s)", e.Module, instanceText(m))
	case FollowRestarted:
		if m.Restarts > 0 {
			return fmt.Sprintf("%s restarted (%s; restart %d)", e.Module, instanceText(m), m.Restarts)
		}
		return fmt.Sprintf("%s restarted (%s)", e.Module, instanceText(m))
	case FollowRecreated:
		what := m.Image
		if m.ImageDigest != "" && !strings.Contains(m.Image, "@") {
			what += "@" + shortDigest(m.ImageDigest)
		}
		if m.Version != "" {
			what += ", version " + m.Version
		}
		return fmt.Sprintf("%s re-created (%s; %s)", e.Module, what, instanceText(m))
	case FollowExited:
		s := fmt.Sprintf("%s %s", e.Module, m.Status)
		if m.Description != "" {
			s += ": " + strings.Join(strings.Fields(m.Description), " ")
		}
		if !m.NextRestartAt.IsZero() {
			s += fmt.Sprintf("; next start at %s", m.NextRestartAt.Local().Format("15:04:05"))
		}
		return s
	case FollowRemoved:
		return e.Module + " removed from the deployment"
	case FollowLost:
		return fmt.Sprintf("lost the daemon (%v); trying again", e.Err)
	case FollowReconnected:
		return "the daemon answers again"
	}
	return ""
}

// shortDigest keeps 12 hex digits of a digest, as docker shows image ids.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}

func instanceText(m *Module) string {
	s := "instance started " + m.StartedAt.Local().Format("15:04:05.000")
	if m.Pid != 0 {
		s = fmt.Sprintf("instance pid %d, started %s", m.Pid, m.StartedAt.Local().Format("15:04:05.000"))
	}
	return s
}

// FollowOptions choose what Follow follows.
type FollowOptions struct {
	// Modules are the modules to follow; none: every module of the
	// deployment, those deployed later too.
	Modules []string
	// Wait makes Follow wait for a module of Modules that is not deployed
	// yet, rather than fail with ErrNotFound.
	Wait bool
	// Tail and Since choose the lines shown of what each module logged
	// before following began (0 and zero: all).
	Tail  int
	Since time.Time
	// Retry is how long Follow waits before it asks a daemon that stopped
	// answering again (default 500 ms).
	Retry time.Duration
}

// Follow streams the logs of modules, line by line, across their
// instances: when an instance exits, is restarted or re-created, it tells
// fn (a marker event) and goes on with the lines of the next instance, each
// line once. It calls fn from one goroutine, in order: a module's markers
// come between the lines of the instances they separate. It returns nil
// when ctx is done, or an error when the daemon does not answer at first or
// (without Wait) a module of opts.Modules is not deployed.
func (c *Client) Follow(ctx context.Context, opts FollowOptions, fn func(FollowEvent)) error {
	if opts.Retry <= 0 {
		opts.Retry = 500 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.Watch(ctx)
	if err != nil {
		return err
	}
	fl := &follow{c: c, ctx: ctx, opts: opts, fn: fn, start: time.Now(),
		mods: map[string]*followed{}, lines: make(chan streamMsg, 64)}
	first := true
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	flush := time.NewTicker(markerDelay / 2)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				retry.Reset(opts.Retry)
				continue
			}
			if err := fl.event(ev, first); err != nil {
				return err
			}
			first = false
			if ev.Type == EventError {
				events = nil
				fl.flushAll()
				fn(FollowEvent{Kind: FollowLost, Time: ev.Time, Err: errors.New(ev.Error)})
				fl.lost = true
				retry.Reset(opts.Retry)
			}
		case <-retry.C:
			if events, err = c.Watch(ctx); err != nil {
				events = nil
				retry.Reset(opts.Retry)
			}
		case m := <-fl.lines:
			fl.stream(m)
		case <-flush.C:
			fl.flushOld()
		}
	}
}

// markerDelay is how long a marker may wait for the lines that come before
// it (those the daemon read before the change) when no line after it comes.
const markerDelay = 400 * time.Millisecond

// follow is Follow's state; only Follow's goroutine touches it.
type follow struct {
	c     *Client
	ctx   context.Context
	opts  FollowOptions
	fn    func(FollowEvent)
	start time.Time
	mods  map[string]*followed
	lines chan streamMsg
	lost  bool // the event stream broke: the next snapshot reconnects
}

// followed is one module being followed.
type followed struct {
	name      string
	cur       Module // its status, as the events last said
	deployed  bool
	instance  time.Time // StartedAt of the newest instance seen
	exitShown time.Time // StartedAt of the instance whose exit was told
	streaming bool      // a log stream is open
	opened    bool      // a stream was opened once: later ones start at lastT
	retrying  bool      // a reopen is scheduled
	lastT     time.Time // time of the last line shown
	atLast    int       // lines shown with time lastT
	pending   []FollowEvent
}

// streamMsg is a line of a module's log stream, or its end (done).
type streamMsg struct {
	name string
	t    time.Time
	line string
	done bool
	err  error
	// reopen asks for a stream again (a scheduled retry).
	reopen bool
}

func (fl *follow) wanted(name string) bool {
	return len(fl.opts.Modules) == 0 || slices.Contains(fl.opts.Modules, name)
}

func (fl *follow) event(ev Event, first bool) error {
	switch ev.Type {
	case EventSnapshot:
		if fl.lost {
			fl.lost = false
			fl.fn(FollowEvent{Kind: FollowReconnected, Time: ev.Time})
		}
		seen := map[string]bool{}
		for i := range ev.Modules {
			seen[ev.Modules[i].Name] = true
		}
		if first && !fl.opts.Wait {
			for _, name := range fl.opts.Modules {
				if !seen[name] {
					return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no module %s in the device's deployment", name)}
				}
			}
		}
		for i := range ev.Modules {
			fl.update(ev.Modules[i], first)
		}
		for name, m := range fl.mods {
			if !seen[name] && m.deployed {
				fl.removed(name, ev.Time)
			}
		}
	case EventModule:
		if ev.Module != nil {
			fl.update(*ev.Module, false)
		}
	case EventModuleRemoved:
		fl.removed(ev.Name, ev.Time)
	}
	return nil
}

func (fl *follow) removed(name string, t time.Time) {
	m := fl.mods[name]
	if m == nil || !m.deployed {
		return
	}
	m.deployed = false
	cur := m.cur
	fl.marker(m, FollowEvent{Kind: FollowRemoved, Module: name, Time: t, Instance: &cur})
}

// runningLike reports whether a module's instance may be writing.
func runningLike(status string) bool { return status == "running" || status == "unhealthy" }

// update takes a module's new status: a new instance gets a marker and a
// stream if none is open; an exit gets a marker.
func (fl *follow) update(mod Module, initial bool) {
	if !fl.wanted(mod.Name) {
		return
	}
	m := fl.mods[mod.Name]
	if m == nil {
		m = &followed{name: mod.Name}
		fl.mods[mod.Name] = m
	}
	prev := m.cur
	m.cur, m.deployed = mod, true
	cur := mod
	var markers []FollowEvent
	if !mod.StartedAt.IsZero() && !mod.StartedAt.Equal(m.instance) {
		if !m.instance.IsZero() {
			kind := FollowRestarted
			if prev.Image != mod.Image || prev.ImageDigest != mod.ImageDigest || prev.Version != mod.Version {
				kind = FollowRecreated
			}
			markers = append(markers, FollowEvent{Kind: kind, Module: mod.Name, Time: mod.StartedAt, Instance: &cur})
		} else if !initial {
			markers = append(markers, FollowEvent{Kind: FollowStarted, Module: mod.Name, Time: mod.StartedAt, Instance: &cur})
		}
		m.instance = mod.StartedAt
	}
	if !runningLike(mod.Status) && !mod.ExitedAt.IsZero() && !m.instance.IsZero() && !m.exitShown.Equal(m.instance) &&
		!mod.ExitedAt.Before(m.instance) {
		m.exitShown = m.instance
		markers = append(markers, FollowEvent{Kind: FollowExited, Module: mod.Name, Time: mod.ExitedAt, Instance: &cur})
	}
	// The stream first: a marker then waits for the lines before it.
	if !m.streaming && !m.retrying && (!m.opened || runningLike(mod.Status) || !mod.StartedAt.Equal(prev.StartedAt)) {
		fl.open(m)
	}
	for _, ev := range markers {
		fl.marker(m, ev)
	}
}

// marker queues a marker of m: it is told once the lines before it are
// (the first line after it, the end of the stream, or markerDelay).
func (fl *follow) marker(m *followed, ev FollowEvent) {
	if !m.streaming {
		fl.flush(m)
		fl.fn(ev)
		return
	}
	m.pending = append(m.pending, ev)
}

func (fl *follow) flush(m *followed) {
	for _, ev := range m.pending {
		fl.fn(ev)
	}
	m.pending = nil
}

func (fl *follow) flushAll() {
	for _, m := range fl.mods {
		fl.flush(m)
	}
}

// flushOld tells the markers that waited markerDelay for lines.
func (fl *follow) flushOld() {
	for _, m := range fl.mods {
		for len(m.pending) > 0 && time.Since(m.pending[0].Time) >= markerDelay {
			fl.fn(m.pending[0])
			m.pending = m.pending[1:]
		}
	}
}

// open starts streaming m's logs: the first time as the options say, then
// from the last line shown on (the daemon keeps a module's logs across its
// instances; lines already shown are skipped).
func (fl *follow) open(m *followed) {
	opts := LogOptions{Follow: true, Timestamps: true}
	skipT, skipN := m.lastT, m.atLast
	switch {
	case !m.opened:
		opts.Tail, opts.Since = fl.opts.Tail, fl.opts.Since
	case !m.lastT.IsZero():
		opts.Since = m.lastT
	default:
		opts.Since = fl.start
	}
	m.opened, m.streaming = true, true
	name := m.name
	go func() {
		err := fl.read(name, opts, skipT, skipN)
		select {
		case fl.lines <- streamMsg{name: name, done: true, err: err}:
		case <-fl.ctx.Done():
		}
	}()
}

// read streams one module's logs into fl.lines until the stream ends,
// skipping the lines before skipT and the first skipN at skipT.
func (fl *follow) read(name string, opts LogOptions, skipT time.Time, skipN int) error {
	rc, err := fl.c.Logs(fl.ctx, name, opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			t, line := splitTimestamp(b)
			skip := false
			if !skipT.IsZero() && !t.IsZero() {
				switch {
				case t.Before(skipT):
					skip = true
				case t.Equal(skipT) && skipN > 0:
					skipN--
					skip = true
				}
			}
			if !skip {
				select {
				case fl.lines <- streamMsg{name: name, t: t, line: line}:
				case <-fl.ctx.Done():
					return nil
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) || fl.ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// splitTimestamp splits "TIME line\n" into the time and the line; a line
// without a time (a long line's later pieces) gets the zero time.
func splitTimestamp(b []byte) (time.Time, string) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	if ts, rest, ok := bytes.Cut(b, []byte(" ")); ok {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
			return t, string(rest)
		}
	}
	return time.Time{}, string(b)
}

// stream takes a line or the end of a module's stream.
func (fl *follow) stream(msg streamMsg) {
	m := fl.mods[msg.name]
	if m == nil {
		return
	}
	switch {
	case msg.reopen:
		m.retrying = false
		if !m.streaming && m.deployed && runningLike(m.cur.Status) {
			fl.open(m)
		}
	case msg.done:
		m.streaming = false
		fl.flush(m)
		if !m.deployed {
			return
		}
		// A newer instance, or one that still runs (the stream ended in a
		// race with a restart): again, from the last line shown.
		if runningLike(m.cur.Status) && !m.retrying {
			m.retrying = true
			delay := 50 * time.Millisecond
			if msg.err != nil {
				delay = fl.opts.Retry
			}
			name := m.name
			time.AfterFunc(delay, func() {
				select {
				case fl.lines <- streamMsg{name: name, reopen: true}:
				case <-fl.ctx.Done():
				}
			})
		}
	default:
		// Markers of changes before this line come first.
		for len(m.pending) > 0 && !msg.t.IsZero() && !msg.t.Before(m.pending[0].Time) {
			fl.fn(m.pending[0])
			m.pending = m.pending[1:]
		}
		switch {
		case msg.t.Equal(m.lastT):
			m.atLast++
		case msg.t.After(m.lastT):
			m.lastT, m.atLast = msg.t, 1
		}
		fl.fn(FollowEvent{Kind: FollowLine, Module: m.name, Time: msg.t, Line: msg.line})
	}
}
