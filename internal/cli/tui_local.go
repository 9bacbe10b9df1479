package cli

import (
	"errors"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/tui/common"
)

// localRoot is the hook of the device-local view: the root view `outpost
// tui` opens over the daemon's management socket (mc), with t naming a
// module to open first when the user gave one. Package tui/local provides
// it; this file is the only place that joins the two.
func localRoot(c common.Common, mc *mgmtclient.Client, t target) (common.Component, error) {
	_, _, _ = c, mc, t
	return nil, &ExitError{Code: ExitFailure,
		Err:  errors.New("the device-local view is not built yet"),
		Hint: "use `outpost status`, `outpost list` and `outpost logs MODULE` meanwhile"}
}
