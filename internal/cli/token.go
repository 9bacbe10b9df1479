package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
)

type tokenOptions struct {
	Target target
	TTL    time.Duration
}

// tokenResult is what token prints with -o json|yaml.
type tokenResult struct {
	Token     string    `json:"token"`
	Resource  string    `json:"resource"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func newTokenCmd(f *Factory, runF func(*tokenOptions) error) *cobra.Command {
	opts := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "token DEVICE[/MODULE]",
		Short: "Print a SAS token for a device or module",
		Long: `Print a SAS token for a device (DEVICE) or a module (DEVICE/MODULE), signed
with its primary key, valid for --ttl. The key is read from the hub with the
operator's connection string (--hub); it is not printed.

The token is what a device or module sends as its password or Authorization
header: SharedAccessSignature sr=…&sig=…&se=…`,
		Example: `  outpost token dev-1
  outpost token dev-1/tempsensor --ttl 15m
  curl -H "Authorization: $(outpost token dev-1)" …`,
		Args: exactArgs(1, "one DEVICE or DEVICE/MODULE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], moduleOptional)
			if err != nil {
				return err
			}
			opts.Target = t
			if opts.TTL <= 0 {
				return flagErrorf("invalid --ttl %s: want a positive duration such as 30m or 24h", opts.TTL)
			}
			if runF != nil {
				return runF(opts)
			}
			return tokenRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().DurationVar(&opts.TTL, "ttl", time.Hour, "how long the token is valid (a `DURATION` such as 15m or 24h)")
	return cmd
}

func tokenRun(ctx context.Context, f *Factory, opts *tokenOptions) error {
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	t := opts.Target
	var (
		auth     *hubapi.Authentication
		resource string
	)
	if t.Module == "" {
		d, err := c.GetDevice(ctx, t.Device)
		if err != nil {
			return fmt.Errorf("token for %s: %w", t, notFoundHint(err, t))
		}
		auth, resource = d.Authentication, identity.DeviceResource(c.HostName(), t.Device)
	} else {
		m, err := c.GetModule(ctx, t.Device, t.Module)
		if err != nil {
			return fmt.Errorf("token for %s: %w", t, notFoundHint(err, t))
		}
		auth, resource = m.Authentication, identity.ModuleResource(c.HostName(), t.Device, t.Module)
	}
	if auth == nil || auth.SymmetricKey == nil || auth.SymmetricKey.PrimaryKey == "" {
		return fmt.Errorf("token for %s: the hub returned %s without a symmetric key", t, t.what())
	}
	expiry := f.Now().Add(opts.TTL).Truncate(time.Second).UTC()
	tok, err := identity.NewSAS(resource, auth.SymmetricKey.PrimaryKey, expiry, "")
	if err != nil {
		return fmt.Errorf("token for %s: %w", t, err)
	}
	return f.Print(tokenResult{Token: tok, Resource: resource, ExpiresAt: expiry}, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, tok)
		return err
	})
}
