package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// printMessageQueue adds the message queue to `outpost status`.
func printMessageQueue(w io.Writer, q *mgmtclient.MessageQueue) {
	if q == nil {
		return
	}
	line := func(name string, s mgmtclient.QueueStats) {
		fmt.Fprintf(w, "%-11s %d messages, %d bytes, %d expired", name, s.Count, s.Bytes, s.Expired)
		if !s.Oldest.IsZero() {
			fmt.Fprintf(w, ", oldest %s", s.Oldest.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
	line("upstream:", q.Upstream)
	line("inputs:", q.Inputs)
	if q.Upstream.Refused > 0 {
		fmt.Fprintf(w, "warning:    the message queue was full %d times: modules got no PUBACK and send again (is the hub unreachable?)\n", q.Upstream.Refused)
	}
	if q.RoutesError != "" {
		fmt.Fprintf(w, "warning:    no message is routed: %s\n", q.RoutesError)
	}
}
