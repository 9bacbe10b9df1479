// Package registrytest runs real OCI registries for tests: the in-process
// registry of go-containerregistry, the CNCF distribution registry (Debian's
// docker-registry package) as a process with its own config and data dir,
// and a proxy in front of either that injects faults, counts requests and
// can die in the middle of an upload.
package registrytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/crypto/bcrypt"
)

// Registry is a registry running for a test, on loopback.
type Registry struct {
	// Addr is host:port, what image references start with.
	Addr string
	// Dir is the storage dir of a CNCF registry ("" in process).
	Dir string

	users map[string]string
	cmd   *exec.Cmd
	exit  chan struct{}
	srv   *httptest.Server
	logs  *lockedBuffer
}

// Ref returns a reference to repo (with an optional :tag or @digest) on r.
func (r *Registry) Ref(repo string) string { return r.Addr + "/" + repo }

// URL returns r's base URL.
func (r *Registry) URL() string { return "http://" + r.Addr }

// InProcess starts go-containerregistry's registry on 127.0.0.1 for the
// test; it stops at the test's end.
func InProcess(t testing.TB) *Registry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &Registry{Addr: strings.TrimPrefix(srv.URL, "http://"), srv: srv}
}

// Handler is an in-process registry's handler without a server, to put
// behind a Proxy.
func Handler() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

// DistributionOptions configure a CNCF registry.
type DistributionOptions struct {
	// Dir is the storage dir (default: a new t.TempDir()). Give the Dir of
	// a registry that was stopped to start it again on the same data.
	Dir string
	// Addr is where it listens (default: a free port on 127.0.0.1).
	Addr string
	// Users turns on basic auth through an htpasswd file: user → password.
	Users map[string]string
}

// DistributionBinary is the CNCF registry's binary as Debian installs it.
const DistributionBinary = "docker-registry"

// Distribution starts the CNCF distribution registry (Debian package
// docker-registry) with a config of its own — never the package's
// /etc/docker/registry/config.yml — and waits until it answers GET /v2/.
// It is stopped at the test's end. The test is skipped when the binary is
// missing, unless CI is set, where that fails it.
func Distribution(t testing.TB, opts DistributionOptions) *Registry {
	t.Helper()
	bin, err := exec.LookPath(DistributionBinary)
	if err != nil {
		msg := "the CNCF registry (" + DistributionBinary + ") is not installed: apt-get install docker-registry (scripts/test does)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Addr == "" {
		opts.Addr = FreeAddr(t)
	}
	confDir := t.TempDir()
	auth := ""
	if len(opts.Users) > 0 {
		var lines bytes.Buffer
		for u, p := range opts.Users {
			h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&lines, "%s:%s\n", u, h)
		}
		file := filepath.Join(confDir, "htpasswd")
		if err := os.WriteFile(file, lines.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: outpost-test\n    path: %s\n", file)
	}
	conf := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: outpost-registrytest
%s`, opts.Dir, opts.Addr, auth)
	confFile := filepath.Join(confDir, "config.yml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	r := &Registry{Addr: opts.Addr, Dir: opts.Dir, users: opts.Users, exit: make(chan struct{}), logs: &lockedBuffer{}}
	r.cmd = exec.Command(bin, "serve", confFile)
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	dieWithParent(r.cmd)
	// The registry reads REGISTRY_* variables as config overrides (podman's
	// REGISTRY_AUTH_FILE would become an "auth: file:" section): none of
	// them goes through.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			r.cmd.Env = append(r.cmd.Env, kv)
		}
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { r.cmd.Wait(); close(r.exit) }()
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("%s at %s logged:\n%s", DistributionBinary, r.Addr, r.logs.String())
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case <-r.exit:
			t.Fatalf("%s exited at start: %v\n%s", DistributionBinary, r.cmd.ProcessState, r.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer GET /v2/ at %s within 15s (last: %v)\n%s", DistributionBinary, r.Addr, err, r.logs.String())
		}
	}
}

// Kill stops a CNCF registry at once (SIGKILL), as a crash would, and
// waits for it to be gone. Restart it with Distribution and r.Dir, r.Addr.
func (r *Registry) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.exit
}

// Options returns the options r was started with, to start it again.
func (r *Registry) Options() DistributionOptions {
	return DistributionOptions{Dir: r.Dir, Addr: r.Addr, Users: r.users}
}

// FreeAddr returns a 127.0.0.1 address nothing listens on (for a moment).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// DockerConfig writes a docker config.json with an auths entry for host
// (user:password, base64, as docker login writes it), points DOCKER_CONFIG
// at its dir for the test, and returns the file's path.
func DockerConfig(t testing.TB, host, user, password string) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "config.json")
	auth := base64Std(user + ":" + password)
	body := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, auth)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	return file
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// errKilled is what a killed proxy's request bodies fail with.
var errKilled = errors.New("registrytest: proxy killed")
