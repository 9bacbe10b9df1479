package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

func newMethodCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "method",
		Short: "Call direct methods on modules and devices",
		Long: `Call a direct method on a module (DEVICE/MODULE) through the hub, as IoT Hub's
service API does: the hub hands the call to the device's daemon, which passes
it to the module over its broker and brings back the answer. The daemon
answers $edgeAgent's methods itself: ping, RestartModule and GetModuleLogs.
These commands need an operator's connection string (--hub) and the hub's CA
(--ca).`,
	}
	cmd.AddCommand(newMethodInvokeCmd(f, nil))
	return cmd
}

type methodInvokeOptions struct {
	Target         target
	Method         string
	Payload        json.RawMessage
	Timeout        time.Duration
	ConnectTimeout time.Duration
}

func newMethodInvokeCmd(f *Factory, runF func(*methodInvokeOptions) error) *cobra.Command {
	opts := &methodInvokeOptions{}
	var payload string
	cmd := &cobra.Command{
		Use:   "invoke DEVICE[/MODULE] METHOD",
		Short: "Call a direct method and print its answer",
		Long: `Call METHOD on a module (or on a device) and print the answer's payload; the
status the module answered with goes to stderr. -o json|yaml print the whole
answer, {"status": …, "payload": …}.

--payload is the method's JSON payload (default null). --timeout is how long
the module has to answer (IoT Hub's responseTimeoutInSeconds, 5s to 300s);
--connect-timeout how long to wait for a device or module that is not
connected (connectTimeoutInSeconds, 0 to 300s). A device or module that is
not there fails with DeviceNotOnline (exit 3), one that does not answer in
time with GatewayTimeout (exit 1).`,
		Example: `  outpost method invoke dev-1/tempsensor reboot --payload '{"delay": 5}'
  outpost method invoke 'dev-1/$edgeAgent' ping
  outpost method invoke 'dev-1/$edgeAgent' RestartModule --payload '{"schemaVersion": "1.0", "id": "tempsensor"}'
  outpost method invoke 'dev-1/$edgeAgent' GetModuleLogs -o json \
    --payload '{"schemaVersion": "1.0", "items": [{"id": "tempsensor", "filter": {"tail": 10}}]}'`,
		Args: exactArgs(2, "DEVICE[/MODULE] and a METHOD name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleOptional)
			if err != nil {
				return err
			}
			opts.Target, opts.Method = t, args[1]
			if err := hubapi.ValidMethodName(opts.Method); err != nil {
				return flagErrorf("invalid METHOD: %v", err)
			}
			if payload != "" {
				if opts.Payload, err = jsonFlag("--payload", payload); err != nil {
					return err
				}
			}
			if opts.Timeout < hubapi.MinMethodResponseTimeout || opts.Timeout > hubapi.MaxMethodTimeout || opts.Timeout%time.Second != 0 {
				return flagErrorf("invalid --timeout %s: give whole seconds from 5s to 300s", opts.Timeout)
			}
			if opts.ConnectTimeout < 0 || opts.ConnectTimeout > hubapi.MaxMethodTimeout || opts.ConnectTimeout%time.Second != 0 {
				return flagErrorf("invalid --connect-timeout %s: give whole seconds from 0s to 300s", opts.ConnectTimeout)
			}
			if runF != nil {
				return runF(opts)
			}
			return methodInvokeRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().StringVar(&payload, "payload", "", "the method's `JSON` payload (default null)")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", hubapi.DefaultMethodResponseTimeout, "how long the module has to answer (`D`, 5s to 300s)")
	cmd.Flags().DurationVar(&opts.ConnectTimeout, "connect-timeout", 0, "how long to wait for a device or module that is not connected (`D`, up to 300s)")
	return cmd
}

// jsonFlag reads a flag's JSON value, saying where it stops being JSON.
func jsonFlag(flag, v string) (json.RawMessage, error) {
	var x any
	if err := json.Unmarshal([]byte(v), &x); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, flagErrorf("invalid %s: not JSON at byte %d: %v (quote strings: '\"text\"')", flag, se.Offset, err)
		}
		return nil, flagErrorf("invalid %s: %v", flag, err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(v)); err != nil {
		return nil, flagErrorf("invalid %s: %v", flag, err)
	}
	return b.Bytes(), nil
}

func methodInvokeRun(ctx context.Context, f *Factory, opts *methodInvokeOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	resp, conn := int(opts.Timeout/time.Second), int(opts.ConnectTimeout/time.Second)
	res, err := c.InvokeMethod(ctx, opts.Target.Device, opts.Target.Module, hubapi.MethodRequest{
		MethodName: opts.Method, Payload: opts.Payload,
		ResponseTimeoutInSeconds: &resp, ConnectTimeoutInSeconds: &conn,
	})
	if err != nil {
		return methodError(err, opts)
	}
	f.status("method %s on %s: status %d", opts.Method, opts.Target, res.Status)
	return f.Print(res, func(w io.Writer) error {
		var b bytes.Buffer
		if err := json.Indent(&b, res.Payload, "", "  "); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "%s\n", b.Bytes())
		return err
	})
}

// methodError adds what to do next to the hub's refusal of a call.
func methodError(err error, opts *methodInvokeOptions) error {
	err = fmt.Errorf("method %s on %s: %w", opts.Method, opts.Target, err)
	var he *hubclient.Error
	if !errors.As(err, &he) {
		return err
	}
	switch he.Code {
	case "DeviceNotOnline":
		return withHint(err, "is the daemon running on "+opts.Target.Device+" (outpost status there), and the module connected and subscribed to methods? --connect-timeout waits for it")
	case "GatewayTimeout":
		return withHint(err, "the module took the call but did not answer in time: raise --timeout (at most 300s), or check its logs (outpost logs MODULE on the device)")
	case "DeviceNotFound", "ModuleNotFound":
		return notFoundHint(err, opts.Target)
	}
	return err
}
