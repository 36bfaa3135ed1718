package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttauth/mqttauth/auth"
)

// Quiet is how long the suite listens for a message that must not arrive.
const Quiet = 1500 * time.Millisecond

// subscriber connects an MQTT 5 client as UserAlice subscribed to filter.
func subscriber(t *testing.T, b Broker, id, filter string) *Client {
	t.Helper()
	c, _ := mustConnect(t, b, password(id, UserAlice), nil)
	if code := c.SubscribeCode(t, filter); code >= 0x80 {
		t.Fatalf("SUBACK 0x%02x for %q, which the Fixture allows", code, filter)
	}
	return c
}

// collect returns the messages c receives within d, or until done returns
// true for the messages so far.
func (c *Client) collect(d time.Duration, done func([]*paho.Publish) bool) []*paho.Publish {
	var got []*paho.Publish
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(50 * time.Millisecond) // done may wait for time to pass
	defer tick.Stop()
	for done == nil || !done(got) {
		select {
		case m := <-c.Messages:
			got = append(got, m)
		case <-tick.C:
		case <-timer.C:
			return got
		}
	}
	return got
}

// onTopic returns the first message on topic, or nil.
func onTopic(ms []*paho.Publish, topic string) *paho.Publish {
	for _, m := range ms {
		if m.Topic == topic {
			return m
		}
	}
	return nil
}

// expectNothing fails the test when sub receives a message on topic
// within Quiet.
func expectNothing(t *testing.T, sub *Client, topic, why string) {
	t.Helper()
	if m := onTopic(sub.collect(Quiet, func(ms []*paho.Publish) bool { return onTopic(ms, topic) != nil }), topic); m != nil {
		t.Errorf("a subscriber received %q on %q: %s", m.Payload, topic, why)
	}
}

// willClient connects an MQTT 5 client as UserAlice with a Will and
// requires CONNACK 0x00.
func willClient(t *testing.T, b Broker, id string, w will) *rawConn {
	t.Helper()
	c := dialRaw(t, b.Addr)
	if ca := c.connectV5(t, withWill(withPassword(v5Connect(id), UserAlice, PasswordGood), w)); ca.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x for a Will on %q, which the Fixture allows; want 0x00", ca.ReasonCode, w.Topic)
	}
	return c
}

// willForbidden: a CONNECT whose Will the principal may not publish is
// refused with CONNACK 0x87 Not authorized (MQTT 5.0 3.2.2.2; issue 19:
// the Will is authorized as a Publish at CONNECT), and its Will is never
// published.
func willForbidden(t *testing.T, b Broker, _ *Fixture) {
	sub := subscriber(t, b, "sub", TopicWill+"#")
	topic := TopicWillForbidden + "v5"
	c := dialRaw(t, b.Addr)
	ca := c.connectV5(t, withWill(withPassword(v5Connect("forbidden"), UserAlice, PasswordGood), will{Topic: topic, QoS: 1}))
	if ca.ReasonCode != 0x87 {
		_ = c.Close() // dropped without DISCONNECT: a broker that let it in publishes the Will now
		expectNothing(t, sub, topic, "the Will of a connection whose Will topic is forbidden")
		t.Fatalf("CONNACK 0x%02x for a Will on %q, which the principal may not publish; want 0x87", ca.ReasonCode, topic)
	}
	c.expectClosed(t, Timeout, "after a failing CONNACK the server closes the connection [MQTT-3.2.2-7]", nil)
	expectNothing(t, sub, topic, "the Will of a refused CONNECT")
}

// willForbiddenV311: the same for MQTT 3.1.1: return code 5 (Connection
// refused, not authorized; MQTT 3.1.1 3.2.2.3).
func willForbiddenV311(t *testing.T, b Broker, _ *Fixture) {
	sub := subscriber(t, b, "sub", TopicWill+"#")
	topic := TopicWillForbidden + "v311"
	c := dialRaw(t, b.Addr)
	rc := c.connectV311(t, "forbidden-311", UserAlice, PasswordGood, &will{Topic: topic, QoS: 1})
	if rc != 5 {
		_ = c.Close()
		expectNothing(t, sub, topic, "the Will of an MQTT 3.1.1 connection whose Will topic is forbidden")
		t.Fatalf("MQTT 3.1.1 CONNACK return code %d (-1: none) for a Will on %q, which the principal may not publish; want 5", rc, topic)
	}
	c.expectClosed(t, Timeout, "after a refusing CONNACK the server closes the connection [MQTT-3.2.2-5]", nil)
	expectNothing(t, sub, topic, "the Will of a refused CONNECT")
}

// willForbiddenRetained: a retained Will on a forbidden topic is refused
// with 0x87, and no retained message is left behind for a later
// subscriber.
func willForbiddenRetained(t *testing.T, b Broker, _ *Fixture) {
	topic := TopicWillForbidden + "retained"
	early := subscriber(t, b, "early", TopicWill+"#")
	c := dialRaw(t, b.Addr)
	ca := c.connectV5(t, withWill(withPassword(v5Connect("retainer"), UserAlice, PasswordGood), will{Topic: topic, QoS: 1, Retain: true}))
	if ca.ReasonCode != 0x87 {
		t.Errorf("CONNACK 0x%02x for a retained Will on %q, which the principal may not publish; want 0x87", ca.ReasonCode, topic)
	}
	_ = c.Close()
	// The early subscriber sees a Will published now; the late one a
	// retained message left behind.
	expectNothing(t, early, topic, "the retained Will of a connection whose Will topic is forbidden")
	late := subscriber(t, b, "late", TopicWill+"#")
	expectNothing(t, late, topic, "a retained message left by a forbidden Will")
}

// willAllowedPublished: a Will the principal may publish is published
// when the client's connection ends without DISCONNECT (MQTT 5.0 3.1.2.5).
func willAllowedPublished(t *testing.T, b Broker, _ *Fixture) {
	sub := subscriber(t, b, "sub", TopicWill+"#")
	topic := TopicWillAllowed + "published"
	c := willClient(t, b, "willer", will{Topic: topic, QoS: 1})
	_ = c.Close()
	m := onTopic(sub.collect(Timeout, func(ms []*paho.Publish) bool { return onTopic(ms, topic) != nil }), topic)
	if m == nil {
		t.Fatalf("no Will on %q within %v of the connection's drop", topic, Timeout)
	}
	if string(m.Payload) != "will of willer" {
		t.Fatalf("Will payload %q, want %q", m.Payload, "will of willer")
	}
}

// willDroppedAfterReload: a Will allowed at CONNECT is not published when
// a policy reload has removed the right by the time the connection ends
// (issue 19: the Will is authorized again when it is about to be
// published), while a Will still allowed is.
func willDroppedAfterReload(t *testing.T, b Broker, f *Fixture) {
	sub := subscriber(t, b, "sub", TopicWill+"#")
	revocable, control := TopicWillRevocable+"w", TopicWillAllowed+"control"
	rc := willClient(t, b, "revocable", will{Topic: revocable, QoS: 1})
	cc := willClient(t, b, "control", will{Topic: control, QoS: 1})
	f.RevokeWillTopic()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if rep := b.Manager.Recheck(ctx, auth.CheckConnect(f.Authorizer())); rep.Checked != 3 || rep.Disconnected != 0 {
		t.Fatalf("Recheck %+v, want 3 checked and none disconnected: Connect is still allowed", rep)
	}
	// The client is still connected: PINGREQ is answered.
	rc.send(t, []byte{packets.PINGREQ << 4, 0})
	if p := rc.expectPacket(t, Timeout, "PINGRESP"); p.Type != packets.PINGRESP {
		t.Fatalf("got %v; want PINGRESP", p)
	}
	_ = rc.Close()
	_ = cc.Close()
	start := time.Now()
	ms := sub.collect(Timeout+Quiet, func(ms []*paho.Publish) bool {
		return onTopic(ms, control) != nil && time.Since(start) >= Quiet
	})
	if m := onTopic(ms, revocable); m != nil {
		t.Errorf("a subscriber received the Will on %q after a policy reload removed the right to publish it", revocable)
	}
	if onTopic(ms, control) == nil {
		t.Errorf("the control Will on %q, still allowed, was not published within %v", control, Timeout+Quiet)
	}
}

// willDroppedAfterExpiry: the Will of a session that ended because its
// credential expired is not published (issue 19: no valid principal
// stands behind it; auth.Session.AuthorizeWill).
func willDroppedAfterExpiry(t *testing.T, b Broker, _ *Fixture) {
	sub := subscriber(t, b, "sub", TopicWill+"#")
	topic := TopicWillAllowed + "expiry"
	cp := v5Connect("expiring")
	cp.Properties.AuthMethod, cp.Properties.AuthData = MethodToken, []byte("expire:1500")
	c := dialRaw(t, b.Addr)
	if ca := c.connectV5(t, withWill(cp, will{Topic: topic, QoS: 1})); ca.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x, want 0x00", ca.ReasonCode)
	}
	c.expectClosed(t, 1500*time.Millisecond+Timeout, "the session expires after 1.5 s (DISCONNECT 0xA0)",
		func(p rawPacket) bool { return isDisconnect(p, 0xA0) })
	expectNothing(t, sub, topic, "the Will of a session that ended at its credential's expiry")
}
