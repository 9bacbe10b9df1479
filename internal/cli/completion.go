package cli

import (
	"github.com/spf13/cobra"
)

func newCompletionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print a completion script for your shell.

  bash:        source <(outpost completion bash)
               (or save it to /etc/bash_completion.d/outpost)
  zsh:         outpost completion zsh > "${fpath[1]}/_outpost"
  fish:        outpost completion fish > ~/.config/fish/completions/outpost.fish
  powershell:  outpost completion powershell | Out-String | Invoke-Expression

Completion knows the fleet: device ids and DEVICE/MODULE names come from the
hub (--hub or OUTPOST_CONNECTION_STRING, --ca or OUTPOST_CA), automatic
deployment ids too, and the module names of logs and restart from the local
daemon (--mgmt-socket); -o, --runtime and --platform offer their values. Each
TAB waits at most 2 s for the hub or the daemon, and offers nothing, quietly,
when they do not answer.`,
		Example:   "  outpost completion bash > /etc/bash_completion.d/outpost",
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args:      exactArgs(1, "one shell name: bash, zsh, fish or powershell"),
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), f.IO.Out
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return flagErrorf("unknown shell %q: use bash, zsh, fish or powershell", args[0])
		},
	}
}
