// Package devloop is `outpost dev`: the inner loop of a module developer.
// It starts (or targets) a hub, a registry and a device daemon, builds every
// module of a solution for the device's platform, pushes it, deploys it by
// digest and streams the modules' logs; then it watches the sources and, on
// each save, rebuilds the modules whose inputs changed, pushes and
// redeploys them, and keeps streaming. It knows nothing of terminals: the
// CLI says whether to colour and stops it by cancelling its context.
package devloop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/image"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// DefaultDebounce is how long the loop waits after a change for the next
// one before it builds: an editor's save is often several writes.
const DefaultDebounce = 40 * time.Millisecond

// StateDirName is the state dir's name inside the solution by default.
const StateDirName = ".outpost"

// Config is what Run does.
type Config struct {
	// Dir is the solution: modules/*/module.yaml and deployment.yaml, as
	// `outpost init` makes them.
	Dir string
	// StateDir holds the embedded hub's, registry's and daemon's data, the
	// build cache and dev.log (default Dir/.outpost).
	StateDir string
	// Runtime is the embedded daemon's: runtime.KindProcess (default) or
	// KindRunc.
	Runtime string
	// StopGrace is how long a module has between SIGTERM and SIGKILL when
	// it is re-created (the daemon's default when 0).
	StopGrace time.Duration

	// Hub and Device, when set, are where the loop deploys instead of an
	// embedded hub and daemon; images then go to module.yaml's registries.
	Hub    *hubclient.Client
	Device string
	// MgmtSocket is the management socket of Device's daemon when it runs
	// on this machine: the loop streams its modules' logs from it.
	MgmtSocket string

	// Once builds, pushes and deploys once, waits for each module to print
	// (or fail), and returns.
	Once bool
	// Debounce is DefaultDebounce when 0.
	Debounce time.Duration

	Out    io.Writer // module log lines
	Status io.Writer // the loop's own lines
	Color  bool      // colour module names and problems

	// OnTiming, when set, is called when a module's new instance printed its
	// first line after a change (from any goroutine).
	OnTiming func(Timing)
}

// Timing is where the time of one change went, from the save to the new
// instance's first line.
type Timing struct {
	Module string // the deployment's module id
	// Saved is the first change of the round (for the first round, when
	// the loop started).
	Saved time.Time
	// Build is the build's wall time, GoBuild its `go build` part.
	Build, GoBuild time.Duration
	Push           time.Duration
	// Deployed is when the hub took the deployment; Started when the
	// device started the new instance; FirstLine when the loop received
	// its first line.
	Deployed, Started, FirstLine time.Time
}

// Total is from the save to the first line.
func (t Timing) Total() time.Duration { return t.FirstLine.Sub(t.Saved) }

func (t Timing) String() string {
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("save → first line %s: build %s (go build %s), push %s, deploy → started %s, started → first line %s",
		ms(t.Total()), ms(t.Build), ms(t.GoBuild), ms(t.Push), ms(t.Started.Sub(t.Deployed)), ms(t.FirstLine.Sub(t.Started)))
}

// Run runs the loop until ctx is done (or, with Once, one round), then
// stops what it started: the daemon and every instance it ran, the
// registry and the hub.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Status == nil {
		cfg.Status = io.Discard
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Runtime == "" {
		cfg.Runtime = runtime.KindProcess
	}
	if (cfg.Hub == nil) != (cfg.Device == "") {
		return errors.New("a hub and a device go together: give both (--hub and --device), or neither for embedded ones")
	}
	sol, err := loadSolution(cfg.Dir)
	if err != nil {
		return err
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(sol.dir, StateDirName)
	}
	if cfg.StateDir, err = filepath.Abs(cfg.StateDir); err != nil {
		return err
	}
	var e *env
	if cfg.Hub != nil {
		e, err = startTarget(ctx, &cfg)
	} else {
		e, err = startEmbedded(ctx, &cfg)
	}
	if err != nil {
		return err
	}
	names := make([]string, len(sol.modules))
	for i, m := range sol.modules {
		names[i] = m.name
	}
	l := &loop{cfg: cfg, sol: sol, env: e, out: newPrinter(cfg.Out, cfg.Status, cfg.Color, names),
		images: map[string]string{}, digests: map[string]string{}, mods: map[string]*modState{}}
	l.out.statusf("%s", e.describe)
	defer func() {
		l.out.statusf("stopping")
		if cerr := e.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", cerr))
		}
		l.wg.Wait()
	}()
	lctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		l.wg.Wait()
	}()
	if e.mgmt != nil {
		l.startEvents(lctx)
	}
	return l.run(lctx)
}

// loop is one run of the inner loop.
type loop struct {
	cfg Config
	sol *solution
	env *env
	out *printer
	wg  sync.WaitGroup

	images  map[string]string // module name → name:tag@digest deployed (or to deploy)
	digests map[string]string // module name → digest last pushed

	mu   sync.Mutex
	mods map[string]*modState // by deployment module id
}

// modState is what the loop knows of one deployed module.
type modState struct {
	kick      chan struct{}
	status    string
	lines     int // received since the loop started
	following bool
	pending   *Timing // a change waiting for the new instance's first line
	// recent are the lines received while pending waits for the new
	// instance's start: when the daemon read them, when the loop did.
	recent []seen
}

type seen struct{ at, recv time.Time }

func (l *loop) run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch the sources: %w", err)
	}
	defer w.Close()
	if !l.cfg.Once {
		if err := walkDirs(l.sol.dir, w.Add); err != nil {
			return fmt.Errorf("watch %s: %w", l.sol.dir, err)
		}
	}
	all := map[string]bool{}
	for _, m := range l.sol.modules {
		all[m.name] = true
	}
	ok := l.round(ctx, time.Now(), all, true)
	if l.cfg.Once {
		if !ok {
			return errors.New("the round failed (see above)")
		}
		return l.waitFirstLines(ctx)
	}
	l.out.statusf("watching %s for changes (q or Ctrl-C stops)", l.sol.dir)

	var (
		changed  = map[string]bool{}
		redeploy bool
		saved    time.Time
		timer    *time.Timer
		timerC   <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.env.daemonDone:
			return fmt.Errorf("the device daemon stopped: %v (see %s)", l.env.daemonErr(), filepath.Join(l.cfg.StateDir, "dev.log"))
		case err := <-w.Errors:
			l.out.failf("watching the sources: %v", err)
		case ev, open := <-w.Events:
			if !open {
				return errors.New("the source watcher stopped")
			}
			rel, err := filepath.Rel(l.sol.dir, ev.Name)
			if err != nil || ignored(rel) {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = walkDirs(ev.Name, w.Add)
				}
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			switch m := l.sol.moduleOf(ev.Name); {
			case m != nil:
				changed[m.name] = true
			case rel == DeploymentFile:
				redeploy = true
			default:
				continue
			}
			if saved.IsZero() {
				saved = time.Now()
			}
			if timer == nil {
				timer = time.NewTimer(l.cfg.Debounce)
			} else {
				timer.Reset(l.cfg.Debounce)
			}
			timerC = timer.C
		case <-timerC:
			timerC = nil
			l.round(ctx, saved, changed, redeploy)
			changed, redeploy, saved = map[string]bool{}, false, time.Time{}
		}
	}
}

// built is one module's build and push.
type built struct {
	m              *module
	ref            string // name:tag@digest
	digest         string
	build, goBuild time.Duration
	push           time.Duration
	err            error
}

// round builds and pushes the modules named, then deploys when a digest
// (or the deployment) changed. It reports whether it got that far.
func (l *loop) round(ctx context.Context, saved time.Time, changed map[string]bool, redeploy bool) bool {
	var todo []*module
	for _, m := range l.sol.modules {
		if changed[m.name] {
			todo = append(todo, m)
		}
	}
	results := make([]built, len(todo))
	var wg sync.WaitGroup
	for i, m := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.buildPush(ctx, m)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false
	}
	pending := map[string]built{}
	failed := false
	for _, r := range results {
		if r.err != nil {
			failed = true
			l.out.failf("%s: %v\n  (fix it and save: the loop builds again)", r.m.name, indentRest(r.err.Error()))
			continue
		}
		if r.digest == l.digests[r.m.name] {
			l.out.statusf("%s: built %s in %s, unchanged", r.m.name, shortDigest(r.digest), r.build.Round(time.Millisecond))
			continue
		}
		l.out.statusf("%s: built in %s (go build %s), pushed %s in %s", r.m.name, r.build.Round(time.Millisecond),
			r.goBuild.Round(time.Millisecond), shortDigest(r.digest), r.push.Round(time.Millisecond))
		l.digests[r.m.name] = r.digest
		l.images[r.m.name] = r.ref
		pending[r.m.name] = r
	}
	if len(pending) == 0 && !redeploy {
		return !failed
	}
	var missing []string
	for _, m := range l.sol.modules {
		if _, ok := l.images[m.name]; !ok {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		if failed {
			return false // said above
		}
		l.out.failf("not deployed: %s not built yet", strings.Join(missing, ", "))
		return false
	}
	doc, ids, err := l.sol.manifest(l.images)
	if err != nil {
		l.out.failf("%v\n  (fix it and save: the loop deploys again)", indentRest(err.Error()))
		return false
	}
	// What each changed module's new instance is waited for with.
	l.mu.Lock()
	for name, r := range pending {
		for _, id := range ids[name] {
			ms := l.modLocked(id)
			ms.pending = &Timing{Module: id, Saved: saved, Build: r.build, GoBuild: r.goBuild, Push: r.push}
			ms.recent = nil
		}
	}
	l.mu.Unlock()
	warnings, err := l.env.hub.ApplyConfiguration(ctx, l.env.device, doc)
	deployed := time.Now()
	if err != nil {
		l.out.failf("deploy to %s: %v", l.env.device, err)
		return false
	}
	l.mu.Lock()
	for _, ms := range l.mods {
		if ms.pending != nil && ms.pending.Deployed.IsZero() {
			ms.pending.Deployed = deployed
		}
	}
	l.mu.Unlock()
	for _, w := range warnings {
		l.out.statusf("deployment: %s", w)
	}
	var which []string
	for name := range pending {
		which = append(which, ids[name]...)
	}
	slices.Sort(which)
	if len(which) == 0 {
		l.out.statusf("deployed %s to %s", DeploymentFile, l.env.device)
	} else {
		l.out.statusf("deployed %s to %s", strings.Join(which, ", "), l.env.device)
	}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		for _, mid := range ids[id] {
			l.ensureFollower(ctx, mid)
		}
	}
	return !failed
}

// buildPush builds module m for the device's platform and pushes it.
func (l *loop) buildPush(ctx context.Context, m *module) built {
	r := built{m: m}
	spec, err := image.LoadModule(m.dir) // module.yaml may have changed
	if err != nil {
		r.err = err
		return r
	}
	m.spec = spec
	b := *spec
	if l.env.registry != "" {
		repo, err := name.NewRepository(spec.Repository, name.WeakValidation)
		if err != nil {
			r.err = fmt.Errorf("%s: repository: %w", spec.File, err)
			return r
		}
		b.Repository = l.env.registry + "/" + repo.RepositoryStr()
	}
	res, err := image.BuildModule(ctx, &b, image.BuildOptions{Platforms: []string{l.env.platform}, CacheDir: filepath.Join(l.cfg.StateDir, "oci")})
	if err != nil {
		r.err = fmt.Errorf("build: %w", err)
		return r
	}
	r.build, r.goBuild = res.Stats.Total, res.Stats.GoBuild
	t0 := time.Now()
	d, err := image.Push(ctx, res.Reference, res.Artifact(), image.PushOptions{})
	r.push = time.Since(t0)
	if err != nil {
		r.err = fmt.Errorf("push: %w", err)
		return r
	}
	r.digest = d.String()
	r.ref = res.Reference.String() + "@" + r.digest
	return r
}

func (l *loop) modLocked(id string) *modState {
	ms := l.mods[id]
	if ms == nil {
		ms = &modState{kick: make(chan struct{}, 1)}
		l.mods[id] = ms
	}
	return ms
}

// ensureFollower starts streaming module id's logs, once.
func (l *loop) ensureFollower(ctx context.Context, id string) {
	if l.env.mgmt == nil {
		return
	}
	l.mu.Lock()
	ms := l.modLocked(id)
	started := ms.following
	ms.following = true
	l.mu.Unlock()
	if started {
		return
	}
	since := time.Now()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		follow(ctx, l.env.mgmt, id, since, ms.kick, func(ln logLine) { l.line(id, ln) })
	}()
}

// line prints a module's line and, when it is the first of the instance a
// change made, its timing.
func (l *loop) line(id string, ln logLine) {
	l.out.line(id, ln.text)
	l.mu.Lock()
	ms := l.modLocked(id)
	ms.lines++
	var done *Timing
	if p := ms.pending; p != nil && !p.Deployed.IsZero() {
		switch {
		case !p.Started.IsZero() && !ln.at.Before(p.Started):
			p.FirstLine = time.Now()
			done, ms.pending = p, nil
		case p.Started.IsZero() && len(ms.recent) < 64:
			ms.recent = append(ms.recent, seen{at: ln.at, recv: time.Now()})
		}
	}
	l.mu.Unlock()
	if done != nil {
		l.timing(*done)
	}
}

func (l *loop) timing(t Timing) {
	l.out.statusf("%s: %s", t.Module, t)
	if l.cfg.OnTiming != nil {
		l.cfg.OnTiming(t)
	}
}

// startEvents follows the daemon's events: each module change kicks its
// log follower and completes the timing of a change.
func (l *loop) startEvents(ctx context.Context) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for ctx.Err() == nil {
			ch, err := l.env.mgmt.Watch(ctx)
			if err != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			for ev := range ch {
				switch ev.Type {
				case mgmtclient.EventSnapshot:
					for _, m := range ev.Modules {
						l.moduleEvent(m)
					}
				case mgmtclient.EventModule:
					if ev.Module != nil {
						l.moduleEvent(*ev.Module)
					}
				}
			}
		}
	}()
}

func (l *loop) moduleEvent(m mgmtclient.Module) {
	l.mu.Lock()
	ms := l.modLocked(m.Name)
	select {
	case ms.kick <- struct{}{}:
	default:
	}
	changed := ms.status != m.Status
	ms.status = m.Status
	var done *Timing
	if p := ms.pending; p != nil && !p.Deployed.IsZero() && m.Status == "running" && !m.StartedAt.IsZero() && !m.StartedAt.Before(p.Deployed.Add(-time.Second)) && p.Started.IsZero() {
		p.Started = m.StartedAt
		// Lines may have come before the event.
		for _, ln := range ms.recent {
			if !ln.at.Before(p.Started) {
				p.FirstLine = ln.recv
				done, ms.pending = p, nil
				break
			}
		}
		ms.recent = nil
	}
	l.mu.Unlock()
	if changed && (m.Status == "backoff" || m.Status == "failed" || m.Status == "dead" || m.Status == "unhealthy") {
		desc := m.Description
		if m.ExitCode != nil {
			desc = fmt.Sprintf("exit code %d; %s", *m.ExitCode, desc)
		}
		l.out.failf("%s: %s: %s", m.Name, m.Status, strings.TrimSuffix(desc, "; "))
	}
	if done != nil {
		l.timing(*done)
	}
}

// waitFirstLines waits until each deployed module has printed a line, or
// one is failing.
func (l *loop) waitFirstLines(ctx context.Context) error {
	if l.env.mgmt == nil {
		return nil
	}
	_, ids, err := l.sol.manifest(l.images)
	if err != nil {
		return err
	}
	for {
		l.mu.Lock()
		waiting := 0
		var bad []string
		for _, list := range ids {
			for _, id := range list {
				ms := l.modLocked(id)
				if ms.lines == 0 {
					waiting++
					if ms.status == "backoff" || ms.status == "failed" || ms.status == "dead" {
						bad = append(bad, id+" is "+ms.status)
					}
				}
			}
		}
		l.mu.Unlock()
		if len(bad) > 0 {
			return fmt.Errorf("%s without a line of output: `outpost dev` again, or see %s", strings.Join(bad, ", "), filepath.Join(l.cfg.StateDir, "dev.log"))
		}
		if waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.env.daemonDone:
			return fmt.Errorf("the device daemon stopped: %v", l.env.daemonErr())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shortDigest shortens sha256:… to 12 hex digits.
func shortDigest(d string) string {
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return d
}

// indentRest indents every line of s but the first.
func indentRest(s string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
