package gateway_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/gateway"
)

// coordinated is startGateway with Config.Coordination set (the defaults),
// once its control connection is up.
func coordinated(tb testing.TB, ac auth.Config, upstream string) *stack {
	tb.Helper()
	s := startGateway(tb, ac, upstream, func(c *gateway.Config) { c.Coordination = &gateway.Coordination{} })
	waitCoordination(tb, s.Gateway)
	return s
}

// waitCoordination waits until g's control connection is up.
func waitCoordination(tb testing.TB, g *gateway.Gateway) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for g.CoordinationCheck(context.Background()) != nil {
		if time.Now().After(deadline) {
			tb.Fatalf("the control connection is not up: %v", g.CoordinationCheck(context.Background()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// allowAll is passwordAuth with a policy that allows every topic: the
// coordination topic is refused whatever the policy says.
func allowAll() auth.Config {
	ac := passwordAuth()
	ac.Authorizer = auth.AuthorizerFunc(func(context.Context, *auth.Principal, auth.Action) auth.Decision {
		return auth.Allow("test: everything")
	})
	return ac
}

// requireTakenOver connects id through first, then through second, and
// checks that the first client gets DISCONNECT 0x8E and the second is
// served.
func requireTakenOver(t *testing.T, first, second, id string) {
	t.Helper()
	c1, _ := v5Dial(t, first, pw(id, "alice"))
	c2, ca := v5Dial(t, second, pw(id, "alice"))
	require.Equal(t, byte(0), ca.ReasonCode)
	dis := c1.closedAfter(10 * time.Second)
	require.NotNil(t, dis, "a DISCONNECT before the close")
	require.Equal(t, byte(0x8E), dis.ReasonCode, "Session taken over: %q", dis.Properties.ReasonString)
	c2.send(packets.NewControlPacket(packets.PINGREQ))
	require.Equal(t, packets.PINGRESP, c2.read(10*time.Second).Type)
}

// TestCoordinatedTakeover runs two coordinated gateways in front of one
// mosquitto spoken to in MQTT 3.1.1 (which closes a taken-over connection
// without a word): the first client gets 0x8E whichever gateway the second
// comes through; without coordination it gets 0x80.
func TestCoordinatedTakeover(t *testing.T) {
	b := startMosquitto(t, "")
	ga := coordinated(t, passwordAuth(), b.Addr)
	gb := coordinated(t, passwordAuth(), b.Addr)

	t.Run("through_the_other_gateway", func(t *testing.T) {
		requireTakenOver(t, ga.Addr, gb.Addr, "twin-ab")
	})
	t.Run("back_again", func(t *testing.T) {
		requireTakenOver(t, gb.Addr, ga.Addr, "twin-ab")
	})
	t.Run("through_the_same_gateway", func(t *testing.T) {
		requireTakenOver(t, ga.Addr, ga.Addr, "twin-aa")
	})
	t.Run("broker_closes_for_another_reason_0x80", func(t *testing.T) {
		// The broker drops a client silent for 1.5 x its Keep Alive; no
		// notice names it.
		cp := pw("silent", "alice")
		cp.KeepAlive = 1
		c, _ := v5Dial(t, ga.Addr, cp)
		dis := c.closedAfter(10 * time.Second) // 1.5 x Keep Alive without a packet
		require.NotNil(t, dis)
		require.Equal(t, byte(0x80), dis.ReasonCode)
	})
	t.Run("without_coordination_0x80", func(t *testing.T) {
		gc := startGateway(t, passwordAuth(), b.Addr, nil)
		require.NoError(t, gc.Gateway.CoordinationCheck(context.Background()), "off: nothing to check")
		c1, _ := v5Dial(t, gc.Addr, pw("twin-cc", "alice"))
		_, ca := v5Dial(t, gc.Addr, pw("twin-cc", "alice"))
		require.Equal(t, byte(0), ca.ReasonCode)
		dis := c1.closedAfter(10 * time.Second)
		require.NotNil(t, dis)
		require.Equal(t, byte(0x80), dis.ReasonCode)
	})
}

// TestCoordinationTopicRefused: clients of a coordinated gateway can
// neither publish, subscribe nor leave a Will on the coordination topic,
// nor use the control connections' client identifiers, whatever the
// policy says (allowAll); a subscription to "#" is served but never
// delivers a notice.
func TestCoordinationTopicRefused(t *testing.T) {
	b := startMosquitto(t, "")
	s := coordinated(t, allowAll(), b.Addr)
	topic := gateway.DefaultCoordinationTopic

	c, _ := v5Dial(t, s.Addr, pw("nosy", "alice"))
	c.send(&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{
		{Topic: topic, QoS: 1}, {Topic: "$mqttauth/#", QoS: 0}, {Topic: "$mqttauth/+", QoS: 1},
		{Topic: topic + "/#", QoS: 1}, {Topic: "#", QoS: 1}}})
	require.Equal(t, []byte{0x87, 0x87, 0x87, 0x87, 1}, c.read(5*time.Second).Content.(*packets.Suback).Reasons)
	for i, tp := range []string{topic, topic + "/x"} {
		id := uint16(10 + i)
		c.send(&packets.Publish{Topic: tp, QoS: 1, PacketID: id, Payload: []byte("1 forged 00000000000000000000000000000000"), Properties: &packets.Properties{}})
		ack, ok := c.read(5 * time.Second).Content.(*packets.Puback)
		require.True(t, ok, "PUBACK")
		require.Equal(t, id, ack.PacketID)
		require.Equal(t, byte(0x87), ack.ReasonCode, tp)
	}

	// Another client's admission publishes a notice; the "#" subscriber
	// gets the message published after it on ok/x, and no notice.
	other, _ := v5Dial(t, s.Addr, pw("admitted", "bob"))
	other.send(&packets.Publish{Topic: "ok/x", QoS: 1, PacketID: 1, Payload: []byte("after"), Properties: &packets.Properties{}})
	require.Equal(t, byte(0), other.read(5*time.Second).Content.(*packets.Puback).ReasonCode)
	p := c.read(5 * time.Second).Content.(*packets.Publish)
	require.Equal(t, "ok/x", p.Topic)
	require.Equal(t, "after", string(p.Payload))
	c.silent(300 * time.Millisecond)

	t.Run("will_on_the_topic", func(t *testing.T) {
		cp := pw("will", "alice")
		cp.WillFlag, cp.WillTopic, cp.WillMessage, cp.WillProperties = true, topic, []byte("x"), &packets.Properties{}
		_, ca := v5Dial(t, s.Addr, cp)
		require.Equal(t, byte(0x87), ca.ReasonCode)
	})
	t.Run("control_client_identifier", func(t *testing.T) {
		_, ca := v5Dial(t, s.Addr, pw(gateway.DefaultCoordinationClientIDPrefix+"0123456789abcdef", "alice"))
		require.Equal(t, byte(0x85), ca.ReasonCode)
		nc, code := connect311(t, s.Addr, gateway.DefaultCoordinationClientIDPrefix+"x", "alice", passwords["alice"])
		_ = nc.Close()
		require.Equal(t, byte(2), code, "3.1.1: identifier rejected")
	})
}

// spyDialer dials the broker for a gateway and finds its control
// connections (their CONNECT names a client identifier with the control
// prefix); it can drop what they publish, as a broker that never answers.
type spyDialer struct {
	mu       sync.Mutex
	controls []net.Conn
	drop     atomic.Bool // the control connections' PUBLISH packets vanish
}

func (d *spyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &spyConn{Conn: nc, d: d}, nil
}

func (d *spyDialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.controls)
}

type spyConn struct {
	net.Conn
	d       *spyDialer
	control atomic.Bool
}

func (c *spyConn) Write(b []byte) (int, error) {
	if len(b) > 0 && b[0] == packets.CONNECT<<4 && bytes.Contains(b, []byte(gateway.DefaultCoordinationClientIDPrefix)) {
		c.control.Store(true)
		c.d.mu.Lock()
		c.d.controls = append(c.d.controls, c.Conn)
		c.d.mu.Unlock()
	}
	if len(b) > 0 && b[0]>>4 == packets.PUBLISH && c.control.Load() && c.d.drop.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// The control connection comes back when the broker drops it, and
// coordination works again; Close ends it (goleak in TestMain).
func TestCoordinationReconnects(t *testing.T) {
	b := startMosquitto(t, "")
	d := &spyDialer{}
	ga := startGateway(t, passwordAuth(), b.Addr, func(c *gateway.Config) {
		c.Coordination, c.Dialer = &gateway.Coordination{}, d
	})
	gb := coordinated(t, passwordAuth(), b.Addr)
	waitCoordination(t, ga.Gateway)
	require.Equal(t, 1, d.count())

	d.mu.Lock()
	_ = d.controls[0].Close()
	d.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for d.count() < 2 || ga.Gateway.CoordinationCheck(context.Background()) != nil {
		require.True(t, time.Now().Before(deadline), "no new control connection")
		time.Sleep(20 * time.Millisecond)
	}
	requireTakenOver(t, gb.Addr, ga.Addr, "after-reconnect") // A's notice reaches B
	requireTakenOver(t, ga.Addr, gb.Addr, "after-reconnect") // B's reaches A
}

// A notice the broker never acknowledges delays the client by
// NoticeTimeout, no more; the takeover it announced is told as 0x80.
func TestCoordinationNoticeTimeout(t *testing.T) {
	b := startMosquitto(t, "")
	d := &spyDialer{}
	const timeout = 300 * time.Millisecond
	ga := startGateway(t, passwordAuth(), b.Addr, func(c *gateway.Config) {
		c.Coordination, c.Dialer = &gateway.Coordination{NoticeTimeout: timeout}, d
	})
	gb := coordinated(t, passwordAuth(), b.Addr)
	waitCoordination(t, ga.Gateway)
	d.drop.Store(true)

	first, _ := v5Dial(t, gb.Addr, pw("unannounced", "alice"))
	start := time.Now()
	_, ca := v5Dial(t, ga.Addr, pw("unannounced", "alice"))
	took := time.Since(start)
	require.Equal(t, byte(0), ca.ReasonCode)
	require.GreaterOrEqual(t, took, timeout, "waited for the PUBACK")
	require.Less(t, took, timeout+3*time.Second, "no longer than NoticeTimeout")
	dis := first.closedAfter(10 * time.Second)
	require.NotNil(t, dis)
	require.Equal(t, byte(0x80), dis.ReasonCode, "B never heard of the takeover")
}
