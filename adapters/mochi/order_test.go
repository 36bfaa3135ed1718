package mochi_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
)

// sessionConn is an MQTT 5 subscriber on a raw connection, so that the
// test decides when (and whether) a PUBLISH is acknowledged and sees the
// DUP flag of each one.
type sessionConn struct {
	t    *testing.T
	conn net.Conn
}

// dialSession connects id as user with a 60 s session expiry interval and
// returns the connection and whether the CONNACK says a session is present.
func dialSession(t *testing.T, addr, id, user string, clean bool) (*sessionConn, bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	expiry := uint32(60)
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, id, 30, clean
	c.Username, c.UsernameFlag = user, true
	c.Properties = &packets.Properties{SessionExpiryInterval: &expiry}
	s := &sessionConn{t: t, conn: conn}
	s.write(cp)
	ca, ok := s.read().Content.(*packets.Connack)
	require.True(t, ok, "the first packet is not a CONNACK")
	require.Equal(t, byte(0), ca.ReasonCode)
	return s, ca.SessionPresent
}

func (s *sessionConn) write(cp *packets.ControlPacket) {
	s.t.Helper()
	_, err := cp.WriteTo(s.conn)
	require.NoError(s.t, err)
}

func (s *sessionConn) read() *packets.ControlPacket {
	s.t.Helper()
	require.NoError(s.t, s.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	p, err := packets.ReadPacket(s.conn)
	require.NoError(s.t, err)
	return p
}

func (s *sessionConn) subscribe(filter string, qos byte) {
	s.t.Helper()
	cp := packets.NewControlPacket(packets.SUBSCRIBE)
	sub := cp.Content.(*packets.Subscribe)
	sub.PacketID = 1
	sub.Subscriptions = []packets.SubOptions{{Topic: filter, QoS: qos}}
	s.write(cp)
	sa, ok := s.read().Content.(*packets.Suback)
	require.True(s.t, ok)
	require.Equal(s.t, []byte{qos}, sa.Reasons)
}

// publishes reads n PUBLISH packets, without acknowledging them.
func (s *sessionConn) publishes(n int) []*packets.Publish {
	s.t.Helper()
	got := []*packets.Publish{}
	for len(got) < n {
		p := s.read()
		pub, ok := p.Content.(*packets.Publish)
		require.True(s.t, ok, "expected PUBLISH %d of %d, got %v", len(got)+1, n, p)
		got = append(got, pub)
	}
	return got
}

// ack completes the delivery of pubs: PUBACK for QoS 1; PUBREC, then
// PUBCOMP for each PUBREL, for QoS 2.
func (s *sessionConn) ack(pubs []*packets.Publish) {
	s.t.Helper()
	var released int
	for _, p := range pubs {
		if p.QoS == 1 {
			cp := packets.NewControlPacket(packets.PUBACK)
			cp.Content.(*packets.Puback).PacketID = p.PacketID
			s.write(cp)
			continue
		}
		cp := packets.NewControlPacket(packets.PUBREC)
		cp.Content.(*packets.Pubrec).PacketID = p.PacketID
		s.write(cp)
		released++
	}
	for range released {
		rel, ok := s.read().Content.(*packets.Pubrel)
		require.True(s.t, ok, "expected PUBREL")
		cp := packets.NewControlPacket(packets.PUBCOMP)
		cp.Content.(*packets.Pubcomp).PacketID = rel.PacketID
		s.write(cp)
	}
}

// disconnect sends DISCONNECT 0x00 and closes: the session stays, for its
// expiry interval.
func (s *sessionConn) disconnect() {
	s.t.Helper()
	s.write(packets.NewControlPacket(packets.DISCONNECT))
	_ = s.conn.Close()
}

func payloads(pubs []*packets.Publish) []string {
	out := make([]string, len(pubs))
	for i, p := range pubs {
		out[i] = string(p.Payload)
	}
	return out
}

func seq(from, to int) []string {
	out := []string{}
	for i := from; i <= to; i++ {
		out = append(out, "m"+strconv.Itoa(i))
	}
	return out
}

// waitQueued waits until the offline session of id holds n messages:
// mochi acknowledges a publish before it delivers it (server.go:952, 965),
// and a message delivered while the session is being resumed is written
// as it comes, not in order (see the package documentation).
func waitQueued(t *testing.T, b *broker, id string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		cl, ok := b.Clients.Get(id)
		return ok && cl.State.Inflight.Len() == n
	}, 5*time.Second, 5*time.Millisecond, "the session of %s never held %d messages", id, n)
}

// knownMochiBug skips a test of what mochi itself gets wrong, unless
// MQTTAUTH_KNOWN_BUGS=1 asks to see it fail.
func knownMochiBug(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("MQTTAUTH_KNOWN_BUGS") != "1" {
		t.Skip("known mochi bug (MQTTAUTH_KNOWN_BUGS=1 runs it): " + why)
	}
}

// publishQoS publishes payload to topic at qos, with a message expiry
// interval when expiry is not 0, and checks that the broker accepted it.
func publishQoS(t *testing.T, c *conformance.Client, topic, payload string, qos byte, expiry uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}
	if expiry != 0 {
		p.Properties = &paho.PublishProperties{MessageExpiry: &expiry}
	}
	pr, err := c.Publish(ctx, p)
	require.NoError(t, err)
	require.Equal(t, byte(0), pr.ReasonCode)
}

// TestResumeOrder [MQTT-4.6.0-1] [MQTT-4.6.0-6]: a client resumes its
// session (Clean Start 0) and receives the QoS 1 (and QoS 2) messages of
// that session in the order they were published, whether they were queued
// while it was offline or sent and left unacknowledged before it left.
// Resent messages carry DUP=1 [MQTT-3.3.1-1] and their packet id
// [MQTT-4.4.0-1], the queued ones the rest of their message expiry
// interval [MQTT-3.3.2-6]. After acknowledging them the client receives the
// next live message and nothing twice.
//
// mochi v2.7.9 alone resends them in an arbitrary order (see the package
// documentation, "Resumed sessions"); the adapter restores the order.
func TestResumeOrder(t *testing.T) {
	for _, name := range []string{"mochi", "adapter"} {
		for _, tc := range []struct {
			qos  byte
			sent int // delivered, not acknowledged, before the client leaves
		}{{1, 0}, {1, 5}, {2, 5}} {
			t.Run(fmt.Sprintf("broker=%s/qos=%d/unacked=%d", name, tc.qos, tc.sent), func(t *testing.T) {
				var addr string
				var b *broker
				var h *mochi.Hook
				if name == "mochi" {
					knownMochiBug(t, "mochi v2.7.9 resends a resumed session's messages in the order of "+
						"Inflight.GetAll, which sorts on Created in whole seconds from a map (inflight.go:85)")
					b, addr = startPlainServer(t)
				} else {
					m := newManager(t, auth.Config{Authenticator: userAuthn, Authorizer: mustPolicy(t, newsPolicy)})
					b, h, addr = startBroker(t, mochi.Config{Manager: m})
				}
				sub, present := dialSession(t, addr, "ordered", "alice", true)
				require.False(t, present)
				sub.subscribe("news/#", tc.qos)

				pub, _, err := conformance.Dial(t, addr, userConnect("pub", "pub", true, 0), nil)
				require.NoError(t, err)
				const n = 10
				for i := 1; i <= tc.sent; i++ {
					publishQoS(t, pub, "news/order", "m"+strconv.Itoa(i), tc.qos, 0)
				}
				first := sub.publishes(tc.sent)
				require.Equal(t, seq(1, tc.sent), payloads(first), "live delivery")
				sub.disconnect()
				if h != nil {
					require.Eventually(t, func() bool { return h.Offline() == 1 }, 5*time.Second, 10*time.Millisecond)
				}
				for i := tc.sent + 1; i <= n; i++ {
					publishQoS(t, pub, "news/order", "m"+strconv.Itoa(i), tc.qos, 600)
				}
				waitQueued(t, b, "ordered", n)

				back, present := dialSession(t, addr, "ordered", "alice", false)
				require.True(t, present)
				got := back.publishes(n)
				require.Equal(t, seq(1, n), payloads(got), "resent out of publish order [MQTT-4.6.0-6]")
				for i, p := range got {
					require.Equal(t, tc.qos, p.QoS, "m%d", i+1)
				}
				for i, p := range got[:tc.sent] {
					require.True(t, p.Duplicate, "m%d, sent before, resent with DUP=0 [MQTT-3.3.1-1]", i+1)
					require.Equal(t, first[i].PacketID, p.PacketID, "m%d resent with another packet id [MQTT-4.4.0-1]", i+1)
				}
				for i, p := range got[tc.sent:] {
					require.NotNil(t, p.Properties.MessageExpiry, "m%d", tc.sent+i+1)
					require.InDelta(t, 595, *p.Properties.MessageExpiry, 5, "m%d: message expiry interval [MQTT-3.3.2-6]", tc.sent+i+1)
				}
				back.ack(got)
				publishQoS(t, pub, "news/order", "live", tc.qos, 0)
				next := back.publishes(1)
				require.Equal(t, "live", string(next[0].Payload), "a message was written twice")
				require.False(t, next[0].Duplicate)
				back.ack(next)
				back.disconnect()
				require.NoError(t, pub.Disconnect(&paho.Disconnect{}))
			})
		}
	}
}

// TestResumeOrderMosquitto is TestResumeOrder with Debian's mosquitto_sub
// as the subscriber, an MQTT 5 client (Clean Start 0, -x session expiry)
// or an MQTT 3.1.1 client (Clean Session 0): 10 QoS 1 messages queued while
// it is away arrive in publish order when it comes back [MQTT-4.6.0-6].
func TestResumeOrderMosquitto(t *testing.T) {
	subBin := needTool(t, "mosquitto_sub")
	for _, version := range []string{"mqttv5", "mqttv311"} {
		for _, name := range []string{"mochi", "adapter"} {
			t.Run(version+"/broker="+name, func(t *testing.T) {
				var addr string
				var b *broker
				if name == "mochi" {
					knownMochiBug(t, "see TestResumeOrder")
					b, addr = startPlainServer(t)
				} else {
					m := newManager(t, auth.Config{Authenticator: userAuthn, Authorizer: mustPolicy(t, newsPolicy)})
					b, _, addr = startBroker(t, mochi.Config{Manager: m})
				}
				host, port := splitAddr(t, addr)
				sub := func(args ...string) string {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					defer cancel()
					args = append([]string{"-h", host, "-p", port, "-V", version,
						"-c", "-i", "mosq-ordered", "-q", "1", "-u", "alice", "-t", "news/#"}, args...)
					if version == "mqttv5" {
						args = append(args, "-x", "60")
					}
					cmd := exec.CommandContext(ctx, subBin, args...)
					var out, stderr strings.Builder
					cmd.Stdout, cmd.Stderr = &out, &stderr
					err := cmd.Run()
					// mosquitto_sub exits 27 when -W times out.
					if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 27 {
						require.NoError(t, err, "mosquitto_sub %v: %s%s", args, &out, &stderr)
					}
					return out.String()
				}
				sub("-E") // subscribe, then disconnect

				pub, _, err := conformance.Dial(t, addr, userConnect("pub", "pub", true, 0), nil)
				require.NoError(t, err)
				const n = 10
				for i := 1; i <= n; i++ {
					require.Equal(t, byte(0), pub.PublishQoS1(t, "news/order", "m"+strconv.Itoa(i)))
				}
				waitQueued(t, b, "mosq-ordered", n)
				got := strings.Fields(sub("-C", strconv.Itoa(n), "-W", "5"))
				require.Equal(t, seq(1, n), got, "resent out of publish order [MQTT-4.6.0-6]")
				require.NoError(t, pub.Disconnect(&paho.Disconnect{}))
			})
		}
	}
}

// TestResumeWhilePublishing: a publisher sends 300 QoS 1 messages while a
// subscriber resumes its session. The CONNACK comes first [MQTT-3.2.0-1]
// and the first delivery of each message comes in publish order
// [MQTT-4.6.0-6] (QoS 1 allows duplicates): the hook holds live deliveries
// until mochi has resent the session.
//
// Every message should be delivered too; mochi v2.7.9 loses those
// delivered while it hands the session over (server.go:574 to 458), with
// or without the adapter, which cannot change it (see the package
// documentation, "Resumed sessions"): checked with MQTTAUTH_KNOWN_BUGS=1.
func TestResumeWhilePublishing(t *testing.T) {
	const runs, n = 5, 300
	lossy := 0
	for run := range runs {
		m := newManager(t, auth.Config{Authenticator: userAuthn, Authorizer: mustPolicy(t, newsPolicy)})
		_, h, addr := startBroker(t, mochi.Config{Manager: m})
		sub, _ := dialSession(t, addr, "streamed", "alice", true)
		sub.subscribe("news/#", 1)
		sub.disconnect()
		require.Eventually(t, func() bool { return h.Offline() == 1 }, 5*time.Second, 10*time.Millisecond)
		pub, _, err := conformance.Dial(t, addr, userConnect("pub", "pub", true, 0), nil)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() {
			for i := 1; i <= n; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				pr, err := pub.Publish(ctx, &paho.Publish{Topic: "news/stream", QoS: 1, Payload: []byte(strconv.Itoa(i))})
				cancel()
				if err == nil && pr.ReasonCode != 0 {
					err = fmt.Errorf("PUBACK 0x%02x", pr.ReasonCode)
				}
				if err != nil {
					done <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
			}
			done <- nil
		}()
		time.Sleep(20 * time.Millisecond) // resume mid-stream
		back, present := dialSession(t, addr, "streamed", "alice", false)
		require.True(t, present)
		require.NoError(t, <-done)
		seen := map[int]bool{}
		var late []int // first delivered after a later message
		highest := 0
		for len(seen) < n {
			require.NoError(t, back.conn.SetReadDeadline(time.Now().Add(2*time.Second)))
			cp, err := packets.ReadPacket(back.conn)
			if err != nil {
				break // nothing more is coming
			}
			p, ok := cp.Content.(*packets.Publish)
			require.True(t, ok, "unexpected %v", cp)
			back.ack([]*packets.Publish{p})
			i, err := strconv.Atoi(string(p.Payload))
			require.NoError(t, err)
			if !seen[i] && i < highest {
				late = append(late, i)
			}
			seen[i], highest = true, max(highest, i)
		}
		var lost []int
		for i := 1; i <= n; i++ {
			if !seen[i] {
				lost = append(lost, i)
			}
		}
		back.disconnect()
		require.NoError(t, pub.Disconnect(&paho.Disconnect{}))
		require.Empty(t, late, "run %d: delivered out of publish order", run)
		if len(lost) > 0 {
			lossy++
			t.Logf("run %d: lost %v", run, lost)
		}
	}
	if lossy > 0 && os.Getenv("MQTTAUTH_KNOWN_BUGS") == "1" {
		t.Errorf("known mochi bug: messages lost in %d of %d resumptions; mochi v2.7.9 delivers them to the "+
			"old connection between its copy of the queue and the registration of the new one (server.go:574, 458)", lossy, runs)
	}
}
