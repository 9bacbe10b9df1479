package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/gctune"
	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/store"
)

func newHubCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub and read its credentials",
		Long: `The hub holds device and module identities, their twins and deployments,
and serves them over IoT Hub's service REST API (HTTPS) and outpost's device
sync endpoints.

Its commands find the hub's data dir the same way: --data, else
OUTPOST_HUB_DATA (or OUTPOST_DATA), else hub.data in the config file:

  hub:
    data: /var/lib/outpost/hub

else $XDG_DATA_HOME/outpost/hub (/var/lib/outpost/hub as root). A data: at
the top level of the config file is the daemon's, never the hub's.`,
		Annotations: map[string]string{sectionAnnotation: "hub"},
	}
	cmd.AddCommand(newHubServeCmd(f, nil), newHubCredentialsCmd(f), newHubPolicyCmd(f))
	cmd.AddCommand(newHubMigrateCmd(f), newHubStatusCmd(f))
	return cmd
}

// hubDataDir is the hub's data dir: --data, env, config file (hub section),
// else the default.
func hubDataDir(f *Factory) string {
	if dir := f.Config().GetString("data"); dir != "" {
		return dir
	}
	return defaultHubData()
}

// defaultHubData is where the hub keeps its data when --data is not given.
func defaultHubData() string { return defaultPartData("hub") }

func newHubServeCmd(f *Factory, runF func(hub.Config) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the hub",
		Long: `Run the hub until interrupted (SIGINT or SIGTERM drain requests in flight, then exit).

On first start (a data dir missing or empty) it creates its data dir, a CA and
a server certificate, and the owner policy, and prints the owner connection
string and the CA file; 'outpost hub credentials' shows them again. A start
that fails (say, the port is in use) leaves no data dir behind, and the owner
connection string is printed on every start until one has shown it.

A data dir set up before is never set up again implicitly: if part of it is
missing (store/records, the owner policy, ca.pem or ca-key.pem), the hub refuses
to start and says what is missing. Restore it from a backup, or start once with
--reinit to make new state for what is missing (an empty registry, a new owner
key, or a new CA that every client must then trust).

HTTPS always, unless --insecure-http (local development only).

It listens on port 443, as IoT Hub does: Microsoft's Azure IoT SDKs connect to
port 443 of the connection string's HostName and take no port in it. When 443
cannot be bound (not root, or the port is taken) and --listen was not given, it
listens on :8443 instead and says why and how to get 443 (sudo setcap
cap_net_bind_service=+ep "$(command -v outpost)", root, or --listen); its
connection strings then carry the port (HostName=localhost:8443), which
outpost's own tools accept and Microsoft's SDKs do not. A --listen that cannot
be bound is an error.

outpost hub does not speak AMQP. On port 443 it also listens on port 5671
(IoT Hub's AMQPS; --amqp-listen sets another address, "" none) and answers
AMQP clients, such as azure-iothub's Client, with AMQP's own refusal, so that
they fail at once with a message that says what to use instead of retrying for
minutes; AMQP over WebSocket (/$iothub/websocket on 443) likewise.`,
		Example: `  outpost hub serve --data ./hub
  outpost hub serve --data ./hub --listen 127.0.0.1:8443
  outpost hub serve --hostname hub.example.com --san 10.0.0.5`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := f.Config()
			cfg := hub.Config{
				DataDir:      hubDataDir(f),
				Listen:       v.GetString("listen"),
				AMQPListen:   v.GetString("amqp-listen"),
				HostName:     v.GetString("hostname"),
				SANs:         v.GetStringSlice("san"),
				InsecureHTTP: v.GetBool("insecure-http"),
				Reinit:       v.GetBool("reinit"),
				Limits:       hubLimits(v),
				TLSCertFile:  v.GetString("tls-cert"),
				TLSKeyFile:   v.GetString("tls-key"),
				Logger:       slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: slog.LevelInfo})),
			}
			// The defaults fall back; an address the user chose does not.
			if !v.IsSet("listen") {
				cfg.FallbackListen = hub.FallbackListen
			}
			cfg.AMQPBeside = !v.IsSet("amqp-listen")
			if runF != nil {
				return runF(cfg)
			}
			if err := cfg.Limits.Validate(); err != nil {
				return flagErrorf("%v", err)
			}
			st, err := openHubEtcd(v)
			if err != nil {
				return err
			}
			if st != nil {
				cfg.Store = st // the hub closes it
			} else {
				// The file store's durable writes hold Ps while they wait on
				// the disk.
				store.UseProcs()
			}
			return hubServeRun(cmd, f, cfg)
		},
	}
	fl := cmd.Flags()
	fl.String("data", "", "data dir (default $XDG_DATA_HOME/outpost/hub, or /var/lib/outpost/hub as root)")
	fl.String("listen", hub.DefaultListen, "address to listen on; when the default cannot be bound, :8443")
	fl.String("amqp-listen", "", `address where AMQP clients are refused at once ("" for none; default: port 5671 beside a hub on port 443)`)
	fl.String("hostname", "", "host[:port] devices and clients use to reach the hub (default localhost, with the port unless 443)")
	fl.StringSlice("san", nil, "extra DNS name or IP for the server certificate (repeatable)")
	fl.Bool("insecure-http", false, "serve plain HTTP (local development only)")
	fl.Bool("reinit", false, "make new state for what a data dir set up before is missing (new owner key, new CA, empty registry) instead of refusing to start")
	addHubLimitFlags(fl)
	addHubStoreFlags(fl)
	fl.String("tls-cert", "", "server certificate file (PEM) to serve instead of one issued from the hub's CA (replicas behind a load balancer)")
	fl.String("tls-key", "", "the key file (PEM) of --tls-cert")
	return cmd
}

func hubServeRun(cmd *cobra.Command, f *Factory, cfg hub.Config) error {
	h, showCreds, err := hub.Open(cfg)
	var (
		missing  *hub.MissingStateError
		listenEr *hub.ListenError
	)
	if errors.As(err, &missing) || errors.As(err, &listenEr) {
		return &ExitError{Code: ExitFailure, Err: err} // a listen error's hint says what to do
	}
	if err != nil {
		return &ExitError{Code: ExitUnavailable, Err: err}
	}
	defer h.Close()
	creds := h.Credentials()
	scheme := "https"
	if cfg.InsecureHTTP {
		scheme = "http"
		fmt.Fprintln(f.IO.ErrOut, "WARNING: serving plain HTTP: tokens and keys cross the network in the clear")
	}
	if fb := h.Fallback(); fb != nil {
		fmt.Fprint(f.IO.ErrOut, fb.Message())
	}
	fmt.Fprintf(f.IO.ErrOut, "hub listening on %s://%s (data %s; clients use HostName=%s)\n", scheme, h.Addr(), cfg.DataDir, h.HostName())
	if a := h.AMQPAddr(); a != nil {
		fmt.Fprintf(f.IO.ErrOut, "AMQP clients are refused at once on %s (outpost hub does not speak AMQP)\n", a)
	} else if skip := h.AMQPSkipped(); skip != nil {
		fmt.Fprintf(f.IO.ErrOut, "warning: %v: AMQP clients (azure-iothub's Client) will retry for minutes instead of being refused at once. %s\n", skip, skip.Hint())
	}
	// The hub's heap is mostly its store's records, which live as long as
	// the process and hold no pointers: once they are loaded, collecting at
	// 25% growth instead of Go's default 100% keeps the resident size near
	// the data for little CPU, but 25% of a small registry is a collection
	// every megabyte of requests. So the heap may grow by a quarter, and at
	// least 32 MiB (gctune). GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		go gctune.Run(cmd.Context(), 32<<20, time.Second)
		go debug.FreeOSMemory() // give back what loading took beyond the records
	}
	if showCreds {
		fmt.Fprintf(f.IO.ErrOut, "\nThe owner connection string ('outpost hub credentials --data %s' shows it again):\n\n", cfg.DataDir)
		fmt.Fprintf(f.IO.Out, "%s\n", creds.ConnectionString)
		if creds.CAFile != "" {
			fmt.Fprintf(f.IO.ErrOut, "\nClients trust the hub's CA: --ca %s (or OUTPOST_CA)\n\n", creds.CAFile)
		}
		if err := h.CredentialsShown(); err != nil {
			fmt.Fprintf(f.IO.ErrOut, "warning: %v (it is shown again at the next start)\n", err)
		}
	}
	return h.Serve(cmd.Context())
}

func newHubCredentialsCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "credentials",
		Short:   "Print the hub's owner connection string and CA file",
		Example: "  outpost hub credentials --data ./hub\n  export OUTPOST_CONNECTION_STRING=$(outpost hub credentials --data ./hub -o json | jq -r .connectionString)",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			creds, err := hub.ReadCredentials(hubDataDir(f))
			if err != nil {
				return err
			}
			return f.Print(creds, func(w io.Writer) error {
				fmt.Fprintf(w, "connection string: %s\n", creds.ConnectionString)
				if creds.CAFile != "" {
					fmt.Fprintf(w, "CA file:           %s\n", creds.CAFile)
				}
				return nil
			})
		},
	}
	cmd.Flags().String("data", "", "the hub's data dir (found as hub serve finds it: --data, OUTPOST_HUB_DATA, hub.data in the config file, the default)")
	return cmd
}
