package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

// ShimEnv, when set, names the shim binary the runc and process runtimes start, or is
// "reexec" to re-execute the daemon's own binary as the shim. Unset, they start the
// outpost-shim binary installed beside the daemon's, and re-execute their own binary when
// there is none (outpost-daemon as released, go run, tests).
const ShimEnv = "OUTPOST_SHIM"

// shimCommand returns the binary and environment to start the shim listening on sock
// with: the outpost-shim binary (see ShimEnv) beside exe (this process's executable), or
// this very binary (even if replaced on disk meanwhile), which shim.Hook turns into the
// shim. The shim runs with one P (GOMAXPROCS=1), whichever binary it is: it needs no
// more, and each P costs it memory.
func shimCommand(sock, exe string) (path string, env []string) {
	switch p := os.Getenv(ShimEnv); p {
	case "reexec":
	case "":
		if exe != "" {
			p = filepath.Join(filepath.Dir(exe), shim.Binary)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, append(os.Environ(), "GOMAXPROCS=1")
			}
		}
	default:
		return p, append(os.Environ(), "GOMAXPROCS=1")
	}
	return "/proc/self/exe", append(os.Environ(), shim.Env+"="+sock, "GOMAXPROCS=1")
}

// shimSocket returns the socket of the shim that the binary at path (a shimCommand path)
// runs: named after that very file (device, inode, size, times), so that a daemon started
// from another build — an upgrade — starts a shim of its own for its new instances, while
// the old shim keeps serving the instances it started until they exit.
func (r *local) shimSocket(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("shim binary: %w", err)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d %d %d %d %d", st.Dev, st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())
	return filepath.Join(r.stateDir, "shim-"+strconv.FormatUint(h.Sum64(), 36)+".sock"), nil
}

// shimConn is a connection to a shim that has said hello.
type shimConn struct {
	net.Conn
	br    *bufio.Reader
	hello shim.Hello
}

// readLine reads one JSON line into v.
func (c *shimConn) readLine(v any) error {
	line, err := c.br.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// dialShim connects to the shim of this daemon's build, started if there is none. It
// holds the shim lock meanwhile: a shim exits only while holding it, so the one that said
// hello stays until the connection closes.
func (r *local) dialShim(ctx context.Context) (*shimConn, error) {
	exe, _ := os.Executable()
	path, env := shimCommand("", exe)
	sock, err := r.shimSocket(path)
	if err != nil {
		return nil, err
	}
	if path == "/proc/self/exe" {
		_, env = shimCommand(sock, exe)
	}
	lock, err := os.OpenFile(filepath.Join(r.stateDir, shim.LockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close() // unlocks
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if c, err := helloShim(sock); err == nil {
		return c, nil
	}
	// None, or one gone (killed): its socket is left.
	_ = os.Remove(sock)
	if err := r.spawnShim(ctx, path, env, sock); err != nil {
		return nil, err
	}
	return helloShim(sock)
}

// helloShim connects to the shim on sock and reads its hello.
func helloShim(sock string) (*shimConn, error) {
	addr, done, err := shim.SocketAddr(sock)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("unix", addr, 5*time.Second)
	done()
	if err != nil {
		return nil, err
	}
	c := &shimConn{Conn: nc, br: bufio.NewReader(nc)}
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.readLine(&c.hello); err != nil {
		nc.Close()
		return nil, fmt.Errorf("shim on %s: no hello: %w", sock, err)
	}
	if c.hello.Proto != shim.Proto {
		nc.Close()
		return nil, fmt.Errorf("shim on %s speaks protocol %d, want %d", sock, c.hello.Proto, shim.Proto)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// spawnShim starts the shim binary path to listen on sock, in a session of its own, and
// waits until it listens.
func (r *local) spawnShim(ctx context.Context, path string, env []string, sock string) error {
	logPath := filepath.Join(r.stateDir, "shim.log")
	shimLog, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer shimLog.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	cmd := &exec.Cmd{
		Path:        path,
		Args:        []string{shim.Binary, shim.Arg, sock},
		Env:         env,
		Stderr:      shimLog,
		ExtraFiles:  []*os.File{readyW},
		Dir:         "/",
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("start the shim %s: %w", path, err)
	}
	go func() { _ = cmd.Wait() }() // reaps the shim whenever it ends (while we run)
	helloc := make(chan shim.Hello, 1)
	go func() {
		var h shim.Hello
		if err := json.NewDecoder(readyR).Decode(&h); err != nil {
			h.Error = "it exited without a word (see " + logPath + ")"
		}
		helloc <- h
	}()
	select {
	case h := <-helloc:
		if h.Error != "" {
			return fmt.Errorf("start the shim %s: %s", path, h.Error)
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill() // it started nothing yet
		return ctx.Err()
	}
}

// startShim hands the instance name in dir (instance.json written) to the shim and waits
// for its reply: the instance runs, or why it does not.
func (r *local) startShim(ctx context.Context, dir, name string) error {
	c, err := r.dialShim(ctx)
	if err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(shim.Request{Dir: dir}); err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	replyc := make(chan shim.Reply, 1)
	go func() {
		var rep shim.Reply
		if err := c.readLine(&rep); err != nil {
			rep.Error = fmt.Sprintf("the shim (pid %d) went without a word (see %s)", c.hello.Pid, filepath.Join(r.stateDir, "shim.log"))
		}
		replyc <- rep
	}()
	var rep shim.Reply
	select {
	case rep = <-replyc:
	case <-ctx.Done():
		// The shim is starting it: wait for its word (runc's start ends), then end what
		// it started, so that what Start's caller gave up on is not left running.
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		select {
		case rep = <-replyc:
		case <-t.C:
			return ctx.Err()
		}
		if rep.Error == "" {
			var rs runState
			if shim.ReadJSON(dir, "state.json", &rs) == nil {
				_ = r.kill(context.Background(), name, &rs)
			}
		}
		return ctx.Err()
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}
