package broker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestTwinAnswerReachesTheNextConnection: a module sends a reported PATCH
// and disconnects before the answer can reach it (the Azure SDKs connect
// again to renew their token, and Microsoft's Node SDK keeps the request
// pending across that, with no timeout and no resend: its reports then
// stop for good). The answer comes on the module's next connection.
func TestTwinAnswerReachesTheNextConnection(t *testing.T) {
	f := setup(t, fixtureOptions{})
	connect := func() (paho.Client, chan paho.Message) {
		msgs := make(chan paho.Message, 64)
		opts := paho.NewClientOptions().AddBroker("ssl://" + f.addr).
			SetClientID("d/a").SetUsername(f.username("a")).SetPassword(f.token(t, "a", f.keys["a"], time.Hour)).
			SetTLSConfig(f.tlsConfig()).SetProtocolVersion(4).
			SetCleanSession(false). // as the Azure SDKs connect
			SetAutoReconnect(false).SetOrderMatters(true).
			SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) { msgs <- msg })
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		return c, msgs
	}
	c, _ := connect()
	if tok := c.Subscribe(filterResponses, 0, nil); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// The PATCH, then at once the DISCONNECT: the answer comes after the
	// client stopped reading this connection.
	if tok := c.Publish(topicPatch+"?$rid=renew1", 0, false, `{"renewed":1}`); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	c.Disconnect(0)
	// The patch was applied all the same.
	eventually(t, "the patch at the hub", func() bool {
		tw, err := f.owner.GetTwin(context.Background(), "d", "a")
		return err == nil && tw.Reported()["renewed"] == json.Number("1")
	})

	c2, msgs := connect() // its subscriptions are kept: it does not subscribe again
	t.Cleanup(func() { c2.Disconnect(100) })
	for {
		select {
		case msg := <-msgs:
			if strings.HasPrefix(msg.Topic(), topicResponse+"204/") && strings.Contains(msg.Topic(), "$rid=renew1") {
				return
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the answer to the PATCH sent before the reconnect never came on the new connection: an SDK that keeps the request pending waits forever")
		}
	}
}
