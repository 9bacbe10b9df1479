package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Each module's workload socket serves Config.Workload's handler for the
// module (internal/workload, the daemon's). Without one (an agent run alone,
// in tests) it answers every request with 501, so that a module sees a clear
// error rather than a missing file.

// ensureWorkload listens on a module's workload socket if it does not yet.
func (a *Agent) ensureWorkload(module string) {
	sock := a.workloadSocket(module)
	if sock == "" {
		return
	}
	a.wlMu.Lock()
	defer a.wlMu.Unlock()
	if _, ok := a.workload[module]; ok {
		return
	}
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		a.log.Error("workload socket", "module", module, "err", err)
		return
	}
	if err := removeStaleSocket(sock); err != nil {
		a.log.Error("workload socket", "module", module, "err", err)
		return
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		a.log.Error("workload socket", "module", module, "err", err)
		return
	}
	_ = os.Chmod(sock, 0o666) // modules may run as any user
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotImplemented)
		_, _ = w.Write([]byte(`{"message":"this agent serves no workload API"}` + "\n"))
	})
	if a.cfg.Workload != nil {
		h = a.cfg.Workload(module)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	a.workload[module] = srv
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("workload socket", "module", module, "err", err)
		}
	}()
}

// removeStaleSocket removes the socket an earlier daemon left at path. Anything
// else there is left alone and named in the error: the daemon replaces only
// its own sockets.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != fs.ModeSocket:
		kind := "a file"
		if fi.IsDir() {
			kind = "a directory"
		}
		return fmt.Errorf("%s is %s, not a socket: the daemon replaces only a workload socket it left; move it away and restart the module", path, kind)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the stale workload socket %s: %w", path, err)
	}
	return nil
}

// closeWorkload stops serving a module's socket ("" for every module).
func (a *Agent) closeWorkload(module string) {
	a.wlMu.Lock()
	defer a.wlMu.Unlock()
	for m, srv := range a.workload {
		if module == "" || m == module {
			_ = srv.Close()
			delete(a.workload, m)
		}
	}
}
