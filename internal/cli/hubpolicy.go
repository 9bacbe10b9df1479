package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
)

func newHubPolicyCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage the hub's shared access policies",
		Long: `A shared access policy (owner is the one every hub has) signs the tokens of
operators and tools: its connection string is HostName=…;SharedAccessKeyName=…;SharedAccessKey=….`,
	}
	cmd.AddCommand(newHubPolicyRotateCmd(f, nil))
	return cmd
}

type hubPolicyRotateOptions struct {
	Policy       string
	KeepPrevious bool
}

func newHubPolicyRotateCmd(f *Factory, runF func(*hubPolicyRotateOptions) error) *cobra.Command {
	opts := &hubPolicyRotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Give a shared access policy new keys and print its new connection string",
		Long: `Give a shared access policy of the running hub new keys, and print the new
connection string on stdout. The hub refuses tokens signed with the old keys at
once, without a restart; for the owner policy it also updates the credentials
that 'outpost hub credentials' shows.

With --keep-previous only the primary key is new: the old primary key becomes
the secondary key and stays valid until the next rotation, so that clients can
move to the new connection string first (a rollover, as IoT Hub's primary and
secondary keys allow). Rotate again without it to retire the old key.

It talks to the hub named by --hub (or OUTPOST_CONNECTION_STRING), as a policy
with registryWrite and every right of the rotated policy. With -o json or
-o yaml it prints the policy with both keys and connectionString.`,
		Example: `  outpost hub policy rotate owner
  export OUTPOST_CONNECTION_STRING=$(outpost hub policy rotate owner)
  outpost hub policy rotate owner --keep-previous   # old connection strings keep working until the next rotation`,
		Args: exactArgs(1, "one policy NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Policy = args[0]
			if runF != nil {
				return runF(opts)
			}
			return hubPolicyRotateRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.KeepPrevious, "keep-previous", false, "keep the old primary key valid, as the secondary key, until the next rotation")
	return cmd
}

func hubPolicyRotateRun(ctx context.Context, f *Factory, opts *hubPolicyRotateOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	p, err := c.RotatePolicy(ctx, opts.Policy, opts.KeepPrevious)
	if errors.Is(err, hubclient.ErrNotFound) {
		err = withHint(err, "the owner policy is called owner")
	}
	if err != nil {
		return fmt.Errorf("rotate policy %s: %w", opts.Policy, err)
	}
	// The new connection string names the hub as this client reaches it.
	cs := &identity.ConnectionString{
		HostName:            c.HostName(),
		SharedAccessKeyName: p.KeyName,
		SharedAccessKey:     p.PrimaryKey,
		UseInsecureHTTP:     c.ConnectionString().UseInsecureHTTP,
	}
	p.ConnectionString = cs.String()
	if opts.KeepPrevious {
		f.status("rotated policy %s: new primary key; the previous one stays valid (as the secondary key) until the next rotation", p.KeyName)
	} else {
		f.status("rotated policy %s: both keys are new, tokens signed with the old ones are refused", p.KeyName)
	}
	return f.Print(p, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, p.ConnectionString)
		return err
	})
}
