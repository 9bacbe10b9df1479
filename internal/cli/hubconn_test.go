package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// startHub starts a real hub and points the CLI at it through the
// environment, as a user would.
func startHub(t *testing.T, opts hubtest.Options) *hubtest.Hub {
	t.Helper()
	h := hubtest.Start(t, opts)
	isolateConfig(t)
	t.Setenv("OUTPOST_CONNECTION_STRING", h.ConnectionString)
	t.Setenv("OUTPOST_CA", h.CAFile)
	return h
}

// isolateConfig keeps the user's config file and OUTPOST_* settings out of
// a test.
func isolateConfig(t *testing.T) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, k := range []string{"OUTPOST_CONFIG", "OUTPOST_OUTPUT", "OUTPOST_CONNECTION_STRING", "OUTPOST_CA"} {
		t.Setenv(k, "")
	}
}

// runIn runs outpost with stdin in.
func runIn(t *testing.T, in string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ios, inBuf, out, errOut := TestIO()
	inBuf.WriteString(in)
	code = Run(context.Background(), ios, args)
	return code, out.String(), errOut.String()
}

// parseCmd runs cmd's argument and flag handling under a bare root with
// outpost's flag error handling; cmd is built with a runF that records the
// options.
func parseCmd(cmd *cobra.Command, args ...string) error {
	root := &cobra.Command{Use: "outpost", SilenceErrors: true, SilenceUsage: true}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &FlagError{Err: err} })
	root.AddCommand(cmd)
	root.SetArgs(append([]string{cmd.Name()}, args...))
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	return root.Execute()
}

// checkParseErr checks a parse result against the wanted error text ("" for
// none); every error must be a usage error.
func checkParseErr(t *testing.T, args []string, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%q: %v", args, err)
			return false
		}
		return true
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%q: error %v, want one containing %q", args, err, want)
		return false
	}
	if exitCode(err) != ExitUsage {
		t.Errorf("%q: %v exits %d, want %d (usage)", args, err, exitCode(err), ExitUsage)
	}
	return false
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mustCreateDevice(t *testing.T, h *hubtest.Hub, id string) hubapi.Device {
	t.Helper()
	d, err := h.Client(t).CreateDevice(context.Background(), hubapi.Device{DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustCreateModule(t *testing.T, h *hubtest.Hub, dev, mod string) hubapi.Module {
	t.Helper()
	m, err := h.Client(t).CreateModule(context.Background(), hubapi.Module{DeviceID: dev, ModuleID: mod})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		form targetForm
		want target
		err  string
	}{
		{"d1", deviceOnly, target{Device: "d1"}, ""},
		{"d1/m1", deviceOnly, target{}, "want a device id alone"},
		{"d1/m1", moduleRequired, target{Device: "d1", Module: "m1"}, ""},
		{"d1/$edgeAgent", moduleRequired, target{Device: "d1", Module: "$edgeAgent"}, ""},
		{"d1", moduleRequired, target{}, `invalid DEVICE/MODULE "d1": want DEVICE/MODULE (for example dev-1/tempsensor)`},
		{"d1/", moduleRequired, target{}, "the module id is empty"},
		{"/m1", moduleRequired, target{}, "the device id is empty"},
		{"d1/m1/x", moduleRequired, target{}, "want one '/'"},
		{"d1", moduleOptional, target{Device: "d1"}, ""},
		{"d1/m1", moduleOptional, target{Device: "d1", Module: "m1"}, ""},
		{"d 1", deviceOnly, target{}, "is not allowed"},
		{"d1/m 1", moduleOptional, target{}, "is not allowed"},
		{strings.Repeat("x", 129), deviceOnly, target{}, "at most 128"},
	} {
		got, err := parseTarget(tc.arg, tc.form)
		if tc.err != "" {
			var fe *FlagError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &fe) {
				t.Errorf("parseTarget(%q, %v): %v, want a usage error containing %q", tc.arg, tc.form, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseTarget(%q, %v) = %+v, %v; want %+v", tc.arg, tc.form, got, err, tc.want)
		}
	}
}

// TestHubConnection checks the connection errors every hub command shares.
func TestHubConnection(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	dev := mustCreateDevice(t, h, "d1")
	devCS := h.DeviceConnectionString("d1", "", dev.Authentication.SymmetricKey.PrimaryKey)

	t.Run("no connection string", func(t *testing.T) {
		t.Setenv("OUTPOST_CONNECTION_STRING", "")
		code, _, errOut := run(t, "device", "list")
		if code != ExitFailure || !strings.Contains(errOut, "no hub connection string") || !strings.Contains(errOut, "outpost hub credentials") {
			t.Errorf("code %d, stderr %q", code, errOut)
		}
	})
	t.Run("device connection string", func(t *testing.T) {
		code, _, errOut := run(t, "--hub", devCS, "device", "list")
		if code != ExitFailure || !strings.Contains(errOut, "needs an operator's shared access policy connection string") {
			t.Errorf("code %d, stderr %q", code, errOut)
		}
		if strings.Contains(errOut, dev.Authentication.SymmetricKey.PrimaryKey) {
			t.Errorf("the error shows the device's key: %q", errOut)
		}
	})
	t.Run("broken connection string", func(t *testing.T) {
		code, _, errOut := run(t, "--hub", "HostName=x;SharedAccessKeyName=owner", "device", "list")
		if code != ExitFailure || !strings.Contains(errOut, "SharedAccessKey is required") || !strings.Contains(errOut, "outpost hub credentials") {
			t.Errorf("code %d, stderr %q", code, errOut)
		}
	})
	t.Run("CA not given", func(t *testing.T) {
		t.Setenv("OUTPOST_CA", "")
		code, _, errOut := run(t, "device", "list")
		if code != ExitFailure || !strings.Contains(errOut, "--ca") || !strings.Contains(errOut, "unknown authority") {
			t.Errorf("code %d, stderr %q", code, errOut)
		}
	})
	t.Run("CA file missing", func(t *testing.T) {
		code, _, errOut := run(t, "--ca", "/nonexistent/ca.pem", "device", "list")
		if code != ExitFailure || !strings.Contains(errOut, "/nonexistent/ca.pem") || !strings.Contains(errOut, "check --ca") {
			t.Errorf("code %d, stderr %q", code, errOut)
		}
	})
	t.Run("hub flag wins over env", func(t *testing.T) {
		t.Setenv("OUTPOST_CONNECTION_STRING", devCS)
		code, out, errOut := run(t, "--hub", h.ConnectionString, "device", "list")
		if code != 0 || !strings.Contains(out, "d1") {
			t.Errorf("code %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("hub down", func(t *testing.T) {
		h.Stop()
		for _, args := range [][]string{
			{"device", "list"}, {"device", "create", "d2"}, {"device", "show", "d1"}, {"device", "delete", "d1"},
			{"module", "create", "d1/m1"}, {"module", "list", "d1"}, {"module", "show", "d1/m1"}, {"module", "delete", "d1/m1"},
			{"token", "d1"}, {"twin", "get", "d1/m1"}, {"twin", "patch", "d1/m1", "--desired", "{}"},
			{"twin", "edit", "d1/m1"}, {"twin", "watch", "d1/m1"},
		} {
			code, _, errOut := run(t, args...)
			if code != ExitUnavailable || !strings.Contains(errOut, "unreachable") || !strings.Contains(errOut, "is the hub running") {
				t.Errorf("outpost %s with the hub down: code %d, stderr %q", strings.Join(args, " "), code, errOut)
			}
		}
	})
}
