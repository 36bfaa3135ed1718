package gateway_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// fakeBroker accepts one connection, optionally reads a PROXY v2 header,
// reads CONNECT, answers CONNACK and then sends what the test asks.
type fakeBroker struct {
	ln      net.Listener
	proxy   chan []byte
	connect chan *packets.Connect
	send    chan []byte
	done    chan struct{}
	connack *packets.Connack // what to answer; nil: success, no properties
}

func startFakeBroker(t *testing.T, readProxy bool, connack ...*packets.Connack) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeBroker{ln: ln, proxy: make(chan []byte, 1), connect: make(chan *packets.Connect, 1),
		send: make(chan []byte, 4), done: make(chan struct{}), connack: &packets.Connack{Properties: &packets.Properties{}}}
	if len(connack) > 0 {
		f.connack = connack[0]
	}
	go func() {
		defer close(f.done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if readProxy {
			hdr := make([]byte, 16)
			if _, err := io.ReadFull(r, hdr); err != nil {
				return
			}
			rest := make([]byte, binary.BigEndian.Uint16(hdr[14:]))
			if _, err := io.ReadFull(r, rest); err != nil {
				return
			}
			f.proxy <- append(hdr, rest...)
		}
		p, err := packets.ReadPacket(r)
		if err != nil {
			return
		}
		f.connect <- p.Content.(*packets.Connect)
		_, _ = f.connack.WriteTo(c)
		go func() { _, _ = io.Copy(io.Discard, r) }()
		for b := range f.send {
			_, _ = c.Write(b)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); close(f.send); <-f.done })
	return f
}

func fakeStack(t *testing.T, f *fakeBroker, proxy bool) string {
	t.Helper()
	m, err := auth.NewManager(passwordAuth())
	require.NoError(t, err)
	g, err := gateway.New(gateway.Config{Manager: m, Upstream: f.ln.Addr().String(), ProxyProtocol: proxy, Logger: testLogger(t)})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { _ = g.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = g.Close(); <-done })
	return ln.Addr().String()
}

// The broker's DISCONNECT is relayed to the client with its reason code,
// and the client's connection then ends. The CONNECT the broker receives
// carries the identity and no password.
func TestUpstreamDisconnect(t *testing.T) {
	f := startFakeBroker(t, false)
	r := rawDial(t, fakeStack(t, f, false), "taken", "alice")
	cp := <-f.connect
	require.Equal(t, "device-alice", cp.Username)
	require.True(t, cp.UsernameFlag)
	require.False(t, cp.PasswordFlag)
	require.Empty(t, cp.Password)
	require.Equal(t, "taken", cp.ClientID)
	require.Empty(t, cp.Properties.AuthMethod)

	f.send <- []byte{packets.DISCONNECT << 4, 1, 0x8E}
	d := r.read()
	require.Equal(t, packets.DISCONNECT, d.Type)
	require.Equal(t, byte(0x8E), d.Content.(*packets.Disconnect).ReasonCode)
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the client leg closes after the broker's DISCONNECT")
}

// With ProxyProtocol the broker leg begins with a PROXY v2 header that
// carries the client's address.
func TestProxyProtocol(t *testing.T) {
	f := startFakeBroker(t, true)
	r := rawDial(t, fakeStack(t, f, true), "proxied", "alice")
	hdr := <-f.proxy
	require.Equal(t, []byte("\r\n\r\n\x00\r\nQUIT\n"), hdr[:12])
	require.Equal(t, byte(0x21), hdr[12], "version 2, PROXY")
	require.Equal(t, byte(0x11), hdr[13], "TCP over IPv4")
	require.Equal(t, uint16(12), binary.BigEndian.Uint16(hdr[14:16]))
	local := r.c.LocalAddr().(*net.TCPAddr)
	require.Equal(t, local.IP.To4(), net.IP(hdr[16:20]), "source is the client's address")
	require.Equal(t, uint16(local.Port), binary.BigEndian.Uint16(hdr[24:26]), "source port is the client's")
	<-f.connect
}

// The broker's CONNACK reaches the client faithfully (session present,
// Server Keep Alive, Receive Maximum, Retain Available, Assigned Client
// Identifier), with the Maximum Packet Size capped to the gateway's and
// the gateway's own Topic Alias Maximum; the client's CONNECT properties
// reach the broker, its Maximum Packet Size capped too.
func TestConnackRelayed(t *testing.T) {
	ka, rm, mps, tam := uint16(17), uint16(7), uint32(1<<30), uint16(3)
	retain := byte(0)
	f := startFakeBroker(t, false, &packets.Connack{SessionPresent: true, Properties: &packets.Properties{
		ServerKeepAlive: &ka, ReceiveMaximum: &rm, MaximumPacketSize: &mps, TopicAliasMaximum: &tam,
		RetainAvailable: &retain, AssignedClientID: "assigned-1"}})
	addr := fakeStack(t, f, false)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	cp := packets.NewControlPacket(packets.CONNECT)
	cc := cp.Content.(*packets.Connect)
	cexp, crm, cmps, ctam := uint32(600), uint16(9), uint32(1<<28), uint16(4)
	cc.KeepAlive, cc.Username, cc.UsernameFlag, cc.Password, cc.PasswordFlag = 42, "alice", true, []byte("alice-pw"), true
	cc.Properties = &packets.Properties{SessionExpiryInterval: &cexp, ReceiveMaximum: &crm, MaximumPacketSize: &cmps,
		TopicAliasMaximum: &ctam, User: []packets.User{{Key: "k", Value: "v"}}}
	_, err = cp.WriteTo(c)
	require.NoError(t, err)

	up := <-f.connect
	require.Equal(t, uint16(42), up.KeepAlive)
	require.Equal(t, cexp, *up.Properties.SessionExpiryInterval)
	require.Equal(t, crm, *up.Properties.ReceiveMaximum)
	require.Equal(t, mqttconn.DefaultMaxPacketSize, *up.Properties.MaximumPacketSize, "capped to what the gateway reads")
	require.Equal(t, ctam, *up.Properties.TopicAliasMaximum, "the broker may alias towards the client as the client allows")
	require.Equal(t, []packets.User{{Key: "k", Value: "v"}}, up.Properties.User)

	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := packets.ReadPacket(c)
	require.NoError(t, err)
	ca := p.Content.(*packets.Connack)
	require.True(t, ca.SessionPresent)
	require.Equal(t, ka, *ca.Properties.ServerKeepAlive)
	require.Equal(t, rm, *ca.Properties.ReceiveMaximum)
	require.Equal(t, byte(0), *ca.Properties.RetainAvailable)
	require.Equal(t, "assigned-1", ca.Properties.AssignedClientID)
	require.Equal(t, mqttconn.DefaultMaxPacketSize, *ca.Properties.MaximumPacketSize)
	require.Equal(t, uint16(gateway.DefaultTopicAliasMaximum), *ca.Properties.TopicAliasMaximum)
	require.Empty(t, ca.Properties.AuthMethod)
}
