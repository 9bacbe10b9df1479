package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/version"
)

func newVersionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print outpost's version, commit and Go version",
		Example: "  outpost version\n  outpost version -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			return f.Print(info, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "outpost %s\n", versionLine(info))
				return err
			})
		},
	}
}

// versionLine is what `outpost version` and `outpost --version` print after
// "outpost ".
func versionLine(info version.Info) string {
	return fmt.Sprintf("%s (commit %s, %s, %s)", info.Version, info.Commit, info.GoVersion, info.Platform)
}
