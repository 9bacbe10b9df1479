package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/suggest"
)

// newHelpCmd is `outpost help [COMMAND...]`. Cobra's own prints the root's
// help and exits 0 for a topic it does not know; this one refuses it as the
// usage error it is, suggesting the nearest command.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND...]",
		Short: "Help about any command",
		Long:  "Help prints the help of any command: outpost help twin patch.",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, sub.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd := c.Root()
			for i, arg := range args {
				next := findSub(cmd, arg)
				if next == nil {
					return unknownTopic(cmd, args[:i+1])
				}
				cmd = next
			}
			return cmd.Help()
		},
	}
}

// findSub returns cmd's available subcommand named (or aliased) name.
func findSub(cmd *cobra.Command, name string) *cobra.Command {
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() && (sub.Name() == name || sub.HasAlias(name)) {
			return sub
		}
	}
	return nil
}

// unknownTopic is the usage error of `help` for a command path that does
// not exist below cmd.
func unknownTopic(cmd *cobra.Command, path []string) error {
	var names []string
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	last := path[len(path)-1]
	msg := fmt.Sprintf("no help topic %q: %q has no command %q", strings.Join(path, " "), cmd.CommandPath(), last)
	if s := suggest.Closest(last, names); s != "" {
		msg += fmt.Sprintf(": did you mean %q?", s)
	}
	return &FlagError{Err: errors.New(msg)}
}
