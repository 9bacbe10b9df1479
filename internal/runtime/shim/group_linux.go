//go:build linux

package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Hook turns a process re-executed by the runtime (Env set, argv as Main wants it) into a
// shim before main runs: the package init of internal/runtime calls it, so that a binary
// linking the runtime (outpost, a test binary) is its own shim when no outpost-shim is
// installed beside it.
func Hook() {
	if sock := os.Getenv(Env); sock != "" && len(os.Args) == 3 && os.Args[1] == Arg && os.Args[2] == sock {
		os.Unsetenv(Env)
		os.Exit(Serve(sock))
	}
}

// Main is cmd/outpost-shim's main: argv [name, Arg, socket path].
func Main() int {
	if len(os.Args) != 3 || os.Args[1] != Arg || os.Args[2] == "" {
		fmt.Fprintf(os.Stderr, "%s: the runtime shim of outpost's runc and process runtimes; outpost daemon starts it, not people\n", Binary)
		return 2
	}
	return Serve(os.Args[2])
}

// Proto is the version of what the shim and the daemon say on the socket. A shim's socket
// is named after its binary (see the runtime), so a daemon meets only shims of the build it
// starts; Proto guards against the rest.
const Proto = 1

// Hello is the shim's first line on every connection, and what it writes on fd 3 once it
// listens (or Error, when it cannot).
type Hello struct {
	Pid   int    `json:"pid,omitempty"`
	Proto int    `json:"proto,omitempty"`
	Error string `json:"error,omitempty"`
}

// Request asks the shim to start the instance in Dir (instance.json written): one request
// per connection, answered by a Reply.
type Request struct {
	Dir string `json:"dir"`
}

// LockName is the lock file, beside the shims' sockets, that a daemon holds while it looks
// for a shim (or starts one) and says hello, and that a shim holds from the moment it
// decides to exit: so a daemon never hands an instance to a shim on its way out.
const LockName = "shim.lock"

// server is the shim of every instance a daemon (one build of it) starts in one runtime
// state dir: it starts them when asked on its socket, keeps their logs, waits for them,
// records their exit, and exits itself once it has no instance and no connection left.
type server struct {
	sock string
	lock string
	self ProcRef
	reap *reaper

	mu      sync.Mutex
	active  int  // instances being started or running
	conns   int  // connections open
	exiting bool // the socket is gone: accept nothing more
	ln      *os.File
}

// Serve is the shim listening on the unix socket sock; it returns the shim's exit code. It
// reports on fd 3 (a Hello) once it listens, is in a session of its own, ignores SIGTERM,
// SIGINT and SIGHUP, and so outlives the daemon.
func Serve(sock string) int {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	ready := os.NewFile(3, "ready")
	say := func(h Hello) {
		if ready != nil {
			_ = json.NewEncoder(ready).Encode(h)
			ready.Close()
			ready = nil
		}
	}
	// As a child subreaper, a runc container's init becomes our child once runc exits, and
	// so does what an instance leaves behind: all are reaped here.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		say(Hello{Error: "prctl: " + err.Error()})
		return 1
	}
	s := &server{sock: sock, lock: filepath.Join(filepath.Dir(sock), LockName), self: RefOf(os.Getpid()), reap: newReaper()}
	ln, err := listenUnix(sock)
	if err != nil {
		say(Hello{Error: err.Error()})
		return 1
	}
	s.ln = ln
	say(Hello{Pid: os.Getpid(), Proto: Proto})
	// The daemon that started us holds the lock until it has said hello: nothing to do
	// until then but to look again.
	s.idle()
	s.accept()
	select {} // exit decides when the process ends
}

// listenUnix listens on the unix socket path (mode 0600), with its fd in Go's poller.
func listenUnix(path string) (*os.File, error) {
	addr, done, err := SocketAddr(path)
	if err != nil {
		return nil, err
	}
	defer done()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	old := unix.Umask(0o177)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: addr})
	unix.Umask(old)
	if err == nil {
		err = unix.Listen(fd, 64)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// SocketAddr returns the name to bind or connect to for the unix socket path: path itself,
// or, when it is too long for a socket address (108 bytes), the same file reached through
// an fd of its directory; call done once bound or connected.
func SocketAddr(path string) (addr string, done func(), err error) {
	if len(path) < 100 {
		return path, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + filepath.Base(path), func() { unix.Close(fd) }, nil
}

// accept serves connections until the listener is closed.
func (s *server) accept() {
	rc, err := s.ln.SyscallConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shim: listener:", err)
		return
	}
	for {
		var nfd int
		var aerr error
		err := rc.Read(func(fd uintptr) bool {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return !errors.Is(aerr, unix.EAGAIN)
		})
		if err != nil {
			return // closed: exiting
		}
		if aerr != nil {
			if errors.Is(aerr, unix.EINTR) || errors.Is(aerr, unix.ECONNABORTED) {
				continue
			}
			fmt.Fprintln(os.Stderr, "shim: accept:", aerr)
			time.Sleep(10 * time.Millisecond) // out of fds: let instances end
			continue
		}
		s.mu.Lock()
		if s.exiting {
			s.mu.Unlock()
			unix.Close(nfd)
			continue
		}
		s.conns++
		s.mu.Unlock()
		go s.serveConn(os.NewFile(uintptr(nfd), "conn"))
	}
}

// serveConn says hello, reads one request, starts the instance and replies.
func (s *server) serveConn(c *os.File) {
	defer func() {
		c.Close()
		s.mu.Lock()
		s.conns--
		s.mu.Unlock()
		s.idle()
	}()
	// Only the shim's own user (the daemon's) may ask: the socket's mode says so too.
	if cred, err := peerCred(c); err != nil || (cred.Uid != uint32(os.Getuid()) && cred.Uid != 0) {
		return
	}
	enc := json.NewEncoder(c)
	if enc.Encode(Hello{Pid: s.self.Pid, Proto: Proto}) != nil {
		return
	}
	var req Request
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return // the daemon looked for us, or gave up
	}
	if err := json.Unmarshal(line, &req); err != nil || !filepath.IsAbs(req.Dir) {
		_ = enc.Encode(Reply{Error: fmt.Sprintf("bad request %q: want {\"dir\": absolute path}", line)})
		return
	}
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	in, rep := s.start(req.Dir)
	if in == nil {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	} else {
		go s.monitor(in)
	}
	// A daemon gone meanwhile finds the instance by its files, as after any restart.
	_ = enc.Encode(rep)
}

func peerCred(c *os.File) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// idle exits the shim when it has nothing left to do: no instance, no connection. A
// daemon that holds the lock (it is looking for this shim) makes it look again a second
// later.
func (s *server) idle() {
	s.mu.Lock()
	busy := s.active > 0 || s.conns > 0 || s.exiting
	s.mu.Unlock()
	if busy {
		return
	}
	fd, err := unix.Open(s.lock, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err == nil {
		if err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		time.AfterFunc(time.Second, s.idle)
		return
	}
	s.mu.Lock()
	if s.active > 0 || s.conns > 0 {
		s.mu.Unlock()
		unix.Close(fd) // unlocks
		return
	}
	s.exiting = true
	s.mu.Unlock()
	// Under the lock no daemon is between its connect and our hello: once the socket is
	// gone, the next one starts a new shim. The lock goes with the process.
	_ = os.Remove(s.sock)
	s.ln.Close()
	os.Exit(0)
}

// reaper reaps every child (and every orphan reparented to us) on SIGCHLD and hands the
// exit status of the processes waited for to their waiters.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus
	// early holds the status of processes reaped before anyone waited for them (a runc
	// container's init that exits as runc does), for a few seconds.
	early map[int]earlyExit
}

type earlyExit struct {
	ws unix.WaitStatus
	at time.Time
}

func newReaper() *reaper {
	r := &reaper{waiting: map[int]chan unix.WaitStatus{}, early: map[int]earlyExit{}}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGCHLD)
	go func() {
		for range sigc {
			r.reapAll()
		}
	}()
	return r
}

// start starts a child and returns its pid and where its exit status comes. It holds the
// reaper's lock meanwhile, so that the child cannot be reaped before it is waited for.
func (r *reaper) start(path string, argv []string, attr *os.ProcAttr) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(path, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	pid := p.Pid
	_ = p.Release() // reaped by reapAll, never by os
	delete(r.early, pid)
	ch := make(chan unix.WaitStatus, 1)
	r.waiting[pid] = ch
	return pid, ch, nil
}

// wait returns where the exit status of pid, a process that is or was our child, comes.
func (r *reaper) wait(pid int) <-chan unix.WaitStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan unix.WaitStatus, 1)
	if e, ok := r.early[pid]; ok {
		delete(r.early, pid)
		ch <- e.ws
		return ch
	}
	r.waiting[pid] = ch
	return ch
}

// forget stops waiting for pid.
func (r *reaper) forget(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, pid)
}

func (r *reaper) reapAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			break
		}
		if ch, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			ch <- ws
			continue
		}
		r.early[pid] = earlyExit{ws, now}
	}
	for pid, e := range r.early {
		if now.Sub(e.at) > 10*time.Second {
			delete(r.early, pid)
		}
	}
}

// instance is one instance the shim runs.
type instance struct {
	dir        string
	rec        Instance
	main       int
	exited     <-chan unix.WaitStatus
	lw         *LogWriter
	outR, errR *os.File
}

// start starts the instance in dir: its reply, and the instance when it runs.
func (s *server) start(dir string) (*instance, Reply) {
	var closers []func() error
	fail := func(format string, args ...any) (*instance, Reply) {
		for _, c := range closers {
			_ = c()
		}
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(os.Stderr, "shim: %s: %s\n", filepath.Base(dir), msg)
		return nil, Reply{Error: msg}
	}
	in := &instance{dir: dir}
	if err := ReadJSON(dir, "instance.json", &in.rec); err != nil {
		return fail("%v", err)
	}
	l := in.rec.Launch
	lw, err := OpenLogWriter(l.LogDir, l.LogMax, l.LogFiles)
	if err != nil {
		return fail("logs: %v", err)
	}
	closers = append(closers, lw.Close)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail("%v", err)
	}
	closers = append(closers, devnull.Close)
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	closers = append(closers, outR.Close, outW.Close)
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	closers = append(closers, errR.Close, errW.Close)
	files := []*os.File{devnull, outW, errW}

	switch in.rec.Kind {
	case KindProcess:
		attr := &syscall.SysProcAttr{Setpgid: true}
		if l.SetCred {
			attr.Credential = &syscall.Credential{Uid: l.UID, Gid: l.GID, Groups: l.Groups}
		}
		pid, exited, err := s.reap.start(l.Path, l.Args, &os.ProcAttr{Dir: l.Dir, Env: l.Env, Files: files, Sys: attr})
		if err != nil {
			return fail("start %s: %v", l.Args[0], err)
		}
		in.main, in.exited = pid, exited
	case KindRunc:
		pidFile := filepath.Join(dir, "container.pid")
		runcLog := filepath.Join(dir, "runc.log")
		args := []string{l.Runc, "--root", l.RuncRoot, "--log", runcLog, "--log-format", "json",
			"run", "--detach", "--pid-file", pidFile, "--bundle", l.Bundle, l.ID}
		_, runcExited, err := s.reap.start(l.Runc, args, &os.ProcAttr{Files: files, Env: os.Environ()})
		if err != nil {
			return fail("start runc: %v", err)
		}
		if ws := <-runcExited; !ws.Exited() || ws.ExitStatus() != 0 {
			return fail("runc run: %s", RuncError(runcLog, describe(ws)))
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return fail("runc run: %v", err)
		}
		if in.main, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return fail("runc run: pid file: %v", err)
		}
		in.exited = s.reap.wait(in.main)
	default:
		return fail("unknown kind %q", in.rec.Kind)
	}
	started := time.Now()
	outW.Close()
	errW.Close()
	devnull.Close()
	in.lw, in.outR, in.errR = lw, outR, errR
	if PPid(in.main) != os.Getpid() && RefOf(in.main).Alive() {
		// Not our child (cannot happen: runc's init is reparented to us): wait for it to
		// go another way, its exit code unknown.
		s.reap.forget(in.main)
		exited := make(chan unix.WaitStatus, 1)
		in.exited = exited
		go func(ref ProcRef) {
			_ = ref.PollWait(context.Background())
			exited <- unix.WaitStatus(0xff00) // exited 255: unknown
		}(RefOf(in.main))
	}
	rs := RunState{Shim: s.self, Main: RefOf(in.main), StartedAt: started}
	if err := WriteJSON(dir, "state.json", rs); err != nil {
		// The instance runs: say so, and record what we can later.
		fmt.Fprintf(os.Stderr, "shim: %s: state.json: %v\n", filepath.Base(dir), err)
	}
	return in, Reply{Pid: in.main}
}

// monitor copies the instance's output to its logs, waits for it to exit, and records how.
func (s *server) monitor(in *instance) {
	defer func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
		s.idle()
	}()
	defer in.lw.Close()
	name := filepath.Base(in.dir)
	var copying sync.WaitGroup
	copying.Go(func() { in.lw.CopyLines(in.outR, "stdout"); in.outR.Close() })
	copying.Go(func() { in.lw.CopyLines(in.errR, "stderr"); in.errR.Close() })
	ws := <-in.exited
	finished := time.Now()
	// The pipes end when the last writer is gone; a process instance's own children may
	// hold them longer: do not wait for those.
	drained := make(chan struct{})
	go func() { copying.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		// Closing the read ends ends the copies; what the children write then gets EPIPE.
		_ = in.outR.SetReadDeadline(time.Now())
		_ = in.errR.SetReadDeadline(time.Now())
		<-drained
	}
	if in.rec.Kind == KindRunc {
		// The rootfs is of no more use (a new instance gets a new one): unmount it now
		// rather than at Remove, before exit.json says the instance has exited.
		if err := UnmountRootfs(in.dir); err != nil {
			fmt.Fprintf(os.Stderr, "shim: %s: %v\n", name, err)
		}
	}
	es := ExitState{FinishedAt: finished}
	switch {
	case ws.Exited():
		es.ExitCode = ws.ExitStatus()
		es.Description = fmt.Sprintf("exited with code %d", es.ExitCode)
	case ws.Signaled():
		sig := ws.Signal()
		es.ExitCode = 128 + int(sig)
		es.Signal = unix.SignalName(sig)
		es.Description = fmt.Sprintf("killed by %s (exit code %d)", es.Signal, es.ExitCode)
	default:
		es.ExitCode = ExitUnknown
		es.Description = "exited, status unknown"
	}
	if err := WriteJSON(in.dir, "exit.json", es); err != nil {
		fmt.Fprintf(os.Stderr, "shim: %s: exit.json: %v\n", name, err)
		return
	}
	if in.rec.Kind == KindRunc {
		// runc keeps a container's state (and cgroup) until it is deleted. The daemon
		// sees the exit in exit.json and goes on meanwhile: the next instance has a
		// runc id of its own, and the daemon deletes the state only once this shim is
		// gone (see the runtime's undo).
		l := in.rec.Launch
		args := []string{l.Runc, "--root", l.RuncRoot, "delete", "--force", l.ID}
		_, done, err := s.reap.start(l.Runc, args, &os.ProcAttr{Dir: "/", Files: []*os.File{nil, os.Stderr, os.Stderr}})
		if err != nil {
			fmt.Fprintf(os.Stderr, "shim: %s: runc delete: %v\n", name, err)
			return
		}
		if ws := <-done; !ws.Exited() || ws.ExitStatus() != 0 {
			fmt.Fprintf(os.Stderr, "shim: %s: runc delete: %s\n", name, describe(ws))
		}
	}
}

// describe says how a process ended.
func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "signal: " + unix.SignalName(ws.Signal())
	}
	return "status unknown"
}

// PPid returns the parent pid of pid (field 4 of /proc/<pid>/stat), 0 when there is no
// such process.
func PPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}
