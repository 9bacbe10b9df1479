package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/ociregistry"
)

// registryDefaultListen is where outpost registry serve listens by default:
// loopback, at the port outpost init's module.yaml names (localhost:5000).
const registryDefaultListen = "127.0.0.1:5000"

// registryResult is what registry serve prints once it listens.
type registryResult struct {
	Address string `json:"address"` // host:port, what image references start with
	DataDir string `json:"dataDir"`
}

func newRegistryCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run an OCI registry for local work",
		Long: `A local OCI registry, for the inner loop on a laptop: outpost build --push,
outpost push and the device daemon's pulls work against it as against any
registry. It is go-containerregistry's registry, kept on disk.`,
		Annotations: map[string]string{sectionAnnotation: "registry"},
	}
	cmd.AddCommand(newRegistryServeCmd(f))
	return cmd
}

func newRegistryServeCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a persistent OCI registry on loopback",
		Long: `Serve an OCI registry (the distribution API over plain HTTP) until
interrupted. It listens on 127.0.0.1:5000 by default, where outpost init's
module.yaml and deployment.yaml look for images (localhost:5000); outpost's
push and the daemon's pulls speak plain HTTP to loopback registries.

Blobs and manifests are kept in --data (default
$XDG_DATA_HOME/outpost/registry, or /var/lib/outpost/registry as root; or
registry.data in the config file), each written atomically and fsynced
before the push is told it is stored, so that a registry started again over
the same dir serves every image pushed to it before. Uploads in progress are
not kept.

Once it listens it prints its address (host:port) on stdout, or with -o json
{"address": …, "dataDir": …}. It has no authentication: on another address
than loopback, anyone who reaches it can push and pull, and it says so.`,
		Example: `  outpost registry serve
  outpost registry serve --data ./registry --listen 127.0.0.1:5001`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := f.Config()
			dir := v.GetString("data")
			if dir == "" {
				dir = defaultRegistryData()
			}
			return registryServeRun(cmd.Context(), f, dir, v.GetString("listen"))
		},
	}
	cmd.Flags().String("data", "", "data dir (default $XDG_DATA_HOME/outpost/registry, or /var/lib/outpost/registry as root)")
	cmd.Flags().String("listen", registryDefaultListen, "address to listen on (plain HTTP; loopback unless you mean it)")
	return cmd
}

// defaultRegistryData is where the registry keeps its data when --data is
// not given.
func defaultRegistryData() string { return defaultPartData("registry") }

// defaultPartData is where a part (hub, registry) keeps its data when no
// data dir is given: /var/lib/outpost/PART as root, else
// $XDG_DATA_HOME/outpost/PART (~/.local/share/outpost/PART).
func defaultPartData(part string) string {
	if os.Geteuid() == 0 {
		return "/var/lib/outpost/" + part
	}
	if dir := os.Getenv("XDG_DATA_HOME"); dir != "" {
		return filepath.Join(dir, "outpost", part)
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "outpost", part)
	}
	return "outpost-" + part
}

func registryServeRun(ctx context.Context, f *Factory, dir, listen string) error {
	reg, err := ociregistry.Open(dir, log.New(io.Discard, "", 0))
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: err, Hint: "check --data: outpost needs a directory it may write, used by no other registry"}
	}
	defer reg.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("registry: listen on %s: %w", listen, err),
			Hint: "another registry (or outpost quickstart) may hold the port: stop it, or pass --listen with another address, and use that address in module.yaml (outpost init --registry)"}
	}
	addr := ln.Addr().(*net.TCPAddr)
	if !addr.IP.IsLoopback() {
		fmt.Fprintf(f.IO.ErrOut, "WARNING: %s is not a loopback address: anyone who reaches it can push and pull images (plain HTTP, no authentication)\n", addr)
	}
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(f.IO.ErrOut, "registry serving http://%s (data %s); push to %s/NAME:TAG\n", addr, dir, addr)
	res := registryResult{Address: addr.String(), DataDir: dir}
	if err := f.Print(res, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, res.Address)
		return err
	}); err != nil {
		srv.Close()
		return err
	}
	select {
	case err := <-served:
		return fmt.Errorf("registry: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("registry: stop: %w", err)
	}
	srv.Close()
	return nil
}
