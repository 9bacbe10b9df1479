package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/imagestore"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// Runtime statuses reported for a module, IoT Edge's.
const (
	StatusUnknown   = "unknown"
	StatusBackoff   = "backoff"
	StatusRunning   = "running"
	StatusUnhealthy = "unhealthy"
	StatusStopped   = "stopped"
	StatusFailed    = "failed"
	StatusDead      = "dead"
)

// desiredModule is what a supervisor is told to run.
type desiredModule struct {
	deployment.Module
	GenerationID string
	Credentials  []imagestore.Credential
	Hash         string // of what makes an instance: a change forces a re-create
}

// hash covers everything that goes into an instance but its desired status
// and restart policy, which change how it is run, not what runs, and the
// module's generation id, which may reach the device after the deployment
// (a module whose identity is re-created gets the new one at its next start).
func (d desiredModule) hash() string {
	b, _ := json.Marshal(struct {
		Image, Version string
		Env            map[string]string
		Create         deployment.CreateOptions
		Raw            json.RawMessage
	}{d.Image, d.Version, d.Env, d.CreateOptions, d.CreateOptions.Raw})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// message is one request to a supervisor.
type message struct {
	kind    int // msgUpdate, msgRestart, msgRemove, msgShutdown
	desired desiredModule
	ack     chan struct{}
	reply   chan error
	stop    bool // msgShutdown: stop the instance
}

const (
	msgUpdate = iota
	msgRestart
	msgRemove
	msgShutdown
)

// supervisor owns one module's instance.
type supervisor struct {
	a    *Agent
	name string
	msgs chan message
	done chan struct{}

	mu             sync.Mutex
	st             ModuleStatus
	d              desiredModule
	exited         chan runtime.State // from the current instance's Wait
	waitStop       context.CancelFunc
	failures       int  // consecutive pull/start failures, for their back-off
	restartPending bool // the retry timer restarts an exited instance
	init           bool // has had a desired state
	img            *moduleImage
	imgHash        string // the desired state img was pulled for

	health      chan healthEvent // from the current instance's health checks; nil without
	unhealthy   string           // why the instance was stopped as unhealthy, to be restarted
	stopHealthy context.CancelFunc
}

func newSupervisor(a *Agent, name string) *supervisor {
	s := &supervisor{a: a, name: name, msgs: make(chan message, 8), done: make(chan struct{})}
	s.st = ModuleStatus{Name: name, RuntimeStatus: StatusUnknown}
	return s
}

func (s *supervisor) order() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d.StartupOrder
}

func (s *supervisor) status() ModuleStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if st.ExitCode != nil {
		c := *st.ExitCode
		st.ExitCode = &c
	}
	return st
}

// update hands the supervisor a desired state; the channel returned is
// closed once it has made its first attempt to reach it.
func (s *supervisor) update(d desiredModule) <-chan struct{} {
	ack := make(chan struct{})
	s.msgs <- message{kind: msgUpdate, desired: d, ack: ack}
	return ack
}

func (s *supervisor) restart(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case s.msgs <- message{kind: msgRestart, reply: reply}:
	case <-s.done:
		return fmt.Errorf("restart %s: %w", s.name, ErrUnknownModule)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-s.done:
		return fmt.Errorf("restart %s: the module was removed", s.name)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *supervisor) remove() { s.msgs <- message{kind: msgRemove} }

func (s *supervisor) shutdown(stop bool) { s.msgs <- message{kind: msgShutdown, stop: stop} }

// set changes the status under the lock and tells the reporter.
func (s *supervisor) set(f func(st *ModuleStatus)) {
	s.mu.Lock()
	f(&s.st)
	s.mu.Unlock()
	s.a.notify()
}

func (s *supervisor) now() time.Time { return s.a.cfg.Now().UTC() }

func (s *supervisor) rt() runtime.Runtime { return s.a.cfg.Runtime }

// run is the supervisor's loop.
func (s *supervisor) run(ctx context.Context) {
	defer close(s.done)
	defer s.stopWaiting()
	var retryC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.msgs:
			switch m.kind {
			case msgUpdate:
				s.mu.Lock()
				same := s.init && s.d.Hash == m.desired.Hash && s.d.Status == m.desired.Status
				s.init = true
				s.d = m.desired
				s.st.Image, s.st.Version = m.desired.Image, m.desired.Version
				s.st.DesiredStatus, s.st.RestartPolicy = m.desired.Status, m.desired.RestartPolicy
				s.st.StartupOrder = m.desired.StartupOrder
				s.mu.Unlock()
				s.a.notify()
				if !same {
					s.restartPending = false
					retryC = s.converge(ctx, false)
				}
				close(m.ack)
			case msgRestart:
				s.mu.Lock()
				stopped := s.d.Status == deployment.StatusStopped
				s.mu.Unlock()
				if stopped {
					m.reply <- fmt.Errorf("restart %s: the deployment says status stopped", s.name)
					continue
				}
				s.destroy(ctx)
				s.failures = 0
				s.restartPending = false
				retryC = s.converge(ctx, false)
				s.mu.Lock()
				desc := s.st.Description
				ok := s.st.RuntimeStatus == StatusRunning
				s.mu.Unlock()
				if !ok {
					m.reply <- fmt.Errorf("restart %s: %s", s.name, desc)
				} else {
					m.reply <- nil
				}
			case msgRemove:
				s.destroy(ctx)
				s.a.removeModuleDirs(s.name)
				return
			case msgShutdown:
				s.stopWaiting()
				if m.stop {
					if err := s.rt().Stop(ctx, s.name, s.a.cfg.StopGrace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
						s.a.log.Error("stop", "module", s.name, "err", err)
					}
					s.set(func(st *ModuleStatus) {
						st.RuntimeStatus = StatusStopped
						st.Description = "the daemon stopped"
						st.ExitedAt = s.now()
					})
				}
				return
			}
		case st := <-s.exitedC():
			s.onExit(st)
			retryC = s.afterExit(st)
		case ev := <-s.health:
			s.onHealth(ctx, ev)
		case <-retryC:
			if s.restartPending {
				s.restartPending = false
				s.set(func(m *ModuleStatus) {
					m.RestartCount++
					m.LastRestartAt = s.now()
				})
			}
			retryC = s.converge(ctx, true)
		}
	}
}

func (s *supervisor) exitedC() <-chan runtime.State {
	return s.exited
}

// stopWaiting stops watching the instance's exit and health.
func (s *supervisor) stopWaiting() {
	if s.waitStop != nil {
		s.waitStop()
		s.waitStop = nil
	}
	s.exited = nil
	if s.stopHealthy != nil {
		s.stopHealthy()
		s.stopHealthy = nil
	}
	s.health = nil
}

// destroy stops and removes the instance.
func (s *supervisor) destroy(ctx context.Context) {
	s.stopWaiting()
	s.unhealthy = ""
	if err := s.rt().Stop(ctx, s.name, s.a.cfg.StopGrace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		s.a.log.Error("stop", "module", s.name, "err", err)
	}
	if err := s.rt().Remove(ctx, s.name); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		s.a.log.Error("remove", "module", s.name, "err", err)
	}
}

// watch starts waiting for the instance to exit, and runs its health
// check, if any.
func (s *supervisor) watch(ctx context.Context, hc *healthCheck, started time.Time) {
	s.stopWaiting()
	if hc != nil {
		hctx, cancel := context.WithCancel(ctx)
		events := make(chan healthEvent)
		s.stopHealthy, s.health = cancel, events
		go runHealth(hctx, s.rt(), s.name, hc, started, events, func(h HealthCheck) {
			s.set(func(m *ModuleStatus) { m.LastHealthCheck = &h })
		})
	}
	wctx, cancel := context.WithCancel(ctx)
	ch := make(chan runtime.State, 1)
	s.waitStop, s.exited = cancel, ch
	go func() {
		st, err := s.rt().Wait(wctx, s.name)
		if err != nil {
			if wctx.Err() != nil {
				return
			}
			st = runtime.State{Name: s.name, ExitCode: runtime.ExitUnknown, Description: err.Error(), FinishedAt: time.Now()}
		}
		ch <- st
	}()
}

// converge makes the instance match the desired state. retrying is true when
// a back-off timer fired. It returns the timer of the next attempt, if any.
func (s *supervisor) converge(ctx context.Context, retrying bool) <-chan time.Time {
	s.mu.Lock()
	d := s.d
	s.mu.Unlock()

	cur, err := s.rt().State(ctx, s.name)
	exists := err == nil
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return s.failed(fmt.Sprintf("read the state of the instance: %v", err))
	}
	if exists && cur.Labels[LabelHash] != d.Hash {
		s.a.log.Info("re-creating: the module changed", "module", s.name)
		if d.Status != deployment.StatusStopped && cur.Running {
			// Pull before stopping the old instance, so that the module is
			// down for the restart only; start then finds the image ready. A
			// failed pull is tried again, and reported, by start.
			if img, err := s.image(ctx, d); err == nil {
				s.img, s.imgHash = img, d.Hash
			}
		}
		s.destroy(ctx)
		exists = false
		s.set(func(st *ModuleStatus) { st.RestartCount = 0; st.ExitCode = nil; st.LastRestartAt = time.Time{} })
		s.failures = 0
	}
	if d.Status == deployment.StatusStopped {
		if exists && cur.Running {
			s.stopWaiting()
			if err := s.rt().Stop(ctx, s.name, s.a.cfg.StopGrace); err != nil {
				s.a.log.Error("stop", "module", s.name, "err", err)
			}
		}
		s.set(func(st *ModuleStatus) {
			st.RuntimeStatus = StatusStopped
			st.Description = "the deployment says status stopped"
			st.NextRestartAt = time.Time{}
			st.Pid = 0
			if exists && cur.Running {
				st.ExitedAt = s.now()
			}
		})
		return nil
	}
	if exists && cur.Running {
		// Adopt (after a daemon restart) or keep.
		if s.exited == nil {
			s.a.log.Info("adopting the running instance", "module", s.name)
			s.a.ensureWorkload(s.name)
			var hc *healthCheck
			if img, err := s.cachedImage(ctx, d); err == nil {
				s.img, s.imgHash = img, d.Hash
				hc = healthCheckOf(img.Config.Healthcheck, d.CreateOptions.Healthcheck)
			} else {
				hc = healthCheckOf(nil, d.CreateOptions.Healthcheck)
			}
			s.watch(ctx, hc, cur.StartedAt)
			s.set(func(st *ModuleStatus) {
				st.RuntimeStatus = StatusRunning
				st.Description = cur.Description
				st.StartedAt = cur.StartedAt.UTC()
				st.ImageDigest = cur.Labels[LabelDigest]
				st.Pid = cur.Pid
				st.NextRestartAt = time.Time{}
			})
		}
		return nil
	}
	// An instance that exited while no daemon watched it (a daemon restart)
	// starts again at once, as every module does when the daemon starts.
	if s.exited != nil && exists {
		// Still waiting for the exit to be reported.
		return nil
	}
	return s.start(ctx, d, exists)
}

// start pulls the image and starts a new instance.
func (s *supervisor) start(ctx context.Context, d desiredModule, exists bool) <-chan time.Time {
	s.stopWaiting()
	s.unhealthy = ""
	if exists {
		if err := s.rt().Remove(ctx, s.name); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return s.failed(fmt.Sprintf("remove the old instance: %v", err))
		}
	}
	img, err := s.image(ctx, d)
	if err != nil {
		desc := err.Error()
		if !strings.HasPrefix(desc, "pull "+d.Image+":") { // the docker runtime's errors say it
			desc = "pull " + d.Image + ": " + desc
		}
		return s.failed(desc)
	}
	s.img, s.imgHash = img, d.Hash
	spec := s.a.spec(d, img)
	if err := s.rt().Start(ctx, spec); err != nil {
		return s.failed(fmt.Sprintf("start %s: %v", d.Image, err))
	}
	s.failures = 0
	started := s.now()
	var pid int
	if st, err := s.rt().State(ctx, s.name); err == nil {
		pid = st.Pid
		if !st.StartedAt.IsZero() {
			started = st.StartedAt.UTC()
		}
	}
	s.watch(ctx, healthCheckOf(img.Config.Healthcheck, d.CreateOptions.Healthcheck), started)
	s.set(func(st *ModuleStatus) {
		st.RuntimeStatus = StatusRunning
		st.Description = ""
		if !s.rt().Isolated() {
			st.Description = "running as a host process: not isolated (process runtime)"
		}
		st.StartedAt = started
		st.ImageDigest = img.Digest
		st.Pid = pid
		st.NextRestartAt = time.Time{}
	})
	return nil
}

// failed records a failure to pull or start and schedules a retry.
func (s *supervisor) failed(desc string) <-chan time.Time {
	s.a.log.Error("module failed to start", "module", s.name, "err", desc)
	delay := s.a.backoff(s.failures)
	s.failures++
	next := s.now().Add(delay)
	s.set(func(st *ModuleStatus) {
		st.RuntimeStatus = StatusBackoff
		st.Description = desc
		st.NextRestartAt = next
		st.Pid = 0
	})
	return time.After(delay)
}

// onExit records an instance's exit.
func (s *supervisor) onExit(st runtime.State) {
	s.stopWaiting()
	code := st.ExitCode
	finished := st.FinishedAt
	if finished.IsZero() {
		finished = s.now()
	}
	s.set(func(m *ModuleStatus) {
		m.ExitCode = &code
		m.ExitedAt = finished.UTC()
		m.Pid = 0
		m.Description = exitDescription(st)
		if s.unhealthy != "" {
			m.Description = "stopped as unhealthy (" + s.unhealthy + "); " + m.Description
		}
		if !m.StartedAt.IsZero() && finished.Sub(m.StartedAt) >= s.a.cfg.ResetAfter {
			m.RestartCount = 0
		}
	})
}

func exitDescription(st runtime.State) string {
	if st.Description != "" {
		return st.Description
	}
	if st.ExitCode == runtime.ExitUnknown {
		return "exited; exit code unknown"
	}
	return "exited with code " + strconv.Itoa(st.ExitCode)
}

// onHealth records a change of the instance's health and, when it has become
// unhealthy and the restart policy is on-unhealthy or always, stops it: its
// exit then restarts it after the back-off, as a crash would.
func (s *supervisor) onHealth(ctx context.Context, ev healthEvent) {
	s.mu.Lock()
	policy := s.d.RestartPolicy
	s.mu.Unlock()
	if ev.healthy {
		s.a.log.Info("healthy again", "module", s.name)
		s.set(func(m *ModuleStatus) {
			if m.RuntimeStatus == StatusUnhealthy {
				m.RuntimeStatus, m.Description = StatusRunning, ""
			}
		})
		return
	}
	s.a.log.Warn("unhealthy", "module", s.name, "why", ev.why)
	s.set(func(m *ModuleStatus) {
		m.RuntimeStatus = StatusUnhealthy
		m.Description = ev.why
	})
	if policy != deployment.RestartOnUnhealthy && policy != deployment.RestartAlways {
		return // reported, left running
	}
	s.unhealthy = ev.why
	// Stop, keep watching: the exit comes through exitedC.
	if s.stopHealthy != nil {
		s.stopHealthy()
		s.stopHealthy, s.health = nil, nil
	}
	if err := s.rt().Stop(ctx, s.name, s.a.cfg.StopGrace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		s.a.log.Error("stop an unhealthy instance", "module", s.name, "err", err)
	}
}

// afterExit applies the restart policy to an exit.
func (s *supervisor) afterExit(st runtime.State) <-chan time.Time {
	s.mu.Lock()
	policy := s.d.RestartPolicy
	stopped := s.d.Status == deployment.StatusStopped
	count := s.st.RestartCount
	s.mu.Unlock()
	restart := false
	switch policy {
	case deployment.RestartNever:
	case deployment.RestartOnFailure, deployment.RestartOnUnhealthy:
		restart = st.ExitCode != 0 || s.unhealthy != ""
	default: // always
		restart = true
	}
	s.unhealthy = ""
	if stopped || !restart {
		status := StatusStopped
		if st.ExitCode != 0 {
			status = StatusFailed
		}
		s.set(func(m *ModuleStatus) { m.RuntimeStatus = status })
		return nil
	}
	delay := s.a.backoff(count)
	next := s.now().Add(delay)
	s.set(func(m *ModuleStatus) {
		m.RuntimeStatus = StatusBackoff
		m.NextRestartAt = next
	})
	s.restartPending = true
	return time.After(delay)
}

func (a *Agent) backoff(n int) time.Duration { return Backoff(a.cfg.BackoffBase, a.cfg.BackoffMax, n) }

// Backoff is the wait before restart n+1: min(base × 2^n, max).
func Backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// spec builds the runtime spec of a module's instance.
func (a *Agent) spec(d desiredModule, img *moduleImage) runtime.Spec {
	co := d.CreateOptions
	cfg := img.Config
	var args []string
	if len(co.Entrypoint) > 0 {
		args = append(append(args, co.Entrypoint...), co.Cmd...)
	} else {
		args = append(args, cfg.Entrypoint...)
		if len(co.Cmd) > 0 {
			args = append(args, co.Cmd...)
		} else {
			args = append(args, cfg.Cmd...)
		}
	}
	wd := cfg.WorkingDir
	if co.WorkingDir != "" {
		wd = co.WorkingDir
	}
	user := cfg.User
	if co.User != "" {
		user = co.User
	}
	env := newEnv()
	env.add(cfg.Env...)
	env.add(co.Env...)
	for _, k := range sortedKeys(d.Env) {
		env.set(k, d.Env[k])
	}
	for _, kv := range [][2]string{
		{"DEVICEID", a.cfg.DeviceID},
		{"MODULEID", d.Name},
		{"WORKLOADURI", "unix:///var/run/iotedge/workload.sock"},
		{"IOTHUBHOSTNAME", a.cfg.HubHostName},
		{"GATEWAYHOSTNAME", a.cfg.GatewayHostName},
		{"AUTHSCHEME", "sasToken"},
		{"MODULEGENERATIONID", d.GenerationID},
		{"APIVERSION", "2019-01-30"},
	} {
		env.set("IOTEDGE_"+kv[0], kv[1])
		env.set("OUTPOST_"+kv[0], kv[1])
	}
	if a.cfg.BrokerAddress != "" {
		env.set("OUTPOST_BROKER_ADDRESS", a.cfg.BrokerAddress)
	}
	labels := map[string]string{}
	for k, v := range co.Labels {
		labels[k] = v
	}
	labels[LabelModule] = d.Name
	labels[LabelHash] = d.Hash
	labels[LabelDigest] = img.Digest
	labels[LabelImage] = d.Image
	labels[LabelStart] = strconv.FormatInt(d.StartupOrder, 10)
	sock := a.workloadSocket(d.Name)
	a.ensureWorkload(d.Name)
	logDir := a.logDir(d.Name)
	if logDir != "" {
		_ = os.MkdirAll(logDir, 0o700)
	}
	return runtime.Spec{
		Name:           d.Name,
		Image:          d.Image,
		Rootfs:         img.Rootfs,
		Args:           args,
		Env:            env.list(),
		WorkingDir:     wd,
		User:           user,
		Binds:          co.HostConfig.Binds,
		WorkloadSocket: sock,
		Labels:         labels,
		LogDir:         logDir,
	}
}
