//go:build linux

package repotest

// TestDocs runs the commands of README.md and docs/*.md, doc by doc, block by
// block, with the outpost binary built from this tree, so that the docs
// cannot drift from what outpost does.
//
// What the test reads in the markdown:
//
//   - Every fenced block has an info string (its language): a block without
//     one fails the test, so that no command hides in an unmarked block.
//   - ```sh (or bash, shell) blocks are run, in order, each doc in a temporary
//     dir of its own that holds links to the checkout's files (as a user
//     working in a checkout has them). Blocks of one doc share the working
//     directory and the variables they set (every assignment is exported);
//     a command that fails fails the block (set -e -o pipefail), and so the
//     test. Processes a block starts in the background (&) run until the
//     doc's end.
//   - ```sh no-test: shown, never run (systemd, a real device, a registry on
//     the network). The reason belongs in the text around it.
//   - ```sh follow: one command that runs until stopped (logs -f, twin watch,
//     a daemon in the foreground). The test runs it until it prints, then
//     stops it; the block fails if it prints nothing or exits non-zero.
//   - ```output right after a sh block: what the block prints, compared
//     loosely: each line, with runs of blanks as any blanks and "…" as
//     anything, must appear in the output, in order.
//   - HTML comments `<!-- doctest: … -->` give the test what a reader has
//     without being told:
//     `<!-- doctest: registry HOST:PORT -->` (anywhere): an OCI registry
//     serves HOST:PORT while the doc runs;
//     `<!-- doctest: wait-for ADDR -->` (before a block): wait until ADDR
//     (host:port, or a unix socket's path) accepts connections first;
//     `<!-- doctest: retry DURATION -->` (before a block): run the block
//     (and its output check) again until it passes or DURATION is over.
//
// The text of blocks and markers goes through [docSubstitutions] before it
// runs: the only differences between what the docs say and what runs.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/image/registrytest"
)

// docSubstitutions are every change made to the docs' text before it runs,
// given the loopback address of a free port for the hub.
func docSubstitutions(hubAddr string) []string {
	return []string{
		// The documented hub port may be taken on a shared machine.
		"127.0.0.1:8443", hubAddr,
		// The binary built from this tree, built once for every doc.
		"go run ./cmd/outpost", "outpost",
	}
}

// docsSkipped are the docs the test does not run, with why.
var docsSkipped = map[string]string{
	"docs/cli.md": "generated from the commands' help (go generate ./internal/cli); TestCommandTree in internal/cli checks it",
}

// Limits of one block. Generous: the machine is shared.
const (
	blockTimeout  = 4 * time.Minute  // a block that does not end by then hangs
	followTimeout = 60 * time.Second // for a follow block's first output
	waitTimeout   = 60 * time.Second // for wait-for
)

type mdBlock struct {
	file   string
	line   int // of the opening fence
	lang   string
	attrs  map[string]bool // words after the language: no-test, follow
	text   string
	output *mdBlock // the ```output block that follows, if any
	wait   []string // wait-for addresses
	retry  time.Duration
}

type mdDoc struct {
	path     string // relative to the repository root
	blocks   []*mdBlock
	registry string
}

var (
	fenceRE     = regexp.MustCompile("^ {0,3}(```+|~~~+)\\s*(.*)$")
	directiveRE = regexp.MustCompile(`^\s*<!--\s*doctest:\s*(.*?)\s*-->\s*$`)
)

// isShell reports whether a block of language lang holds commands.
func isShell(lang string) bool {
	switch lang {
	case "sh", "bash", "shell", "console":
		return true
	}
	return false
}

// parseDoc reads the fenced blocks and doctest markers of a markdown file.
func parseDoc(root, rel string) (*mdDoc, error) {
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return nil, err
	}
	d := &mdDoc{path: rel}
	var (
		open    *mdBlock
		fence   string
		body    []string
		pending = &mdBlock{} // markers waiting for the next block
		errs    []error
	)
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		n := i + 1
		if open != nil {
			if t := strings.TrimSpace(line); strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]) == "" {
				open.text = strings.Join(body, "\n") + "\n"
				if open.lang == "output" {
					prev := lastBlock(d)
					if prev == nil || !isShell(prev.lang) || prev.output != nil {
						errs = append(errs, fmt.Errorf("%s:%d: an output block must follow a sh block", rel, open.line))
					} else {
						prev.output = open
					}
				} else {
					d.blocks = append(d.blocks, open)
				}
				open, body = nil, nil
				continue
			}
			body = append(body, line)
			continue
		}
		if m := directiveRE.FindStringSubmatch(line); m != nil {
			f := strings.Fields(m[1])
			switch {
			case len(f) == 2 && f[0] == "registry":
				d.registry = f[1]
			case len(f) == 2 && f[0] == "wait-for":
				pending.wait = append(pending.wait, f[1])
			case len(f) == 2 && f[0] == "retry":
				dur, err := time.ParseDuration(f[1])
				if err != nil {
					errs = append(errs, fmt.Errorf("%s:%d: doctest retry: %v", rel, n, err))
				}
				pending.retry = dur
			default:
				errs = append(errs, fmt.Errorf("%s:%d: unknown doctest marker %q: use registry HOST:PORT, wait-for ADDR or retry DURATION", rel, n, m[1]))
			}
			continue
		}
		m := fenceRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		words := strings.Fields(m[2])
		if len(words) == 0 {
			errs = append(errs, fmt.Errorf("%s:%d: a fenced block needs a language: sh for commands the docs test runs, `sh no-test` for commands it must not run, or text, json, yaml, … for the rest", rel, n))
			words = []string{"text"}
		}
		open = &mdBlock{file: rel, line: n, lang: words[0], attrs: map[string]bool{}, wait: pending.wait, retry: pending.retry}
		fence = m[1]
		for _, w := range words[1:] {
			switch w {
			case "no-test", "follow":
				open.attrs[w] = true
			default:
				if isShell(open.lang) {
					errs = append(errs, fmt.Errorf("%s:%d: unknown word %q after ```%s: use no-test or follow", rel, n, w, open.lang))
				}
			}
		}
		if (len(open.wait) > 0 || open.retry > 0) && !isShell(open.lang) {
			errs = append(errs, fmt.Errorf("%s:%d: doctest wait-for and retry go before a sh block", rel, n))
		}
		pending = &mdBlock{}
	}
	if open != nil {
		errs = append(errs, fmt.Errorf("%s:%d: the block is never closed", rel, open.line))
	}
	return d, errors.Join(errs...)
}

func lastBlock(d *mdDoc) *mdBlock {
	if len(d.blocks) == 0 {
		return nil
	}
	return d.blocks[len(d.blocks)-1]
}

// docFiles are README.md and docs/*.md, relative to root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range more {
		files = append(files, filepath.Join("docs", filepath.Base(f)))
	}
	return files
}

// TestDocsMarkup checks every doc's blocks and markers without running
// anything: it is quick, and it names each problem with file and line.
func TestDocsMarkup(t *testing.T) {
	root := repoRoot(t)
	for _, rel := range docFiles(t, root) {
		if _, skip := docsSkipped[rel]; skip {
			continue
		}
		if _, err := parseDoc(root, rel); err != nil {
			t.Error(err)
		}
	}
}

func TestParseDoc(t *testing.T) {
	dir := t.TempDir()
	md := "# x\n<!-- doctest: registry localhost:5000 -->\n```sh\necho a\n```\n```output\na\n```\n" +
		"<!-- doctest: retry 5s -->\n<!-- doctest: wait-for ./s.sock -->\n```sh follow\ntail -f x\n```\n" +
		"```yaml\nk: v\n```\n```sh no-test\nsudo x\n```\n"
	if err := os.WriteFile(filepath.Join(dir, "a.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := parseDoc(dir, "a.md")
	if err != nil {
		t.Fatal(err)
	}
	if d.registry != "localhost:5000" || len(d.blocks) != 4 {
		t.Fatalf("registry %q, %d blocks, want localhost:5000 and 4", d.registry, len(d.blocks))
	}
	b := d.blocks
	if b[0].text != "echo a\n" || b[0].output == nil || b[0].output.text != "a\n" || b[0].line != 3 {
		t.Errorf("block 1: %+v", b[0])
	}
	if !b[1].attrs["follow"] || b[1].retry != 5*time.Second || len(b[1].wait) != 1 || b[1].wait[0] != "./s.sock" {
		t.Errorf("block 2: %+v", b[1])
	}
	if b[2].lang != "yaml" || len(b[2].wait) != 0 || !b[3].attrs["no-test"] {
		t.Errorf("blocks 3, 4: %+v %+v", b[2], b[3])
	}

	for _, bad := range []string{
		"```\nls\n```\n", // no language
		"```sh\nls\n",    // never closed
		"<!-- doctest: retry soon -->\n```sh\nls\n```\n", // bad duration
		"<!-- doctest: serve -->\n",                      // unknown marker
		"```sh no-tests\nls\n```\n",                      // misspelt attribute
		"```output\nx\n```\n",                            // output without a sh block
	} {
		if err := os.WriteFile(filepath.Join(dir, "b.md"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := parseDoc(dir, "b.md"); err == nil {
			t.Errorf("parseDoc accepted %q", bad)
		}
	}
}

func TestMatchOutput(t *testing.T) {
	got := "NAME        STATUS   IMAGE\ntempsensor  running  localhost:5000/tempsensor@sha256:abc\n"
	for want, ok := range map[string]bool{
		"NAME STATUS IMAGE\ntempsensor running …\n": true,
		"tempsensor running\n":                      true,
		"tempsensor  stopped  …\n":                  false,
		"tempsensor running\nNAME\n":                false, // order matters
	} {
		if err := matchOutput(want, got); (err == nil) != ok {
			t.Errorf("matchOutput(%q): %v, want ok %v", want, err, ok)
		}
	}
}

// matchOutput checks got against want loosely (see TestDocs).
func matchOutput(want, got string) error {
	lines := strings.Split(got, "\n")
	i := 0
	for _, w := range strings.Split(want, "\n") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		var parts []string
		for _, p := range strings.Split(w, "…") {
			parts = append(parts, strings.Join(strings.Fields(regexp.QuoteMeta(p)), `\s+`))
		}
		re := regexp.MustCompile(strings.Join(parts, ".*"))
		for ; i < len(lines) && !re.MatchString(lines[i]); i++ {
		}
		if i == len(lines) {
			return fmt.Errorf("no line like %q (after the lines matched before it)", w)
		}
		i++
	}
	return nil
}

func TestDocs(t *testing.T) {
	root := repoRoot(t)
	bin := buildOutpost(t, root)
	for _, rel := range docFiles(t, root) {
		if _, skip := docsSkipped[rel]; skip {
			continue
		}
		d, err := parseDoc(root, rel)
		if err != nil {
			t.Errorf("%v (TestDocsMarkup says more)", err)
			continue
		}
		runnable := false
		for _, b := range d.blocks {
			runnable = runnable || (isShell(b.lang) && !b.attrs["no-test"])
		}
		if !runnable {
			continue
		}
		t.Run(strings.TrimSuffix(rel, ".md"), func(t *testing.T) {
			newDocRunner(t, root, bin, d).runAll()
		})
	}
}

// buildOutpost builds ./cmd/outpost into a temporary dir and returns that dir.
func buildOutpost(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "outpost"), "./cmd/outpost")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/outpost: %v\n%s", err, out)
	}
	return dir
}

// docRunner runs the blocks of one doc.
type docRunner struct {
	t       *testing.T
	d       *mdDoc
	dir     string // the doc's working dir
	state   string // the shell state file: exported variables and the cwd
	env     []string
	subst   *strings.Replacer
	pgids   []int
	nblocks int
	outs    []blockOut // each block's last output file, in order
}

type blockOut struct {
	b    *mdBlock
	path string
}

func newDocRunner(t *testing.T, root, bin string, d *mdDoc) *docRunner {
	tmp := t.TempDir()
	r := &docRunner{t: t, d: d, dir: filepath.Join(tmp, "work"), state: filepath.Join(tmp, "state")}
	if err := os.Mkdir(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The checkout's files, as links: a doc's commands run "from a checkout"
	// but what they write stays in the temporary dir.
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == ".git" || e.Name() == "dist" {
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(r.dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}

	// A user's environment: their own HOME and XDG dirs, no OUTPOST_*
	// settings, outpost on PATH, Go's caches where they were.
	home := filepath.Join(tmp, "home")
	goenv := map[string]string{}
	out, err := exec.Command("go", "env", "-json", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	if err := json.Unmarshal(out, &goenv); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OUTPOST_") || strings.HasPrefix(k, "XDG_") || k == "HOME" || k == "PATH" || k == "NOTIFY_SOCKET" {
			continue
		}
		r.env = append(r.env, kv)
	}
	// The one setting the docs do not show: a daemon's module broker listens
	// on a free loopback port, never on every address at 8883 (taken by other
	// tests, and not for a test to open).
	r.env = append(r.env, "OUTPOST_BROKER_LISTEN=127.0.0.1:0")
	r.env = append(r.env, "HOME="+home, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
	for k, v := range goenv {
		r.env = append(r.env, k+"="+v)
	}
	if err := os.WriteFile(r.state, []byte("cd "+shellQuote(r.dir)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.subst = strings.NewReplacer(docSubstitutions(freeAddr(t))...)
	t.Cleanup(r.stopAll)
	return r
}

func (r *docRunner) runAll() {
	t := r.t
	if r.d.registry != "" {
		r.serveRegistry(r.subst.Replace(r.d.registry))
	}
	for _, b := range r.d.blocks {
		if !isShell(b.lang) || b.attrs["no-test"] {
			continue
		}
		for _, addr := range b.wait {
			r.waitFor(b, r.subst.Replace(addr))
		}
		deadline := time.Now().Add(b.retry)
		for {
			err := r.runBlock(b)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Fatalf("%s:%d: %v\nthe block:\n%s%s", b.file, b.line, err, r.subst.Replace(b.text), r.earlierOutputs())
				}
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// serveRegistry serves an in-process OCI registry on addr until the doc's
// end. addr is fixed by the doc (images name it), so it waits for another
// test run that has it to finish.
func (r *docRunner) serveRegistry(addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		r.t.Fatalf("%s: doctest registry %s: %v", r.d.path, addr, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	var l net.Listener
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l, err = net.Listen("tcp", net.JoinHostPort(host, port))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: doctest registry: %v (the doc's images name %s: free that port)", r.d.path, err, addr)
		}
		time.Sleep(time.Second)
	}
	srv := &http.Server{Handler: registrytest.Handler(), ReadHeaderTimeout: time.Minute}
	go srv.Serve(l)
	r.t.Cleanup(func() { srv.Close() })
}

// waitFor waits until addr (host:port, or a unix socket path relative to
// the doc's dir) accepts connections.
func (r *docRunner) waitFor(b *mdBlock, addr string) {
	network := "tcp"
	if strings.Contains(addr, "/") {
		network = "unix"
		if !filepath.IsAbs(addr) {
			addr = filepath.Join(r.cwd(), addr)
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s:%d: doctest wait-for %s: nothing accepted connections in %v: %v", b.file, b.line, addr, waitTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cwd is the working dir the last block left.
func (r *docRunner) cwd() string {
	if b, err := os.ReadFile(r.state + ".cwd"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return r.dir
}

// runBlock runs one sh block in bash and checks its exit status and output.
func (r *docRunner) runBlock(b *mdBlock) error {
	r.nblocks++
	n := r.nblocks
	script := fmt.Sprintf(`set -a
. %[1]s
set -eo pipefail
trap 'echo "doctest: exit status $? from: $BASH_COMMAND" >&2' ERR
trap 'st=$?; export -p > %[1]s.new && mv %[1]s.new %[1]s && echo "cd $(printf %%q "$PWD")" >> %[1]s && pwd > %[1]s.cwd; exit $st' EXIT
%[2]s`, shellQuote(r.state), r.subst.Replace(b.text))
	outPath := filepath.Join(filepath.Dir(r.state), fmt.Sprintf("block-%d.out", n))
	if len(r.outs) > 0 && r.outs[len(r.outs)-1].b == b { // a retry
		r.outs = r.outs[:len(r.outs)-1]
	}
	r.outs = append(r.outs, blockOut{b, outPath})
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", script)
	cmd.Dir = r.cwd()
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.pgids = append(r.pgids, cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	output := func() string { b, _ := os.ReadFile(outPath); return string(b) }

	if b.attrs["follow"] {
		deadline := time.Now().Add(followTimeout)
		for {
			select {
			case err := <-done:
				if err != nil {
					return fmt.Errorf("a follow block ended with %v; it printed:\n%s", err, output())
				}
				return r.checkOutput(b, output())
			case <-time.After(100 * time.Millisecond):
			}
			if fi, err := out.Stat(); err == nil && fi.Size() > 0 {
				select {
				case err := <-done: // it ended by itself meanwhile: its status counts
					if err != nil {
						return fmt.Errorf("a follow block ended with %v; it printed:\n%s", err, output())
					}
					return r.checkOutput(b, output())
				case <-time.After(time.Second): // a little more of its output
				}
				stopGroup(cmd.Process.Pid)
				<-done
				return r.checkOutput(b, output())
			}
			if time.Now().After(deadline) {
				stopGroup(cmd.Process.Pid)
				<-done
				return fmt.Errorf("a follow block printed nothing in %v", followTimeout)
			}
		}
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%v; it printed:\n%s", err, output())
		}
	case <-time.After(blockTimeout):
		stopGroup(cmd.Process.Pid)
		<-done
		return fmt.Errorf("the block did not end in %v (a command that runs until stopped goes in a ```sh follow block, or ends in &); it printed:\n%s", blockTimeout, output())
	}
	return r.checkOutput(b, output())
}

// earlierOutputs is the end of what each earlier block printed, processes
// it left in the background included: what a failure may come from.
func (r *docRunner) earlierOutputs() string {
	var sb strings.Builder
	for _, o := range r.outs[:max(len(r.outs)-1, 0)] {
		b, err := os.ReadFile(o.path)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		lines = lines[max(len(lines)-15, 0):]
		fmt.Fprintf(&sb, "\nthe block at %s:%d printed (its last lines):\n  %s", o.b.file, o.b.line, strings.Join(lines, "\n  "))
	}
	return sb.String()
}

func (r *docRunner) checkOutput(b *mdBlock, got string) error {
	if b.output == nil {
		return nil
	}
	if err := matchOutput(r.subst.Replace(b.output.text), got); err != nil {
		return fmt.Errorf("output (%s:%d): %v; the block printed:\n%s", b.output.file, b.output.line, err, got)
	}
	return nil
}

// stopAll stops what the doc's blocks left running, newest first.
func (r *docRunner) stopAll() {
	for i := len(r.pgids) - 1; i >= 0; i-- {
		stopGroup(r.pgids[i])
	}
}

// stopGroup sends SIGTERM to a process group, and SIGKILL to what is left of
// it after 20 s.
func stopGroup(pgid int) {
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return // gone
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// freeAddr is 127.0.0.1 with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestDocRunner checks the runner itself: state carries from block to
// block, a failing command fails its block, a follow block is stopped once
// it prints, and an output check can fail.
func TestDocRunner(t *testing.T) {
	root := t.TempDir()
	d := &mdDoc{path: "x.md"}
	r := newDocRunner(t, root, t.TempDir(), d)
	sh := func(text string, attrs ...string) *mdBlock {
		b := &mdBlock{file: "x.md", line: 1, lang: "sh", text: text, attrs: map[string]bool{}}
		for _, a := range attrs {
			b.attrs[a] = true
		}
		return b
	}
	for _, text := range []string{"X=1\nmkdir sub && cd sub\n", "test \"$X\" = 1 && test \"$(basename \"$PWD\")\" = sub\n"} {
		if err := r.runBlock(sh(text)); err != nil {
			t.Fatalf("%q: %v", text, err)
		}
	}
	if err := r.runBlock(sh("false\necho not reached\n")); err == nil || strings.Contains(err.Error(), "not reached") {
		t.Errorf("a failing command: %v, want an error before the next command", err)
	}
	if err := r.runBlock(sh("echo a | false | cat\n")); err == nil {
		t.Error("a failing command within a pipe: no error")
	}
	if err := r.runBlock(sh("echo started; sleep 600\n", "follow")); err != nil {
		t.Errorf("a follow block: %v", err)
	}
	if err := r.runBlock(sh("echo oops >&2; exit 3\n", "follow")); err == nil {
		t.Error("a follow block that exits 3: no error")
	}
	b := sh("echo 'tempsensor  backoff  img'\n")
	b.output = &mdBlock{file: "x.md", line: 5, text: "tempsensor running …\n"}
	if err := r.runBlock(b); err == nil {
		t.Error("an output that does not match: no error")
	}
}
