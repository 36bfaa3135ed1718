package conformance

import (
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// malformedConnect returns a case that sends cp and requires the
// connection to be closed, at most after CONNACK 0x81 Malformed Packet:
// never a success, never a challenge (MQTT 5.0 4.13.1, [MQTT-4.13.1-1]).
func malformedConnect(cp func() *packets.Connect, rule string) func(*testing.T, Broker, *Fixture) {
	return func(t *testing.T, b Broker, _ *Fixture) {
		c := dialRaw(t, b.Addr)
		c.sendPacket(t, cp())
		c.expectClosed(t, Timeout, "a malformed CONNECT ("+rule+") is answered at most with CONNACK 0x81, then closed",
			func(p rawPacket) bool { return isConnack(p, 0x81) })
	}
}

// connectAuthMethodInvalidUTF8 is a CONNECT whose Authentication Method is
// not well-formed UTF-8 [MQTT-1.5.4-1]; the rest would pass.
func connectAuthMethodInvalidUTF8() *packets.Connect {
	cp := v5Connect("bad-method")
	cp.Properties.AuthMethod, cp.Properties.AuthData = MethodToken+"\xff\xfe", []byte("good")
	return cp
}

// connectClientIDNul is a CONNECT whose client identifier holds U+0000
// [MQTT-1.5.4-2]; the credentials would pass.
func connectClientIDNul() *packets.Connect {
	return withPassword(v5Connect("nul\x00id"), UserAlice, PasswordGood)
}

// malformedPublishWildcard: a PUBLISH whose topic name holds a wildcard
// [MQTT-3.3.2-2] closes the connection, at most after DISCONNECT 0x81
// Malformed Packet or 0x82 Protocol Error (MQTT 5.0 4.13: the packet
// parses, so either reading holds; mochi itself sends 0x82), whether the
// topic would be denied (no PUBACK 0x87: the packet is not judged) or
// allowed (nothing reaches a subscriber).
func malformedPublishWildcard(t *testing.T, b Broker, _ *Fixture) {
	sub := subscriber(t, b, "sub", TopicAllowed+"#")
	for _, w := range []struct{ name, topic string }{{"denied_topic", "denied/+"}, {"allowed_topic", TopicAllowed + "+"}} {
		topic := w.topic
		t.Run(w.name, func(t *testing.T) {
			c := dialRaw(t, b.Addr)
			if ca := c.connectV5(t, withPassword(v5Connect("wild"), UserAlice, PasswordGood)); ca.ReasonCode != 0 {
				t.Fatalf("CONNACK 0x%02x, want 0x00", ca.ReasonCode)
			}
			c.sendPacket(t, &packets.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("wild"), Properties: &packets.Properties{}})
			c.expectClosed(t, Timeout, "a PUBLISH with a wildcard in its topic name is answered at most with DISCONNECT 0x81 or 0x82, then closed",
				func(p rawPacket) bool { return isDisconnect(p, 0x81) || isDisconnect(p, 0x82) })
		})
	}
	expectNothing(t, sub, TopicAllowed+"+", "a PUBLISH with a wildcard in its topic name was forwarded")
}
