package gateway_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// TestNATSCluster puts two gateways of one configuration (each with its
// own Manager, as two replicas would have) in front of a three-node NATS
// cluster on loopback, gateway A on node 0 and B on node 1, both speaking
// MQTT 3.1.1 upstream, coordinated (Config.Coordination): a persistent
// session moves from A to B with its queued QoS 1 messages; a second
// connection with the same client identifier through B takes the session
// over from the client on A, which gets DISCONNECT 0x8E; a revocation
// reaches a client through the gateway that holds it.
func TestNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three nats-servers: not in -short")
	}
	nodes := startNATSNodes(t, 3)
	ga := coordinated(t, passwordAuth(), nodes[0])
	gb := coordinated(t, passwordAuth(), nodes[1])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("session_moves_with_queued_qos1", func(t *testing.T) {
		cp := pw("roamer", "bob")
		cp.Properties = &packets.Properties{SessionExpiryInterval: u32(3600)}
		c, ca := v5Dial(t, ga.Addr, cp)
		require.False(t, ca.SessionPresent)
		c.send(&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{{Topic: "ok/roam", QoS: 1}}})
		require.Equal(t, []byte{1}, c.read(10*time.Second).Content.(*packets.Suback).Reasons)
		c.send(&packets.Disconnect{ReasonCode: 0, Properties: &packets.Properties{}})
		c.closedAfter(10 * time.Second)

		pub := pahoConnect(t, gb.Addr, "roam-pub", "alice")
		for _, m := range []string{"q1", "q2", "q3"} {
			_, err := pub.Publish(ctx, &paho.Publish{Topic: "ok/roam", QoS: 1, Payload: []byte(m)})
			require.NoError(t, err)
		}

		cp = pw("roamer", "bob")
		cp.CleanStart = false
		cp.Properties = &packets.Properties{SessionExpiryInterval: u32(3600)}
		c, ca = v5Dial(t, gb.Addr, cp)
		require.True(t, ca.SessionPresent, "the cluster kept the session")
		got := map[string]bool{}
		for len(got) < 3 {
			p := c.read(10 * time.Second).Content.(*packets.Publish)
			got[string(p.Payload)] = true
			c.send(&packets.Puback{PacketID: p.PacketID, Properties: &packets.Properties{}})
		}
		require.Equal(t, map[string]bool{"q1": true, "q2": true, "q3": true}, got)
	})

	t.Run("takeover_through_the_other_gateway", func(t *testing.T) {
		// NATS closes the first connection and says nothing of why (3.1.1
		// cannot); B's notice, through the cluster, tells A.
		requireTakenOver(t, ga.Addr, gb.Addr, "twin")
	})

	t.Run("revocation_through_the_gateway_that_holds_the_client", func(t *testing.T) {
		c, _ := v5Dial(t, gb.Addr, pw("revoked", "bob"))
		revoke := func(_ context.Context, s *auth.Session) error {
			if p := s.Principal(); p != nil && p.Username() == "device-bob" {
				return errors.New("test: bob revoked")
			}
			return nil
		}
		// A change of trust or policy reaches every replica: each
		// re-checks its own sessions.
		require.Zero(t, ga.Manager.Recheck(ctx, revoke).Disconnected)
		require.Equal(t, 1, gb.Manager.Recheck(ctx, revoke).Disconnected)
		dis := c.closedAfter(10 * time.Second)
		require.NotNil(t, dis)
		require.Equal(t, byte(0x87), dis.ReasonCode)
	})
}
