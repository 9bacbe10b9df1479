package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/image"
	"github.com/outpost-edge/outpost/internal/imagestore"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// run runs outpost with args and returns the exit code and both streams.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ios, _, out, errOut := TestIO()
	code = Run(context.Background(), ios, args)
	return code, out.String(), errOut.String()
}

func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// TestCommandTree checks every command's help: a short line, an example
// where the command takes arguments, and no flag defined twice along a path.
func TestCommandTree(t *testing.T) {
	ios, _, _, _ := TestIO()
	root := NewRootCmd(&Factory{IO: ios})
	n := 0
	walk(root, func(c *cobra.Command) {
		n++
		path := c.CommandPath()
		if strings.TrimSpace(c.Short) == "" {
			t.Errorf("%s: no short help", path)
		}
		if strings.HasSuffix(c.Short, ".") {
			t.Errorf("%s: short help ends with a period: %q", path, c.Short)
		}
		takesArgs := strings.ContainsAny(strings.TrimPrefix(c.Use, c.Name()), "[]|ABCDEFGHIJKLMNOPQRSTUVWXYZ")
		if c.Runnable() && takesArgs && c.Example == "" {
			t.Errorf("%s takes arguments (%q) but has no example", path, c.Use)
		}
		if c.Runnable() && c.Args == nil && c.HasParent() {
			t.Errorf("%s: no argument validation (set Args)", path)
		}
		seen := map[string]string{}
		check := func(fl *pflag.Flag) {
			for _, name := range []string{"--" + fl.Name, "-" + fl.Shorthand} {
				if name == "-" {
					continue
				}
				if prev, dup := seen[name]; dup && prev != fl.Usage {
					t.Errorf("%s: flag %s defined twice", path, name)
				}
				seen[name] = fl.Usage
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
	})
	if n < 4 {
		t.Fatalf("walked %d commands; the tree is missing commands", n)
	}
}

// TestReferenceUpToDate fails when docs/cli.md is stale.
func TestReferenceUpToDate(t *testing.T) {
	ios, _, _, _ := TestIO()
	want := Reference(NewRootCmd(&Factory{IO: ios}))
	got, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/cli.md is stale: run `go generate ./internal/cli` and commit the result")
	}
}

func TestVersion(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	code, out, errOut := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "outpost ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: code %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = run(t, "version", "-o", "json")
	var info map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("version -o json: code %d, out %q", code, out)
	}
	for _, k := range []string{"version", "commit", "goVersion", "platform"} {
		if info[k] == "" {
			t.Errorf("version -o json: %s missing in %s", k, out)
		}
	}
	code, out, _ = run(t, "version", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "goVersion: go1.") {
		t.Fatalf("version -o yaml: code %d, out %q", code, out)
	}
	_, want, _ := run(t, "version")
	code, out, errOut = run(t, "--version")
	if code != 0 || out != want {
		t.Fatalf("--version: code %d, out %q (want %q), err %q", code, out, want, errOut)
	}
}

// TestCommandGroupAlone checks that a command group called without a
// subcommand prints its help and succeeds.
func TestCommandGroupAlone(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	for _, group := range [][]string{{}, {"twin"}, {"device"}, {"hub"}} {
		code, out, errOut := run(t, group...)
		if code != 0 || !strings.Contains(out, "Available Commands:") || errOut != "" {
			t.Errorf("outpost %v: code %d, stdout %q, stderr %q", group, code, out, errOut)
		}
	}
	// The exit codes are in the root's help, as exit.go defines them.
	_, out, _ := run(t, "--help")
	for _, want := range []string{"Exit codes:", "\n    1  failure, including a conflict", "\n    4  precondition failed", "\n    5  unavailable"} {
		if !strings.Contains(out, want) {
			t.Errorf("outpost --help lacks %q:\n%s", want, out)
		}
	}
}

func TestExitCodes(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"bogus"}, ExitUsage, `unknown command "bogus"`},
		{[]string{"vresion"}, ExitUsage, `unknown command "vresion" for "outpost": did you mean "version"?`},
		{[]string{"twin", "gte", "d1/m1"}, ExitUsage, `unknown command "gte" for "outpost twin": did you mean "get"?`},
		{[]string{"device", "lst"}, ExitUsage, `unknown command "lst" for "outpost device": did you mean "list"?`},
		{[]string{"module", "r"}, ExitUsage, `unknown command "r" for "outpost module": did you mean "rm"?`},
		{[]string{"hub", "xyzzy"}, ExitUsage, `unknown command "xyzzy" for "outpost hub"`},
		{[]string{"help", "gte"}, ExitUsage, `no help topic "gte": "outpost" has no command "gte"`},
		{[]string{"help", "twin", "pach"}, ExitUsage, `"outpost twin" has no command "pach": did you mean "patch"?`},
		{[]string{"-v"}, ExitUsage, "unknown shorthand flag: 'v'"},
		{[]string{"version", "--bogus"}, ExitUsage, "unknown flag: --bogus"},
		{[]string{"version", "extra"}, ExitUsage, "takes no arguments"},
		{[]string{"-o", "xml", "version"}, ExitUsage, `invalid --output "xml"`},
		{[]string{"completion"}, ExitUsage, "takes one shell name"},
		{[]string{"completion", "tcsh"}, ExitUsage, `unknown shell "tcsh"`},
		{[]string{"--config", "/nonexistent/outpost.yaml", "version"}, ExitFailure, "/nonexistent/outpost.yaml does not exist"},
	} {
		code, out, errOut := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("outpost %s: code %d (want %d), stderr %q (want %q), stdout %q", strings.Join(tc.args, " "), code, tc.code, errOut, tc.msg, out)
		}
		if tc.code == ExitUsage && !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("outpost %s: usage error without a pointer to --help: %q", strings.Join(tc.args, " "), errOut)
		}
	}
}

// TestExitCodeMapping is the table of exit codes: the CLI's own errors and
// every library's typed errors, wrapped as commands wrap them. The hub's
// and the daemon's answers of one status map to one exit code.
func TestExitCodeMapping(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("do it: %w", err) }
	for _, tc := range []struct {
		err  error
		code int
		hint string // part of the hint printed, "" for none
	}{
		{nil, ExitOK, ""},
		{&ExitError{Code: ExitNotFound, Err: os.ErrNotExist}, ExitNotFound, ""},
		{&SilentError{Code: ExitPrecondition}, ExitPrecondition, ""},
		{flagErrorf("x"), ExitUsage, ""},
		{os.ErrClosed, ExitFailure, ""},
		{context.Canceled, ExitFailure, ""},

		{wrap(&hubclient.Error{StatusCode: 400, Message: "bad"}), ExitFailure, ""},
		{wrap(&hubclient.Error{StatusCode: 401, Message: "no"}), ExitFailure, "check the connection string"},
		{wrap(&hubclient.Error{StatusCode: 404, Message: "gone"}), ExitNotFound, ""},
		{wrap(&hubclient.Error{StatusCode: 409, Message: "exists"}), ExitFailure, "already exists"},
		{wrap(&hubclient.Error{StatusCode: 412, Message: "etag"}), ExitPrecondition, "read it again"},
		{wrap(&hubclient.Error{StatusCode: 503, Message: "busy"}), ExitUnavailable, "is the hub running?"},
		{wrap(&hubclient.UnavailableError{Addr: "h:1", Err: syscall.ECONNREFUSED}), ExitUnavailable, "is the hub running there?"},

		{wrap(&mgmtclient.Error{Status: 400, Message: "bad"}), ExitFailure, ""},
		{wrap(&mgmtclient.Error{Status: 404, Message: "gone"}), ExitNotFound, ""},
		{wrap(&mgmtclient.Error{Status: 409, Message: "exists"}), ExitFailure, "already exists"},
		{wrap(&mgmtclient.Error{Status: 412, Message: "etag"}), ExitPrecondition, "read it again"},
		{wrap(&mgmtclient.Error{Status: 503, Message: "busy"}), ExitUnavailable, "try again in a moment"},
		{wrap(&mgmtclient.UnavailableError{Socket: "/s", Err: syscall.ENOENT}), ExitUnavailable, "is the daemon running?"},

		{wrap(&image.UnavailableError{Registry: "r:5000", Err: syscall.ECONNREFUSED}), ExitUnavailable, "registry is running at r:5000"},
		{wrap(&imagestore.UnavailableError{Registry: "r:5000", Err: syscall.ECONNREFUSED}), ExitUnavailable, "r:5000 is running"},
		{wrap(&imagestore.NotFoundError{Ref: "r:5000/a:1", Registry: "r:5000"}), ExitNotFound, "Check the image name"},
		// An error's own hint wins over its kind's, and an ExitError's over both.
		{withHint(wrap(&hubclient.Error{StatusCode: 409}), "device show"), ExitFailure, "device show"},
	} {
		if got := exitCode(tc.err); got != tc.code {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.code)
		}
		if got := hintFor(tc.err); tc.hint == "" && got != "" || !strings.Contains(got, tc.hint) {
			t.Errorf("hintFor(%v) = %q, want %q", tc.err, got, tc.hint)
		}
	}
}

func TestCompletion(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := run(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "outpost") || len(out) < 500 {
			t.Errorf("completion %s: code %d, %d bytes, stderr %q", sh, code, len(out), errOut)
		}
	}
}

// TestConfigPrecedence checks flag > env > file > default through a real command.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte("output: yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTPOST_OUTPUT", "")
	t.Setenv("OUTPOST_CONFIG", file)
	if _, out, _ := run(t, "version"); !strings.Contains(out, "goVersion:") {
		t.Errorf("file: want yaml output, got %q", out)
	}
	t.Setenv("OUTPOST_OUTPUT", "json")
	if _, out, _ := run(t, "version"); !strings.Contains(out, `"goVersion"`) {
		t.Errorf("env over file: want json output, got %q", out)
	}
	if _, out, _ := run(t, "version", "-o", "table"); !strings.HasPrefix(out, "outpost ") {
		t.Errorf("flag over env: want table output, got %q", out)
	}

	if err := os.WriteFile(file, []byte("output: json\noutptu: yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTPOST_OUTPUT", "")
	code, _, errOut := run(t, "version")
	if code != ExitFailure || !strings.Contains(errOut, file+":2") || !strings.Contains(errOut, `"outptu"`) || !strings.Contains(errOut, `did you mean "output"`) {
		t.Errorf("broken config: code %d, stderr %q", code, errOut)
	}
}

// TestHelpTopic: `outpost help CMD...` prints that command's help on stdout.
func TestHelpTopic(t *testing.T) {
	code, out, errOut := run(t, "help", "twin", "patch")
	if code != ExitOK || !strings.Contains(out, "outpost twin patch") || errOut != "" {
		t.Fatalf("outpost help twin patch: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}
