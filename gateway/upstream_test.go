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
)

// fakeBroker accepts one connection, optionally reads a PROXY v2 header,
// reads CONNECT, answers CONNACK and then sends what the test asks.
type fakeBroker struct {
	ln      net.Listener
	proxy   chan []byte
	connect chan *packets.Connect
	send    chan []byte
	done    chan struct{}
}

func startFakeBroker(t *testing.T, readProxy bool) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeBroker{ln: ln, proxy: make(chan []byte, 1), connect: make(chan *packets.Connect, 1),
		send: make(chan []byte, 4), done: make(chan struct{})}
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
		_, _ = (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c)
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
