package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func newHubStatusCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show a running hub replica's store, etcd health and load",
		Long: `Ask the hub named by --hub (or OUTPOST_CONNECTION_STRING) what it says of
itself: its store (file, or etcd with its endpoints, each member's health and
the revision), whether it is ready, and the devices connected and sync long
polls held through it. Behind a load balancer this is one replica's view: point
--hub at a replica's own address to ask a given one.

Load balancers probe GET /healthz (the process serves) and GET /readyz (its
store answers; 503 otherwise), which need no credentials.`,
		Example: "  outpost hub status\n  outpost hub status -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.HubClient()
			if err != nil {
				return err
			}
			s, err := c.Status(cmd.Context())
			if err != nil {
				return fmt.Errorf("hub status: %w", err)
			}
			return f.Print(s, func(w io.Writer) error {
				ready := "ready"
				if !s.Ready {
					ready = "NOT READY: " + s.StoreError
				}
				fmt.Fprintf(w, "store:             %s (%s)\n", s.Store, ready)
				if s.Store == "etcd" {
					fmt.Fprintf(w, "etcd endpoints:    %s (prefix %s)\n", strings.Join(s.Endpoints, ","), s.Prefix)
					fmt.Fprintf(w, "revision:          %d\n", s.Revision)
					for _, m := range s.Members {
						state := "healthy"
						if !m.Healthy {
							state = "UNHEALTHY: " + m.Error
						} else if m.Leader {
							state += ", leader"
						}
						fmt.Fprintf(w, "  %-30s %s (revision %d, db %d bytes)\n", m.Endpoint, state, m.Revision, m.DBSize)
					}
				} else if s.DataDir != "" {
					fmt.Fprintf(w, "data dir:          %s\n", s.DataDir)
				}
				fmt.Fprintf(w, "connected devices: %d (through this replica)\n", s.ConnectedDevices)
				_, err := fmt.Fprintf(w, "long polls held:   %d\n", s.LongPolls)
				return err
			})
		},
	}
}
