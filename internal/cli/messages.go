package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

func newMessagesCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "messages",
		Short: "Read the telemetry devices sent to the hub",
		Long: `Read the device-to-cloud messages the hub received: what modules sent on
outputs that a route took to $upstream. The hub keeps each device's recent
messages (a bounded store); list prints them, watch follows new ones as they
arrive, like az iot hub monitor-events. These commands need an operator's
connection string (--hub) and the hub's CA (--ca).`,
	}
	cmd.AddCommand(newMessagesListCmd(f, nil), newMessagesWatchCmd(f, nil))
	return cmd
}

type messagesListOptions struct {
	Target target
	After  uint64
	Limit  int
}

func newMessagesListCmd(f *Factory, runF func(*messagesListOptions) error) *cobra.Command {
	opts := &messagesListOptions{}
	cmd := &cobra.Command{
		Use:   "list DEVICE[/MODULE]",
		Short: "List a device's recent messages at the hub, oldest first",
		Long: `List the messages the hub keeps for a device (of one module with
DEVICE/MODULE), oldest first: the hub's sequence number, when the device
queued it, the module and output, its properties and body. With -o json, one
array of objects ({"seq", "deviceId", "moduleId", "outputName",
"enqueuedTimeUtc", "receivedTimeUtc", "systemProperties", "properties",
"payload"}; payload is the body as JSON when it is JSON, else as a string, or
"bodyBase64" when it is not UTF-8).`,
		Example: `  outpost messages list dev-1
  outpost messages list dev-1/filter --after 120 --limit 10 -o json`,
		Args: exactArgs(1, "one DEVICE or DEVICE/MODULE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleOptional)
			if err != nil {
				return err
			}
			opts.Target = t
			if opts.Limit < 1 || opts.Limit > 10000 {
				return &FlagError{Err: fmt.Errorf("--limit %d: want 1 to 10000", opts.Limit)}
			}
			if runF != nil {
				return runF(opts)
			}
			return messagesListRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().Uint64Var(&opts.After, "after", 0, "only messages after this sequence number")
	cmd.Flags().IntVar(&opts.Limit, "limit", 1000, "at most this many messages (1 to 10000)")
	return cmd
}

func messagesListRun(ctx context.Context, f *Factory, opts *messagesListOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	t := opts.Target
	list, err := c.Messages(ctx, t.Device, t.Module, opts.After, opts.Limit, 0)
	if err != nil {
		return fmt.Errorf("list messages of %s: %w", t, notFoundHint(err, target{Device: t.Device}))
	}
	views := make([]messageView, 0, len(list.Messages))
	for _, m := range list.Messages {
		views = append(views, viewOf(m))
	}
	return f.Print(views, func(w io.Writer) error {
		tb := NewTable("seq", "enqueued", "module", "output", "properties", "body")
		for _, v := range views {
			tb.Row(strconv.FormatUint(v.Seq, 10), v.EnqueuedTime.Format(time.RFC3339), v.ModuleID, v.OutputName, propsText(v), bodyText(v, 60))
		}
		return tb.Write(w)
	})
}

type messagesWatchOptions struct {
	Target    target
	FromStart bool
	Wait      time.Duration
}

func newMessagesWatchCmd(f *Factory, runF func(*messagesWatchOptions) error) *cobra.Command {
	opts := &messagesWatchOptions{Wait: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "watch DEVICE[/MODULE]",
		Short: "Print a device's messages as they reach the hub",
		Long: `Follow the messages the hub receives from a device (of one module with
DEVICE/MODULE) and print one line per message, like az iot hub monitor-events.
With -o json, one JSON object per line (the fields of messages list -o json).
It starts with the next message to arrive (--from-start: with the oldest the
hub keeps), uses a long poll so messages show at once, and runs until
interrupted (Ctrl-C); it stops with an error when the hub becomes unreachable
(exit code 5).`,
		Example: `  outpost messages watch dev-1
  outpost messages watch dev-1/filter -o json | jq -c .payload`,
		Args: exactArgs(1, "one DEVICE or DEVICE/MODULE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleOptional)
			if err != nil {
				return err
			}
			opts.Target = t
			if runF != nil {
				return runF(opts)
			}
			return messagesWatchRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.FromStart, "from-start", false, "print the messages the hub keeps first")
	return cmd
}

func messagesWatchRun(ctx context.Context, f *Factory, opts *messagesWatchOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	t := opts.Target
	var after uint64
	if !opts.FromStart {
		if after, err = c.LatestMessage(ctx, t.Device); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch messages of %s: %w", t, notFoundHint(err, target{Device: t.Device}))
		}
	}
	f.status("watching messages of %s; Ctrl-C stops", t)
	for {
		list, err := c.Messages(ctx, t.Device, t.Module, after, 1000, opts.Wait)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return fmt.Errorf("watch messages of %s: %w", t, notFoundHint(err, target{Device: t.Device}))
		}
		for _, m := range list.Messages {
			if err := writeMessage(f, viewOf(m)); err != nil {
				return err
			}
		}
		after = max(after, list.Next)
	}
}

// messageView is a message as the CLI prints it: the body as JSON when it
// is JSON, as a string when it is text, else base64.
type messageView struct {
	Seq              uint64            `json:"seq"`
	DeviceID         string            `json:"deviceId"`
	ModuleID         string            `json:"moduleId,omitempty"`
	OutputName       string            `json:"outputName,omitempty"`
	EnqueuedTime     time.Time         `json:"enqueuedTimeUtc"`
	ReceivedTime     time.Time         `json:"receivedTimeUtc"`
	SystemProperties map[string]string `json:"systemProperties,omitempty"`
	Properties       map[string]string `json:"properties,omitempty"`
	Payload          json.RawMessage   `json:"payload,omitempty"`
	BodyBase64       string            `json:"bodyBase64,omitempty"`
}

func viewOf(m hubapi.Message) messageView {
	v := messageView{Seq: m.Seq, DeviceID: m.DeviceID, ModuleID: m.ModuleID, OutputName: m.OutputName,
		EnqueuedTime: m.EnqueuedTime, ReceivedTime: m.ReceivedTime, SystemProperties: m.SystemProperties, Properties: m.Properties}
	switch {
	case json.Valid(m.Body) && len(m.Body) > 0:
		v.Payload = json.RawMessage(m.Body)
	case utf8.Valid(m.Body):
		v.Payload, _ = json.Marshal(string(m.Body))
	default:
		v.BodyBase64 = base64.StdEncoding.EncodeToString(m.Body)
	}
	return v
}

func propsText(v messageView) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(v.Properties)) {
		parts = append(parts, k+"="+v.Properties[k])
	}
	return strings.Join(parts, " ")
}

func bodyText(v messageView, n int) string {
	s := string(v.Payload)
	if v.BodyBase64 != "" {
		s = "base64:" + v.BodyBase64
	}
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n]) + "…"
	}
	return s
}

func writeMessage(f *Factory, v messageView) error {
	if done, err := f.printStreamed(v); done {
		return err
	}
	w := f.IO.Out
	from := v.DeviceID
	if v.ModuleID != "" {
		from += "/" + v.ModuleID
	}
	if v.OutputName != "" {
		from += " [" + v.OutputName + "]"
	}
	line := fmt.Sprintf("%s  #%d  %s", v.EnqueuedTime.Format(time.RFC3339Nano), v.Seq, from)
	if p := propsText(v); p != "" {
		line += "  " + p
	}
	_, err := fmt.Fprintf(w, "%s  %s\n", line, bodyText(v, 1<<20))
	return err
}
