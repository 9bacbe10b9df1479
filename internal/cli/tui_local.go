package cli

import (
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/local"
)

// localRoot is the hook of the device-local view: the root view `outpost
// tui` opens over the daemon's management socket (mc), with t naming a
// module to open first when the user gave one (`outpost tui MODULE`, or
// DEVICE/MODULE). Package tui/local provides it; this file is the only
// place that joins the two.
func localRoot(c common.Common, mc *mgmtclient.Client, t target) (common.Component, error) {
	module := t.Module // DEVICE/MODULE
	if module == "" {
		module = t.Device // MODULE, or this device's own id (then the device)
	}
	return local.Root(c, mc, module), nil
}
