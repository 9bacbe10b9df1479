package local

import (
	tea "charm.land/bubbletea/v2"

	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
)

// confirmRestart is the dialog in front of a module's restart; y sends it.
func confirmRestart(c common.Common, mc Client, module string) *components.Confirm {
	ctx := c.Ctx
	return components.NewConfirm(c,
		"Restart module "+module+"?\nIts instance is stopped and started again now.",
		func() tea.Msg {
			return restartedMsg{module: module, err: mc.Restart(ctx, module)}
		})
}
