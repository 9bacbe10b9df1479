package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/deviceca"
)

// caInfo is what outpost daemon ca -o json|yaml prints.
type caInfo struct {
	File        string    `json:"file"`
	Subject     string    `json:"subject"`
	Fingerprint string    `json:"sha256Fingerprint"`
	NotAfter    time.Time `json:"notAfter"`
	SelfSigned  bool      `json:"selfSigned"`
	PEM         string    `json:"pem"`
}

func newDaemonCACmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Print the root certificate leaf devices must trust to reach this daemon's broker",
		Long: `Print (PEM) the root certificate of the device CA, which issues the
broker's TLS certificate: what a leaf device (a device whose connection string
has GatewayHostName=this machine) and any other client of the broker must
trust. It reads the CA the daemon made in DATA/ca on its first start, or the
one given with --device-ca-cert, from the files: no running daemon is needed.
The broker's certificate is issued for --gateway-hostname (default: this
machine's host name), localhost, 127.0.0.1 and ::1: leaf devices put that
name in GatewayHostName.

The CA's file, subject and SHA-256 fingerprint go to stderr (-o json|yaml
prints them with the PEM instead). When --device-ca-cert's file stops below
its root, all its certificates are printed and a warning says that the root
is missing. See docs/gateway.md for installing it on a leaf device.`,
		Example: `  outpost daemon ca > outpost-edge.crt
  outpost daemon ca --data ./device -o json
  # on a Debian leaf device:
  sudo cp outpost-edge.crt /usr/local/share/ca-certificates/ && sudo update-ca-certificates`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := f.Config()
			file, dataDir := v.GetString("device-ca-cert"), v.GetString("data")
			if file == "" {
				file = deviceca.OwnCertFile(dataDir)
			}
			root, err := deviceca.ReadRoot(file)
			if errors.Is(err, deviceca.ErrNoCA) {
				hint := fmt.Sprintf("the daemon makes its CA in %s on its first start: start it once (outpost daemon --data %s …), or pass --data with the data dir the daemon runs with", filepath.Dir(file), dataDir)
				if v.GetString("device-ca-cert") != "" {
					hint = "check --device-ca-cert: it names the device CA's certificate file the daemon runs with"
				}
				return &ExitError{Code: ExitNotFound, Err: fmt.Errorf("daemon ca: %w", err), Hint: hint}
			}
			if err != nil {
				return fmt.Errorf("daemon ca: %w", err)
			}
			info := caInfo{File: root.File, Subject: root.Cert.Subject.String(), Fingerprint: deviceca.Fingerprint(root.Cert),
				NotAfter: root.Cert.NotAfter.UTC(), SelfSigned: root.SelfSigned, PEM: string(root.PEM)}
			if !root.SelfSigned {
				f.status("warning: %s ends with %q, issued by %q, which is not in the file: leaf devices that do not take an intermediate as trust anchor (OpenSSL, so Node) must trust that root too; put the whole chain up to the root in --device-ca-cert",
					root.File, root.Cert.Subject.String(), root.Cert.Issuer.String())
			}
			return f.Print(info, func(w io.Writer) error {
				f.status("device CA %s: %s, SHA-256 fingerprint %s, valid until %s", info.File, info.Subject, info.Fingerprint, info.NotAfter.Format(time.RFC3339))
				_, err := io.WriteString(w, info.PEM)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.String("data", defaultDataDir, "the daemon's data dir: its own device CA is in DATA/ca")
	fl.String("device-ca-cert", "", "the device CA certificate (PEM) the daemon was given, if any (default: the one the daemon made in DATA/ca)")
	return cmd
}
