package broker

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestMochiFixturesDropped: the daemon does not keep mochi-mqtt's test fixtures alive.
func TestMochiFixturesDropped(t *testing.T) {
	if packets.TPacketData != nil {
		t.Fatalf("packets.TPacketData holds %d packet types' fixtures: the broker should drop them", len(packets.TPacketData))
	}
}
