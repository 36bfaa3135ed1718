package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// challengeConnect sends an MQTT 5 CONNECT naming MethodChallenge and
// reads the first challenge; it returns when the CONNECT was sent.
func challengeConnect(t *testing.T, c *rawConn) time.Time {
	t.Helper()
	cp := v5Connect("slow")
	cp.Properties.AuthMethod, cp.Properties.AuthData = MethodChallenge, []byte("hello")
	sent := time.Now()
	c.sendPacket(t, cp)
	a := c.expectV5(t, Timeout, packets.AUTH, "AUTH 0x18 round-1").Content.(*packets.Auth)
	if a.ReasonCode != 0x18 || a.Properties == nil || string(a.Properties.AuthData) != "round-1" {
		t.Fatalf("AUTH 0x%02x %+v; want 0x18 with data round-1", a.ReasonCode, a.Properties)
	}
	return sent
}

func answer(t *testing.T, c *rawConn, data string) {
	t.Helper()
	c.sendPacket(t, &packets.Auth{ReasonCode: 0x18,
		Properties: &packets.Properties{AuthMethod: MethodChallenge, AuthData: []byte(data)}})
}

// exchangeTimeoutFromConfig: with auth.Config.ExchangeTimeout 2 s, a client
// that leaves the challenge unanswered is refused with CONNACK 0x87 after
// 2 s, not after a fixed deadline of the adapter (issue 19: one setting,
// honoured end to end).
func exchangeTimeoutFromConfig(t *testing.T, b Broker, _ *Fixture) {
	const timeout, late = 2 * time.Second, 3500 * time.Millisecond
	c := dialRaw(t, b.Addr)
	sent := challengeConnect(t, c)
	p, err := c.next(late + Timeout)
	took := time.Since(sent)
	switch {
	case isTimeout(err):
		t.Fatalf("no answer %v after an unanswered challenge; want CONNACK 0x87 after %v", took.Round(time.Millisecond), timeout)
	case err != nil:
		t.Fatalf("connection closed after %v (%v); want CONNACK 0x87 after %v", took.Round(time.Millisecond), err, timeout)
	case !isConnack(p, 0x87):
		t.Fatalf("got %v after %v; want CONNACK 0x87", p, took.Round(time.Millisecond))
	case took < timeout || took > late:
		t.Fatalf("CONNACK 0x87 %v after CONNECT; want between %v (Config.ExchangeTimeout) and %v", took.Round(time.Millisecond), timeout, late)
	}
	c.expectClosed(t, Timeout, "after a failing CONNACK the server closes the connection [MQTT-3.2.2-7]", nil)
}

// exchangeSlowAnswerWithinConfig: with auth.Config.ExchangeTimeout 4 s, a
// client that answers the first challenge after 2.5 s passes.
func exchangeSlowAnswerWithinConfig(t *testing.T, b Broker, _ *Fixture) {
	c := dialRaw(t, b.Addr)
	challengeConnect(t, c)
	time.Sleep(2500 * time.Millisecond)
	answer(t, c, "answer-1")
	a := c.expectV5(t, Timeout, packets.AUTH, "AUTH 0x18 round-2").Content.(*packets.Auth)
	if a.Properties == nil || string(a.Properties.AuthData) != "round-2" {
		t.Fatalf("AUTH %+v; want data round-2", a.Properties)
	}
	answer(t, c, "answer-2")
	ca := c.expectV5(t, Timeout, packets.CONNACK, "CONNACK 0x00").Content.(*packets.Connack)
	if ca.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x for a challenge answered after 2.5 s of the 4 s Config.ExchangeTimeout; want 0x00", ca.ReasonCode)
	}
}

// reauthRateBound0x96: with auth.Config.ReauthInterval 1 s and ReauthBurst
// 3, a client that re-authenticates in a tight loop passes three times
// (plus one per second the loop took), then gets DISCONNECT 0x96 Message
// rate too high and is closed.
func reauthRateBound0x96(t *testing.T, b Broker, _ *Fixture) {
	const burst, tries = 3, 10
	c, _ := mustConnect(t, b, withMethod("rate", MethodToken, "good"), nil)
	start := time.Now()
	passed := 0
	for range tries {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
			Properties: &paho.AuthProperties{AuthMethod: MethodToken, AuthData: []byte("good")}})
		cancel()
		if err != nil {
			t.Fatalf("re-authentication %d: %v", passed+1, err)
		}
		if ar.Success {
			passed++
			continue
		}
		if ar.ReasonCode != 0x96 {
			t.Fatalf("re-authentication %d answered 0x%02x; want AUTH 0x00 or DISCONNECT 0x96", passed+1, ar.ReasonCode)
		}
		break
	}
	refilled := int(time.Since(start) / time.Second)
	if passed < burst || passed > burst+refilled {
		t.Fatalf("%d re-authentications passed in %v before DISCONNECT 0x96 (or %d tries); want %d, plus at most one per second",
			passed, time.Since(start).Round(time.Millisecond), tries, burst)
	}
	expectClosed(t, c)
}
