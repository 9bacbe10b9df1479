package cli

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub"
)

// TestHubServeListenFlags: without --listen the hub asks for :443 and falls
// back to :8443; with --listen (flag, env or config file) it asks for that
// address only. Without --amqp-listen it refuses AMQP beside a hub on 443.
func TestHubServeListenFlags(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	for _, c := range []struct {
		args, env              []string
		listen, fallback, amqp string
		amqpBeside             bool
	}{
		{nil, nil, ":443", ":8443", "", true},
		{[]string{"--listen", "127.0.0.1:9443"}, nil, "127.0.0.1:9443", "", "", true},
		{nil, []string{"OUTPOST_LISTEN", "127.0.0.1:9443"}, "127.0.0.1:9443", "", "", true},
		{[]string{"--amqp-listen", "127.0.0.1:5672"}, nil, ":443", ":8443", "127.0.0.1:5672", false},
		{[]string{"--amqp-listen", ""}, nil, ":443", ":8443", "", false},
	} {
		if c.env != nil {
			t.Setenv(c.env[0], c.env[1])
		}
		ios, _, _, _ := TestIO()
		f := &Factory{IO: ios}
		root := NewRootCmd(f)
		hubCmd, _, err := root.Find([]string{"hub"})
		if err != nil {
			t.Fatal(err)
		}
		old, _, _ := root.Find([]string{"hub", "serve"})
		hubCmd.RemoveCommand(old)
		var got hub.Config
		hubCmd.AddCommand(newHubServeCmd(f, func(cfg hub.Config) error { got = cfg; return nil }))
		root.SetArgs(append([]string{"hub", "serve", "--data", t.TempDir()}, c.args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%q %q: %v", c.args, c.env, err)
		}
		if got.Listen != c.listen || got.FallbackListen != c.fallback || got.AMQPListen != c.amqp || got.AMQPBeside != c.amqpBeside {
			t.Errorf("%q %q: listen %q, fallback %q, amqp %q beside %v; want %q, %q, %q, %v", c.args, c.env,
				got.Listen, got.FallbackListen, got.AMQPListen, got.AMQPBeside, c.listen, c.fallback, c.amqp, c.amqpBeside)
		}
		if c.env != nil {
			t.Setenv(c.env[0], "")
		}
	}
}

// TestHubServeListenTaken: an address given with --listen that is taken is
// an error (no fallback), exit code 1, that says what to do.
func TestHubServeListenTaken(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	data := filepath.Join(t.TempDir(), "hub")
	code, out, errOut := run(t, "hub", "serve", "--data", data, "--listen", ln.Addr().String())
	if code != ExitFailure || out != "" {
		t.Fatalf("exit %d, stdout %q, want 1 and nothing", code, out)
	}
	// The failed first start leaves no data dir: the next start is a first start,
	// which prints the owner connection string (issue 9, item 22).
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed first start left its data dir %s: %v", data, err)
	}
	for _, want := range []string{"listen on " + ln.Addr().String() + ": address already in use", "ss -ltnp 'sport = " + port + "'", "--listen ADDR"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
