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
		Use:   "token [DEVICE[/MODULE]]",
		Short: "Print a SAS token for a device, a module or the hub's policy",
		Long: `Print a SAS token for a device (DEVICE) or a module (DEVICE/MODULE), signed
with its primary key, valid for --ttl. The key is read from the hub with the
operator's connection string (--hub); it is not printed.

Without an argument, print a token for the shared access policy of the
connection string itself (skn=POLICY, signed with its key, for the hub's
host name): what a script sends to the service API, as
az iot hub generate-sas-token does without a device.

The token is what a device or module sends as its password or Authorization
header: SharedAccessSignature sr=…&sig=…&se=…`,
		Example: `  outpost token dev-1
  outpost token dev-1/tempsensor --ttl 15m
  curl -H "Authorization: $(outpost token dev-1)" …
  curl -H "Authorization: $(outpost token)" https://HOST/devices?api-version=2021-04-12`,
		Args: rangeArgs(0, 1, "at most one DEVICE or DEVICE/MODULE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				t, err := parseTarget(args[0], moduleOptional)
				if err != nil {
					return err
				}
				opts.Target = t
			}
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
	expiry := f.Now().Add(opts.TTL).Truncate(time.Second).UTC()
	if t.Device == "" {
		cs := c.ConnectionString() // a policy's: HubClient checked
		tok, err := identity.NewSAS(cs.Resource(), cs.SharedAccessKey, expiry, cs.SharedAccessKeyName)
		if err != nil {
			return fmt.Errorf("token for policy %s: %w", cs.SharedAccessKeyName, err)
		}
		return printToken(f, tok, cs.Resource(), expiry)
	}
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
	tok, err := identity.NewSAS(resource, auth.SymmetricKey.PrimaryKey, expiry, "")
	if err != nil {
		return fmt.Errorf("token for %s: %w", t, err)
	}
	return printToken(f, tok, resource, expiry)
}

func printToken(f *Factory, tok, resource string, expiry time.Time) error {
	return f.Print(tokenResult{Token: tok, Resource: resource, ExpiresAt: expiry}, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, tok)
		return err
	})
}
