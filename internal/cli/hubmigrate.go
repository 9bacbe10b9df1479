package cli

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/hub"
)

func newHubMigrateCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate --from DATA_DIR --to etcd://HOST:PORT[,HOST:PORT…]/PREFIX",
		Short: "Copy a hub's data dir into etcd, for hub replicas (--store etcd)",
		Long: `Copy the records of a hub on the file store (its data dir) into etcd under
PREFIX, and its CA, so that hub replicas started with --store etcd serve the
same registry, policies and keys, and clients keep trusting the same CA.

Stop the hub first: its data dir is locked while it runs. The copy is
idempotent and resumable: a record already in etcd with the same value is left
alone, so run it again after an interruption. It ends with the counts. Devices
sync in full once against the replicas (the sync cursor key is not copied).

--verify compares the data dir with etcd instead, and fails if they differ.

etcd:// uses http; give --etcd-cacert (and --etcd-cert/--etcd-key) for https.`,
		Example: `  outpost hub migrate --from /var/lib/outpost/hub --to etcd://10.0.0.1:2379,10.0.0.2:2379/outpost
  outpost hub migrate --from /var/lib/outpost/hub --to etcd://10.0.0.1:2379/outpost --verify`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return hubMigrateRun(cmd.Context(), f, cmd)
		},
	}
	fl := cmd.Flags()
	fl.String("from", "", "the data dir of the hub to copy (stopped)")
	fl.String("to", "", "etcd://HOST:PORT[,HOST:PORT…]/PREFIX")
	fl.Bool("verify", false, "compare the data dir with etcd instead of copying")
	addHubStoreFlags(fl)
	fl.Lookup("store").Hidden = true
	fl.Lookup("etcd-endpoints").Hidden = true
	fl.Lookup("etcd-prefix").Hidden = true
	return cmd
}

// parseEtcdURL splits etcd://HOST:PORT[,HOST:PORT…]/PREFIX into endpoints and prefix.
func parseEtcdURL(s string, https bool) ([]string, string, error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return nil, "", flagErrorf("--to %q: want etcd://HOST:PORT[,HOST:PORT…]/PREFIX, e.g. etcd://127.0.0.1:2379/outpost", s)
	}
	hosts, prefix, _ := strings.Cut(rest, "/")
	if prefix == "" {
		return nil, "", flagErrorf("--to %q: no /PREFIX after the hosts (hub serve's default --etcd-prefix is /outpost)", s)
	}
	scheme := "http://"
	if https {
		scheme = "https://"
	}
	var eps []string
	for _, h := range strings.Split(hosts, ",") {
		if u, err := url.Parse(scheme + h); err != nil || u.Port() == "" || u.Hostname() == "" {
			return nil, "", flagErrorf("--to %q: %q is not HOST:PORT", s, h)
		}
		eps = append(eps, scheme+h)
	}
	return eps, "/" + prefix, nil
}

func hubMigrateRun(ctx context.Context, f *Factory, cmd *cobra.Command) error {
	v := f.Config()
	from, to := v.GetString("from"), v.GetString("to")
	if from == "" || to == "" {
		return flagErrorf("give --from DATA_DIR and --to etcd://HOST:PORT/PREFIX")
	}
	eps, prefix, err := parseEtcdURL(to, v.GetString("etcd-cacert") != "" || v.GetString("etcd-cert") != "")
	if err != nil {
		return err
	}
	v.Set("store", "etcd")
	v.Set("etcd-endpoints", eps)
	v.Set("etcd-prefix", prefix)
	st, err := openHubEtcd(v)
	if err != nil {
		return err
	}
	defer st.Close()
	if v.GetBool("verify") {
		res, err := hub.VerifyMigration(from, st)
		if err != nil {
			return err
		}
		if err := f.Print(res, func(w io.Writer) error {
			fmt.Fprintf(w, "%d records in %s; in etcd %s: %d missing, %d different, %d only in etcd\n",
				res.Records, from, to, len(res.Missing), len(res.Different), len(res.Extra))
			for _, l := range []struct {
				what string
				keys []string
			}{{"missing", res.Missing}, {"different", res.Different}, {"only in etcd", res.Extra}} {
				for _, k := range l.keys[:min(len(l.keys), 20)] {
					fmt.Fprintf(w, "  %s: %s\n", l.what, k)
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if !res.OK() {
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("etcd %s does not hold exactly the records of %s: run the migration (again)", to, from)}
		}
		return nil
	}
	start := time.Now()
	res, err := hub.MigrateStore(from, st, func(done, total int) {
		f.status("%d of %d records…", done, total)
	})
	if err != nil {
		return err
	}
	return f.Print(res, func(w io.Writer) error {
		ca := "the CA copied"
		if !res.CA {
			ca = "no CA in the data dir (an --insecure-http hub?)"
		}
		_, err := fmt.Fprintf(w, "migrated %d records from %s to %s in %s: %d copied, %d there already; %s\n",
			res.Records, from, to, time.Since(start).Round(time.Millisecond), res.Copied, res.Already, ca)
		return err
	})
}
