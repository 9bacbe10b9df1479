package cli

import (
	"os"
	"testing"
)

// TestMain makes every daemon the tests start listen for modules on a free
// loopback port (the default, :8883 on every address, is not for tests).
func TestMain(m *testing.M) {
	if os.Getenv("OUTPOST_BROKER_LISTEN") == "" {
		os.Setenv("OUTPOST_BROKER_LISTEN", "127.0.0.1:0")
	}
	os.Exit(m.Run())
}
