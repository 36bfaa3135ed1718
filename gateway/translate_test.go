package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
	"github.com/mqttauth/mqttauth/gateway"
)

// v5Client is an MQTT 5 client written packet by packet (paho.golang's
// packets package), for the rows of the translation table that a
// library client hides: acknowledgement timing, options, properties.
type v5Client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func v5Dial(t *testing.T, addr string, cp *packets.Connect) (*v5Client, *packets.Connack) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	c := &v5Client{t: t, nc: nc, r: bufio.NewReader(nc)}
	if cp.Properties == nil {
		cp.Properties = &packets.Properties{}
	}
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 5
	c.send(cp)
	p := c.read(5 * time.Second)
	ca, ok := p.Content.(*packets.Connack)
	require.True(t, ok, "want CONNACK, got %v", p)
	return c, ca
}

func (c *v5Client) send(p interface {
	WriteTo(w io.Writer) (int64, error)
}) {
	c.t.Helper()
	_, err := p.WriteTo(c.nc)
	require.NoError(c.t, err)
}

// read returns the next packet within d.
func (c *v5Client) read(d time.Duration) *packets.ControlPacket {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	p, err := packets.ReadPacket(c.r)
	require.NoError(c.t, err)
	return p
}

// silent checks that nothing arrives within d.
func (c *v5Client) silent(d time.Duration) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	p, err := packets.ReadPacket(c.r)
	var ne net.Error
	require.True(c.t, errors.As(err, &ne) && ne.Timeout(), "want nothing, got %v %v", p, err)
}

// closed checks that the connection ends (EOF) within d, after an
// optional DISCONNECT, which it returns.
func (c *v5Client) closedAfter(d time.Duration) *packets.Disconnect {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	p, err := packets.ReadPacket(c.r)
	if err != nil {
		return nil
	}
	dis, ok := p.Content.(*packets.Disconnect)
	require.True(c.t, ok, "want DISCONNECT, got %v", p)
	return dis
}

func u32(v uint32) *uint32 { return &v }
func u16(v uint16) *uint16 { return &v }

// translated starts mosquitto (which speaks 3.1.1 when asked: its log
// shows the protocol "p2", the clean session flag, keep alive and user
// name of every CONNECT) and a gateway with UpstreamProtocol 3.1.1.
func translated(t *testing.T, ac auth.Config, brokerConf string) *stack {
	return startStack(t, ac, brokerConf, func(c *gateway.Config) { c.UpstreamProtocol = gateway.UpstreamV311 })
}

func pw(id, user string) *packets.Connect {
	return &packets.Connect{ClientID: id, CleanStart: true, UsernameFlag: true, Username: user,
		PasswordFlag: true, Password: []byte(passwords[user]), KeepAlive: 30}
}

// Each row of the TRANSLATION table in doc.go.
func TestTranslation(t *testing.T) {
	s := translated(t, passwordAuth(), "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("connect/clean_start_keep_alive_user_name", func(t *testing.T) {
		_, ca := v5Dial(t, s.Addr, pw("row-clean", "alice"))
		require.Equal(t, byte(0), ca.ReasonCode)
		require.False(t, ca.SessionPresent)
		waitLog(t, s.Broker, "as row-clean (p2, c1, k30, u'device-alice')")
		// What the gateway says itself in CONNACK.
		require.Equal(t, byte(0), *ca.Properties.SubIDAvailable)
		require.Equal(t, byte(0), *ca.Properties.SharedSubAvailable)
		require.NotNil(t, ca.Properties.TopicAliasMaximum)
	})

	t.Run("connect/session_expiry_resumes_with_queued_qos1", func(t *testing.T) {
		cp := pw("row-persist", "bob")
		cp.Properties = &packets.Properties{SessionExpiryInterval: u32(3600)}
		c, ca := v5Dial(t, s.Addr, cp) // Clean Start 1 + expiry: purge, then Clean Session 0
		require.False(t, ca.SessionPresent)
		waitLog(t, s.Broker, "as row-persist (p2, c0, k30, u'device-bob')")
		c.send(&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{{Topic: "ok/persist", QoS: 1}}})
		require.Equal(t, []byte{1}, c.read(5*time.Second).Content.(*packets.Suback).Reasons)
		c.send(&packets.Disconnect{ReasonCode: 0, Properties: &packets.Properties{}})
		c.closedAfter(5 * time.Second)

		pub := pahoConnect(t, s.Addr, "row-persist-pub", "alice")
		_, err := pub.Publish(ctx, &paho.Publish{Topic: "ok/persist", QoS: 1, Payload: []byte("queued")})
		require.NoError(t, err)

		cp = pw("row-persist", "bob")
		cp.CleanStart = false
		cp.Properties = &packets.Properties{SessionExpiryInterval: u32(3600)}
		c, ca = v5Dial(t, s.Addr, cp)
		require.True(t, ca.SessionPresent, "the broker kept the session")
		p := c.read(5 * time.Second).Content.(*packets.Publish)
		require.Equal(t, "ok/persist", p.Topic)
		require.Equal(t, "queued", string(p.Payload))
		c.send(&packets.Puback{PacketID: p.PacketID, Properties: &packets.Properties{}})

		// Clean Start 0 with Session Expiry 0: the session ends with the
		// connection (Clean Session 1), and CONNACK says none was resumed.
		cp = pw("row-persist", "bob")
		cp.CleanStart = false
		c2, ca := v5Dial(t, s.Addr, cp)
		require.False(t, ca.SessionPresent)
		_ = c2
		// Clean Start 1 with an expiry again: a new session, not the old one.
		cp = pw("row-persist", "bob")
		cp.Properties = &packets.Properties{SessionExpiryInterval: u32(3600)}
		_, ca = v5Dial(t, s.Addr, cp)
		require.False(t, ca.SessionPresent)
	})

	t.Run("connect/assigned_client_identifier", func(t *testing.T) {
		_, ca := v5Dial(t, s.Addr, pw("", "alice"))
		require.Equal(t, byte(0), ca.ReasonCode)
		id := ca.Properties.AssignedClientID
		require.True(t, strings.HasPrefix(id, "mqttauth-"), id)
		waitLog(t, s.Broker, "as "+id+" (p2, c1")
	})

	t.Run("connect/will_delay_refused_0x83", func(t *testing.T) {
		cp := pw("row-delay", "alice")
		cp.WillFlag, cp.WillTopic, cp.WillMessage = true, "ok/will", []byte("w")
		cp.WillProperties = &packets.Properties{WillDelayInterval: u32(10)}
		c, ca := v5Dial(t, s.Addr, cp)
		require.Equal(t, byte(0x83), ca.ReasonCode)
		require.Contains(t, ca.Properties.ReasonString, "Will Delay Interval")
		c.closedAfter(5 * time.Second)
	})

	t.Run("will/disconnect_codes", func(t *testing.T) {
		sub := pahoConnect(t, s.Addr, "row-will-sub", "bob")
		_, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/will/#", QoS: 1}}})
		require.NoError(t, err)
		for _, tc := range []struct {
			name string
			end  func(c *v5Client)
			will bool
		}{
			{"normal_0x00_no_will", func(c *v5Client) { c.send(&packets.Disconnect{ReasonCode: 0x00, Properties: &packets.Properties{}}) }, false},
			{"with_will_0x04", func(c *v5Client) { c.send(&packets.Disconnect{ReasonCode: 0x04, Properties: &packets.Properties{}}) }, true},
			{"error_0x80", func(c *v5Client) { c.send(&packets.Disconnect{ReasonCode: 0x80, Properties: &packets.Properties{}}) }, true},
			{"closed_without_disconnect", func(c *v5Client) { _ = c.nc.Close() }, true},
		} {
			cp := pw("row-will-"+tc.name, "alice")
			cp.WillFlag, cp.WillQOS, cp.WillTopic, cp.WillMessage = true, 1, "ok/will/"+tc.name, []byte(tc.name)
			c, ca := v5Dial(t, s.Addr, cp)
			require.Equal(t, byte(0), ca.ReasonCode, tc.name)
			tc.end(c)
			// A Will that must come has a liveness bound; one that must
			// not is given 2 s to show.
			wait := 2 * time.Second
			if tc.will {
				wait = 30 * time.Second
			}
			select {
			case m := <-sub.Messages:
				require.True(t, tc.will, "%s: unexpected Will %s", tc.name, m.Topic)
				require.Equal(t, "ok/will/"+tc.name, m.Topic)
			case <-time.After(wait):
				require.False(t, tc.will, "%s: no Will", tc.name)
			}
		}
	})

	t.Run("publish/properties_stripped_alias_resolved_qos2", func(t *testing.T) {
		sub := pahoConnect(t, s.Addr, "row-pub-sub", "bob")
		_, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/p/#", QoS: 2}}})
		require.NoError(t, err)
		c, _ := v5Dial(t, s.Addr, pw("row-pub", "alice"))
		c.send(&packets.Publish{Topic: "ok/p/alias", QoS: 1, PacketID: 1, Payload: []byte("one"),
			Properties: &packets.Properties{TopicAlias: u16(3), User: []packets.User{{Key: "k", Value: "v"}}, MessageExpiry: u32(60)}})
		require.Equal(t, byte(0), c.read(5*time.Second).Content.(*packets.Puback).ReasonCode)
		c.send(&packets.Publish{QoS: 2, PacketID: 2, Payload: []byte("two"), Properties: &packets.Properties{TopicAlias: u16(3)}})
		rec := c.read(5 * time.Second).Content.(*packets.Pubrec)
		require.Equal(t, uint16(2), rec.PacketID)
		require.Equal(t, byte(0), rec.ReasonCode)
		c.send(&packets.Pubrel{PacketID: 2, Properties: &packets.Properties{}})
		require.Equal(t, uint16(2), c.read(5*time.Second).Content.(*packets.Pubcomp).PacketID)
		for _, want := range []string{"one", "two"} {
			select {
			case m := <-sub.Messages:
				require.Equal(t, "ok/p/alias", m.Topic)
				require.Equal(t, want, string(m.Payload))
				require.Empty(t, m.Properties.User, "3.1.1 carries no properties")
			case <-time.After(5 * time.Second):
				t.Fatalf("no %s", want)
			}
		}
		// The gateway's deny: PUBACK 0x87, as for a v5 broker.
		c.send(&packets.Publish{Topic: "secret/x", QoS: 1, PacketID: 3, Payload: []byte("no"), Properties: &packets.Properties{}})
		require.Equal(t, byte(0x87), c.read(5*time.Second).Content.(*packets.Puback).ReasonCode)
	})

	t.Run("deliveries/receive_maximum_and_maximum_packet_size", func(t *testing.T) {
		cp := pw("row-window", "bob")
		cp.Properties = &packets.Properties{ReceiveMaximum: u16(2), MaximumPacketSize: u32(200)}
		c, _ := v5Dial(t, s.Addr, cp)
		c.send(&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{{Topic: "ok/w/#", QoS: 1}}})
		require.Equal(t, []byte{1}, c.read(5*time.Second).Content.(*packets.Suback).Reasons)
		pub := pahoConnect(t, s.Addr, "row-window-pub", "alice")
		big := strings.Repeat("x", 300)
		for _, m := range []string{"1", big, "2", "3", "4"} {
			_, err := pub.Publish(ctx, &paho.Publish{Topic: "ok/w/t", QoS: 1, Payload: []byte(m)})
			require.NoError(t, err)
		}
		// Two in flight at most: 1 and 2 (the 300-byte message is above
		// the client's Maximum Packet Size: discarded).
		p1 := c.read(5 * time.Second).Content.(*packets.Publish)
		p2 := c.read(5 * time.Second).Content.(*packets.Publish)
		require.Equal(t, "1", string(p1.Payload))
		require.Equal(t, "2", string(p2.Payload))
		c.silent(500 * time.Millisecond)
		c.send(&packets.Puback{PacketID: p1.PacketID, Properties: &packets.Properties{}})
		p3 := c.read(5 * time.Second).Content.(*packets.Publish)
		require.Equal(t, "3", string(p3.Payload))
		c.silent(300 * time.Millisecond)
		c.send(&packets.Puback{PacketID: p2.PacketID, Properties: &packets.Properties{}})
		c.send(&packets.Puback{PacketID: p3.PacketID, Properties: &packets.Properties{}})
		require.Equal(t, "4", string(c.read(5*time.Second).Content.(*packets.Publish).Payload))
	})

	t.Run("deliveries/pubrec_failure_ends_the_flow", func(t *testing.T) {
		c, _ := v5Dial(t, s.Addr, pw("row-rec", "bob"))
		c.send(&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{{Topic: "ok/rec", QoS: 2}}})
		require.Equal(t, []byte{2}, c.read(5*time.Second).Content.(*packets.Suback).Reasons)
		pub := pahoConnect(t, s.Addr, "row-rec-pub", "alice")
		for _, m := range []string{"refused", "taken"} {
			_, err := pub.Publish(ctx, &paho.Publish{Topic: "ok/rec", QoS: 2, Payload: []byte(m)})
			require.NoError(t, err)
		}
		p := c.read(5 * time.Second).Content.(*packets.Publish)
		require.Equal(t, "refused", string(p.Payload))
		c.send(&packets.Pubrec{PacketID: p.PacketID, ReasonCode: 0x83, Properties: &packets.Properties{}})
		// No PUBREL for it: the gateway answered the broker's.
		p = c.read(5 * time.Second).Content.(*packets.Publish)
		require.Equal(t, "taken", string(p.Payload))
		c.send(&packets.Pubrec{PacketID: p.PacketID, Properties: &packets.Properties{}})
		rel := c.read(5 * time.Second).Content.(*packets.Pubrel)
		require.Equal(t, p.PacketID, rel.PacketID)
		c.send(&packets.Pubcomp{PacketID: p.PacketID, Properties: &packets.Properties{}})
		c.silent(300 * time.Millisecond)
	})

	t.Run("subscribe/refused_options_and_codes_in_order", func(t *testing.T) {
		c, _ := v5Dial(t, s.Addr, pw("row-sub", "bob"))
		c.send(&packets.Subscribe{PacketID: 7, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{
			{Topic: "ok/a", QoS: 1},
			{Topic: "ok/b", QoS: 1, NoLocal: true},
			{Topic: "ok/c", QoS: 1, RetainAsPublished: true},
			{Topic: "ok/d", QoS: 1, RetainHandling: 1},
			{Topic: "$share/g/ok/e", QoS: 1},
			{Topic: "secret/f", QoS: 1},
			{Topic: "ok/g", QoS: 2},
		}})
		sa := c.read(5 * time.Second).Content.(*packets.Suback)
		require.Equal(t, uint16(7), sa.PacketID)
		require.Equal(t, []byte{1, 0x83, 0x83, 0x83, 0x9E, 0x87, 2}, sa.Reasons)
		require.Contains(t, sa.Properties.ReasonString, "not supported")

		id := 9
		c.send(&packets.Subscribe{PacketID: 8, Properties: &packets.Properties{SubscriptionIdentifier: &id},
			Subscriptions: []packets.SubOptions{{Topic: "ok/h", QoS: 1}}})
		sa = c.read(5 * time.Second).Content.(*packets.Suback)
		require.Equal(t, []byte{0xA1}, sa.Reasons)
		require.Contains(t, sa.Properties.ReasonString, "Subscription Identifiers")

		c.send(&packets.Unsubscribe{PacketID: 10, Properties: &packets.Properties{}, Topics: []string{"ok/a", "ok/g", "ok/none"}})
		ua := c.read(5 * time.Second).Content.(*packets.Unsuback)
		require.Equal(t, uint16(10), ua.PacketID)
		require.Equal(t, []byte{0, 0, 0}, ua.Reasons)

		c.send(packets.NewControlPacket(packets.PINGREQ))
		require.Equal(t, packets.PINGRESP, c.read(5*time.Second).Type)
	})

	t.Run("broker_close/disconnect_0x80", func(t *testing.T) {
		c, _ := v5Dial(t, s.Addr, pw("row-takeover", "alice"))
		// A 3.1.1 client straight to the broker with the same client
		// identifier takes the session over: the broker closes the
		// gateway's leg without a word (3.1.1 has no server DISCONNECT).
		direct := rawConnect311(t, s.Broker.Addr, "row-takeover")
		defer direct.Close()
		dis := c.closedAfter(5 * time.Second)
		require.NotNil(t, dis)
		require.Equal(t, byte(0x80), dis.ReasonCode)
	})
}

// rawConnect311 connects an MQTT 3.1.1 client straight to addr.
func rawConnect311(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, byte(len(id))}
	body = append(body, id...)
	_, err = nc.Write(append([]byte{0x10, byte(len(body))}, body...))
	require.NoError(t, err)
	var ca [4]byte
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(nc, ca[:])
	require.NoError(t, err)
	require.Equal(t, byte(0), ca[3])
	return nc
}

func pahoConnect(t *testing.T, addr, id, user string) *conformance.Client {
	t.Helper()
	c, _ := pahoDial(t, addr, pwConnect(id, user))
	return c
}

// The broker's CONNACK return codes reach an MQTT 5 client as MQTT 5
// reason codes; 3.1.1 clients are refused under UpstreamV5.
func TestTranslationConnackCodes(t *testing.T) {
	s := translated(t, passwordAuth(), "allow_anonymous false\n")
	_, ca := v5Dial(t, s.Addr, pw("refused", "alice"))
	require.Equal(t, byte(0x87), ca.ReasonCode, "3.1.1 return code 5 (not authorized) is 0x87")

	v5 := startStack(t, passwordAuth(), "", func(c *gateway.Config) { c.UpstreamProtocol = gateway.UpstreamV5 })
	nc, err := net.DialTimeout("tcp", v5.Addr, 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	user, pass := "alice", passwords["alice"]
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 30, 0, 1, 'x', 0, byte(len(user))}
	body = append(body, user...)
	body = append(body, 0, byte(len(pass)))
	body = append(body, pass...)
	_, err = nc.Write(append([]byte{0x10, byte(len(body))}, body...))
	require.NoError(t, err)
	var ca4 [4]byte
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(nc, ca4[:])
	require.NoError(t, err)
	require.Equal(t, byte(1), ca4[3], "unacceptable protocol version")
}

func TestParseUpstreamProtocol(t *testing.T) {
	for in, want := range map[string]gateway.UpstreamProtocol{
		"": gateway.UpstreamAuto, "auto": gateway.UpstreamAuto, "3.1.1": gateway.UpstreamV311, "5": gateway.UpstreamV5,
	} {
		got, err := gateway.ParseUpstreamProtocol(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
		if in != "" {
			require.Equal(t, in, got.String())
		}
	}
	_, err := gateway.ParseUpstreamProtocol("3.1")
	require.ErrorIs(t, err, gateway.ErrUpstreamProtocol)
	_, err = gateway.New(gateway.Config{Manager: &auth.Manager{}, Upstream: "x:1", UpstreamProtocol: 3})
	require.ErrorIs(t, err, gateway.ErrUpstreamProtocol)
}

// A 3.1.1 broker's SUBACK failure (0x80) reaches the MQTT 5 client as
// 0x80 Unspecified error, in its place among the gateway's own codes.
// Neither mosquitto 2.0 (it grants, and filters deliveries) nor RabbitMQ
// 3.10 (it closes the connection) answers 0x80, so the broker here is a
// scripted 3.1.1 one: CONNACK 0, then SUBACK 0x80 for every filter.
func TestTranslationBrokerSubackFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	got := make(chan []byte, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		readRaw := func() []byte {
			h, _ := r.ReadByte()
			n, _ := r.ReadByte() // short packets only
			b := make([]byte, n)
			_, _ = io.ReadFull(r, b)
			return append([]byte{h, n}, b...)
		}
		readRaw() // CONNECT
		_, _ = nc.Write([]byte{0x20, 2, 0, 0})
		sub := readRaw()
		got <- sub
		// SUBSCRIBE 3.1.1: id, then (filter, QoS) pairs.
		codes := []byte{}
		rr := sub[4:]
		for len(rr) > 2 {
			n := int(rr[0])<<8 | int(rr[1])
			rr = rr[2+n+1:]
			codes = append(codes, 0x80)
		}
		_, _ = nc.Write(append([]byte{0x90, byte(2 + len(codes)), sub[2], sub[3]}, codes...))
		_, _ = io.Copy(io.Discard, r)
	}()
	s := startGateway(t, passwordAuth(), ln.Addr().String(), nil)
	c, _ := v5Dial(t, s.Addr, pw("row-suback", "bob"))
	c.send(&packets.Subscribe{PacketID: 3, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{
		{Topic: "ok/a", QoS: 1, NoLocal: true}, {Topic: "ok/b", QoS: 1}, {Topic: "secret/x", QoS: 1}}})
	sa := c.read(5 * time.Second).Content.(*packets.Suback)
	require.Equal(t, []byte{0x83, 0x80, 0x87}, sa.Reasons)
	// Upstream went the one filter the gateway let through, as 3.1.1.
	require.Equal(t, []byte{0x82, 9, 0, 3, 0, 4, 'o', 'k', '/', 'b', 1}, <-got)
	_ = c.nc.Close()
	require.NoError(t, s.Gateway.Close())
	_ = ln.Close()
	<-done
}
