package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The docker runtime speaks the Docker Engine API (the Moby API) over the engine's socket
// with net/http and the few JSON fields it needs, rather than through Docker's Go client:
// that client pulls in a large module graph (the engine's own API types, OpenTelemetry,
// gRPC…) for the dozen calls below, and the API is stable and documented. Measured with
// github.com/moby/moby/client v0.6.2 merely linked in (2026-11): 17 more modules, a binary
// 0.7 MB larger, and 0.9 MB more RSS at start from its packages' init, on a daemon whose
// budget is 20 MB with 10 modules (it uses 19). Paths carry no version, so the engine
// answers in its own (engines ≥ 29 refuse versions < 1.44, older ones know nothing newer
// than theirs).
//
// Containers are named ContainerID(Spec.Name) and labelled outpost.module=<Spec.Name> and
// outpost.owner=<state dir>, so that List finds exactly this daemon's containers and two
// daemons (or test runs) may share an engine. Logs are docker's own, json-file capped like
// the other runtimes' files.

// Labels the docker runtime puts on its containers.
const (
	LabelModule = "outpost.module"
	LabelOwner  = "outpost.owner"
)

type dockerRuntime struct {
	hc    *http.Client
	base  string // http://docker or http://host:port
	owner string // the state dir: containers' owner label, and where images.json is

	imagesMu sync.Mutex // images.json
}

// dockerEndpoint returns how to reach the engine: DOCKER_HOST (unix:// or tcp:// without
// TLS), else /var/run/docker.sock.
func dockerEndpoint() (hc *http.Client, base string, err error) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, "", fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	switch u.Scheme {
	case "unix":
		sock := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		base = "http://docker"
	case "tcp", "http":
		if os.Getenv("DOCKER_TLS_VERIFY") != "" {
			return nil, "", fmt.Errorf("DOCKER_HOST %q: TLS to the engine is not supported; use its unix socket", host)
		}
		base = "http://" + u.Host
	default:
		return nil, "", fmt.Errorf("DOCKER_HOST %q: want unix:// or tcp://", host)
	}
	return &http.Client{Transport: tr}, base, nil
}

func dockerAnswers() bool {
	hc, base, err := dockerEndpoint()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d := &dockerRuntime{hc: hc, base: base}
	return d.do(ctx, http.MethodGet, "/_ping", nil, nil, nil) == nil
}

func newDocker(stateDir string) (Runtime, error) {
	hc, base, err := dockerEndpoint()
	if err != nil {
		return nil, fmt.Errorf("docker runtime: %w", err)
	}
	owner := stateDir
	if owner != "" {
		if owner, err = filepath.Abs(stateDir); err != nil {
			return nil, err
		}
	}
	d := &dockerRuntime{hc: hc, base: base, owner: owner}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := d.do(ctx, http.MethodGet, "/_ping", nil, nil, nil); err != nil {
		return nil, fmt.Errorf("docker runtime: the engine does not answer (is dockerd running? DOCKER_HOST=%s): %v: %w",
			os.Getenv("DOCKER_HOST"), err, ErrUnavailable)
	}
	return d, nil
}

func (d *dockerRuntime) Name() string   { return KindDocker }
func (d *dockerRuntime) Isolated() bool { return true }

// dockerError is the engine's error answer.
type dockerError struct {
	Status  int
	Message string
}

func (e *dockerError) Error() string { return fmt.Sprintf("docker: %s (HTTP %d)", e.Message, e.Status) }

func (e *dockerError) Is(target error) bool {
	return (target == ErrNotFound && e.Status == http.StatusNotFound) ||
		(target == ErrExists && e.Status == http.StatusConflict)
}

// request sends one call and returns the response when its status is 2xx or 304.
func (d *dockerRuntime) request(ctx context.Context, method, path string, q url.Values, body any, hdr ...http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := d.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range hdr {
		for k, v := range h {
			req.Header[k] = v
		}
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) != nil || m.Message == "" {
		m.Message = strings.TrimSpace(string(b))
	}
	return nil, &dockerError{Status: resp.StatusCode, Message: m.Message}
}

func (d *dockerRuntime) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := d.request(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNotModified {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

type dockerCreate struct {
	Image      string
	Entrypoint []string          `json:",omitempty"`
	Cmd        []string          `json:",omitempty"`
	Env        []string          `json:",omitempty"`
	WorkingDir string            `json:",omitempty"`
	User       string            `json:",omitempty"`
	Labels     map[string]string `json:",omitempty"`
	// Healthcheck is always {"Test": ["NONE"]}: the agent runs the image's health check
	// itself, through Exec, for every runtime alike; the engine's own would run it a
	// second time and keep a health state the agent does not read.
	Healthcheck *dockerHealthcheck `json:",omitempty"`
	HostConfig  dockerHostConfig
}

type dockerHealthcheck struct {
	Test []string
}

type dockerHostConfig struct {
	Binds       []string `json:",omitempty"`
	NetworkMode string
	LogConfig   struct {
		Type   string
		Config map[string]string
	}
}

func (d *dockerRuntime) Start(ctx context.Context, spec Spec) error {
	if err := checkSpec(spec, false); err != nil {
		return err
	}
	if spec.Image == "" {
		return fmt.Errorf("start %s: spec: Image is empty", spec.Name)
	}
	id := ContainerID(spec.Name)
	c := dockerCreate{Image: spec.Image, Env: spec.Env, WorkingDir: spec.WorkingDir, User: spec.User,
		Labels: map[string]string{}, Healthcheck: &dockerHealthcheck{Test: []string{"NONE"}},
		HostConfig: dockerHostConfig{Binds: spec.Binds, NetworkMode: "host"}}
	if len(spec.Args) > 0 {
		c.Entrypoint, c.Cmd = spec.Args[:1], spec.Args[1:]
	}
	for k, v := range spec.Labels {
		c.Labels[k] = v
	}
	c.Labels[LabelModule], c.Labels[LabelOwner] = spec.Name, d.owner
	src, dst, err := prepareWorkloadMount(spec.WorkloadSocket)
	if err != nil {
		return fmt.Errorf("start %s: %w", spec.Name, err)
	}
	if src != "" {
		c.HostConfig.Binds = append(append([]string(nil), c.HostConfig.Binds...), src+":"+dst)
	}
	max, files := spec.logCaps()
	c.HostConfig.LogConfig.Type = "json-file"
	c.HostConfig.LogConfig.Config = map[string]string{"max-size": strconv.FormatInt(max, 10), "max-file": strconv.Itoa(files)}

	q := url.Values{"name": {id}}
	err = d.do(ctx, http.MethodPost, "/containers/create", q, c, nil)
	if errors.Is(err, ErrNotFound) { // no such image: the engine pulls it
		if err = d.pull(ctx, spec.Image, spec.RegistryAuth); err != nil {
			return fmt.Errorf("start %s: %w", spec.Name, err)
		}
		err = d.do(ctx, http.MethodPost, "/containers/create", q, c, nil)
	}
	if err != nil {
		if errors.Is(err, ErrExists) {
			return fmt.Errorf("start %s: %w (container %s; remove it first): %v", spec.Name, ErrExists, id, err)
		}
		return fmt.Errorf("start %s: create: %w", spec.Name, err)
	}
	if err := d.do(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
		_ = d.do(context.WithoutCancel(ctx), http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
		return fmt.Errorf("start %s: %w", spec.Name, err)
	}
	return nil
}

// pull asks the engine to pull ref, and reads its progress to the end for an error.
func (d *dockerRuntime) pull(ctx context.Context, ref string, auth *RegistryAuth) error {
	hdr := http.Header{}
	if auth != nil {
		b, _ := json.Marshal(auth)
		hdr.Set("X-Registry-Auth", base64.URLEncoding.EncodeToString(b))
	}
	q := url.Values{"fromImage": {ref}}
	if !strings.Contains(ref, "@") && !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
		q.Set("tag", "latest") // with neither tag nor digest the engine pulls every tag
	}
	resp, err := d.request(ctx, http.MethodPost, "/images/create", q, nil, hdr)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		if m.Error != "" {
			return fmt.Errorf("pull %s: %s", ref, m.Error)
		}
	}
}

// PullImage has the engine pull ref and returns what it then has of it.
func (d *dockerRuntime) PullImage(ctx context.Context, ref string, auth *RegistryAuth) (EngineImage, error) {
	if _, err := name.ParseReference(ref); err != nil {
		return EngineImage{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := d.pull(ctx, ref, auth); err != nil {
		return EngineImage{}, err
	}
	img, err := d.inspectImage(ctx, ref)
	if err != nil {
		return EngineImage{}, fmt.Errorf("pull %s: pulled, then: %w", ref, err)
	}
	if err := d.usedImage(ref, img, true); err != nil {
		return EngineImage{}, fmt.Errorf("pull %s: record it: %w", ref, err)
	}
	return img, nil
}

// InspectImage returns what the engine has of ref, without pulling it; for an image this
// runtime pulled, that counts as a use.
func (d *dockerRuntime) InspectImage(ctx context.Context, ref string) (EngineImage, error) {
	img, err := d.inspectImage(ctx, ref)
	if err != nil {
		return img, err
	}
	if err := d.usedImage(ref, img, false); err != nil {
		return EngineImage{}, fmt.Errorf("image %s: %w", ref, err)
	}
	return img, nil
}

func (d *dockerRuntime) inspectImage(ctx context.Context, ref string) (EngineImage, error) {
	if _, err := name.ParseReference(ref); err != nil {
		return EngineImage{}, fmt.Errorf("image %s: %w", ref, err)
	}
	var in struct {
		ID          string `json:"Id"`
		RepoDigests []string
		Config      *v1.Config // the same JSON as the engine's (a null one for some imports)
	}
	if err := d.do(ctx, http.MethodGet, "/images/"+ref+"/json", nil, nil, &in); err != nil {
		return EngineImage{}, fmt.Errorf("image %s: %w", ref, err)
	}
	img := EngineImage{ID: in.ID, Digest: repoDigest(ref, in.RepoDigests)}
	if in.Config != nil {
		img.Config = *in.Config
	}
	return img, nil
}

// repoDigest returns the digest ref resolved to: ref's own when it has one, else the one
// of the engine's RepoDigests ("repository@sha256:…") for ref's repository, both names
// normalised alike (the engine writes docker.io's short: "alpine@…"); "" when none is.
func repoDigest(ref string, repoDigests []string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ""
	}
	if dg, ok := r.(name.Digest); ok {
		return dg.DigestStr()
	}
	for _, rd := range repoDigests {
		repo, dg, ok := strings.Cut(rd, "@")
		if !ok {
			continue
		}
		if rr, err := name.NewRepository(repo); err == nil && rr.Name() == r.Context().Name() {
			return dg
		}
	}
	return ""
}

// Exec runs args in the container through the engine's exec API, which gives the command
// the container's environment, user and working dir. When ctx ends first Exec returns
// ctx's error, but the command runs on to its end: the Engine API cannot kill an exec (it
// has no call for it, and the exec's pid names a process in the engine's pid namespace,
// which a remote or rootless engine does not share with us).
func (d *dockerRuntime) Exec(ctx context.Context, name string, args []string) (ExecResult, error) {
	if len(args) == 0 || args[0] == "" {
		return ExecResult{}, fmt.Errorf("exec %s: no command", name)
	}
	in, err := d.inspect(ctx, name)
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec %s: %w", name, err)
	}
	if !in.State.Running {
		return ExecResult{}, fmt.Errorf("exec %s: %w", name, ErrNotRunning)
	}
	var ex struct {
		ID string `json:"Id"`
	}
	body := map[string]any{"AttachStdout": true, "AttachStderr": true, "Cmd": args}
	if err := d.do(ctx, http.MethodPost, "/containers/"+ContainerID(name)+"/exec", nil, body, &ex); err != nil {
		return ExecResult{}, d.execError(ctx, name, err)
	}
	// The engine answers with the command's output (multiplexed: no TTY) until it ends.
	resp, err := d.request(ctx, http.MethodPost, "/exec/"+ex.ID+"/start", nil, map[string]bool{"Detach": false, "Tty": false})
	if err != nil {
		return ExecResult{}, d.execError(ctx, name, err)
	}
	out := newTailBuffer(MaxExecOutput)
	err = demux(out, resp.Body)
	resp.Body.Close()
	if ctx.Err() != nil {
		return ExecResult{}, ctx.Err()
	}
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec %s: %w", name, err)
	}
	// The stream may end a moment before the engine has recorded the exit code.
	for {
		var st struct {
			Running  bool
			ExitCode *int
		}
		if err := d.do(ctx, http.MethodGet, "/exec/"+ex.ID+"/json", nil, nil, &st); err != nil {
			if ctx.Err() != nil {
				return ExecResult{}, ctx.Err()
			}
			return ExecResult{}, fmt.Errorf("exec %s: %w", name, err)
		}
		if !st.Running && st.ExitCode != nil {
			return ExecResult{ExitCode: *st.ExitCode, Output: out.String()}, nil
		}
		select {
		case <-ctx.Done():
			return ExecResult{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// execError says why the engine refused an exec: the container went or stopped meanwhile
// (the engine answers 409 Conflict, which is no ErrExists here), or err.
func (d *dockerRuntime) execError(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	in, ierr := d.inspect(ctx, name)
	switch {
	case ierr != nil:
		return fmt.Errorf("exec %s: %w", name, ierr)
	case !in.State.Running:
		return fmt.Errorf("exec %s: %w", name, ErrNotRunning)
	}
	return fmt.Errorf("exec %s: %v", name, err)
}

type dockerInspect struct {
	ID    string `json:"Id"`
	State struct {
		Status     string
		Running    bool
		Pid        int
		ExitCode   int
		Error      string
		OOMKilled  bool
		StartedAt  string
		FinishedAt string
	}
	Config struct {
		Labels map[string]string
		Tty    bool
	}
}

func (d *dockerRuntime) inspect(ctx context.Context, name string) (dockerInspect, error) {
	var in dockerInspect
	if err := d.do(ctx, http.MethodGet, "/containers/"+ContainerID(name)+"/json", nil, nil, &in); err != nil {
		return in, err
	}
	if in.Config.Labels[LabelOwner] != d.owner || in.Config.Labels[LabelModule] != name {
		return in, fmt.Errorf("%s: %w (container %s was not made by this daemon)", name, ErrNotFound, ContainerID(name))
	}
	return in, nil
}

func dockerTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

func (in dockerInspect) toState() State {
	st := State{
		Name:       in.Config.Labels[LabelModule],
		Running:    in.State.Running,
		Pid:        in.State.Pid,
		ExitCode:   in.State.ExitCode,
		StartedAt:  dockerTime(in.State.StartedAt),
		FinishedAt: dockerTime(in.State.FinishedAt),
		Labels:     map[string]string{},
	}
	for k, v := range in.Config.Labels {
		if k != LabelModule && k != LabelOwner {
			st.Labels[k] = v
		}
	}
	var desc []string
	switch in.State.Status {
	case "created":
		st.Status = StatusCreated
	case "running", "paused", "restarting":
		st.Status = StatusRunning
		if in.State.Status != "running" {
			desc = append(desc, "docker: "+in.State.Status)
		}
	default: // exited, dead, removing
		st.Status = StatusExited
		desc = append(desc, fmt.Sprintf("exited with code %d", st.ExitCode))
		if in.State.Status != "exited" {
			desc = append(desc, "docker: "+in.State.Status)
		}
	}
	if in.State.OOMKilled {
		desc = append(desc, "killed: out of memory")
	}
	if in.State.Error != "" {
		desc = append(desc, in.State.Error)
	}
	st.Description = strings.Join(desc, "; ")
	return st
}

func (d *dockerRuntime) State(ctx context.Context, name string) (State, error) {
	in, err := d.inspect(ctx, name)
	if err != nil {
		return State{}, fmt.Errorf("state %s: %w", name, err)
	}
	return in.toState(), nil
}

func (d *dockerRuntime) List(ctx context.Context) ([]State, error) {
	filters, _ := json.Marshal(map[string][]string{"label": {LabelOwner + "=" + d.owner}})
	var cs []struct {
		Labels map[string]string
	}
	if err := d.do(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(filters)}}, nil, &cs); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var out []State
	for _, c := range cs {
		in, err := d.inspect(ctx, c.Labels[LabelModule])
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, in.toState())
	}
	return out, nil
}

func (d *dockerRuntime) Stop(ctx context.Context, name string, grace time.Duration) error {
	if _, err := d.inspect(ctx, name); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	secs := int(math.Ceil(grace.Seconds()))
	err := d.do(ctx, http.MethodPost, "/containers/"+ContainerID(name)+"/stop", url.Values{"t": {strconv.Itoa(secs)}}, nil, nil)
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

func (d *dockerRuntime) Remove(ctx context.Context, name string) error {
	if _, err := d.inspect(ctx, name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	err := d.do(ctx, http.MethodDelete, "/containers/"+ContainerID(name), url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

func (d *dockerRuntime) Wait(ctx context.Context, name string) (State, error) {
	if _, err := d.inspect(ctx, name); err != nil {
		return State{}, fmt.Errorf("wait %s: %w", name, err)
	}
	var res struct{ StatusCode int }
	err := d.do(ctx, http.MethodPost, "/containers/"+ContainerID(name)+"/wait", url.Values{"condition": {"not-running"}}, nil, &res)
	if err != nil {
		return State{}, fmt.Errorf("wait %s: %w", name, err)
	}
	return d.State(ctx, name)
}

func (d *dockerRuntime) Logs(ctx context.Context, name string, opts LogOptions) (io.ReadCloser, error) {
	in, err := d.inspect(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("logs %s: %w", name, err)
	}
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {"all"}}
	if opts.Follow {
		q.Set("follow", "1")
	}
	if opts.Tail > 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	if !opts.Since.IsZero() {
		q.Set("since", fmt.Sprintf("%d.%09d", opts.Since.Unix(), opts.Since.Nanosecond()))
	}
	if opts.Timestamps {
		q.Set("timestamps", "1")
	}
	resp, err := d.request(ctx, http.MethodGet, "/containers/"+ContainerID(name)+"/logs", q, nil)
	if err != nil {
		return nil, fmt.Errorf("logs %s: %w", name, err)
	}
	// Engines before API 1.42 call both kinds raw-stream: only a TTY's stream is raw.
	if in.Config.Tty {
		return resp.Body, nil
	}
	pr, pw := io.Pipe()
	go func() {
		err := demux(pw, resp.Body)
		resp.Body.Close()
		pw.CloseWithError(err)
	}()
	return &closeBoth{pr, resp.Body}, nil
}

// demux copies the payloads of the engine's multiplexed stream (8-byte frame headers:
// stream, 0, 0, 0, big-endian size) to w, stdout and stderr alike.
func demux(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 32<<10)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.CopyN(w, br, n); err != nil {
			return err
		}
	}
}

type closeBoth struct {
	*io.PipeReader
	body io.Closer
}

func (c *closeBoth) Close() error {
	c.body.Close()
	return c.PipeReader.Close()
}
