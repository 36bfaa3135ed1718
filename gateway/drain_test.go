package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// drainAuth lets in every "dev-N" with password "pw", allowed everything.
func drainAuth() auth.Config {
	authn := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if !strings.HasPrefix(req.Username, "dev-") || string(req.Password) != "pw" {
			return auth.FailResult(auth.BadUserNameOrPassword, fmt.Errorf("test: bad password"))
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "password", Username: req.Username}))
	})
	return auth.Config{Authenticator: authn, Authorizer: auth.AllowAuthenticated}
}

// drainClient is a subscriber with a persistent session (Session Expiry
// one hour) that follows DISCONNECT 0x9C to its Server Reference, resumes
// its session there and counts every distinct QoS 1 message it received
// (acknowledged only once counted).
type drainClient struct {
	id, topic string

	mu    sync.Mutex
	got   map[string]bool
	dups  int
	moved time.Time // when it was connected again after 0x9C
	err   error
}

func (c *drainClient) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// connect opens a session at addr (subscribing on the first) and returns
// the connection.
func (c *drainClient) connect(addr string, first bool) (net.Conn, *bufio.Reader, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, *bufio.Reader, error) { _ = nc.Close(); return nil, nil, err }
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(nc)
	cp := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: c.id, CleanStart: first, KeepAlive: 0,
		UsernameFlag: true, Username: "dev-" + c.id, PasswordFlag: true, Password: []byte("pw"),
		Properties: &packets.Properties{SessionExpiryInterval: u32(3600)}}
	if _, err := cp.WriteTo(nc); err != nil {
		return fail(err)
	}
	p, err := packets.ReadPacket(r)
	if err != nil {
		return fail(err)
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok || ca.ReasonCode != 0 {
		return fail(fmt.Errorf("%s: CONNACK %v", c.id, p))
	}
	if !first && !ca.SessionPresent {
		return fail(fmt.Errorf("%s: the session did not follow", c.id))
	}
	if first {
		s := &packets.Subscribe{PacketID: 1, Properties: &packets.Properties{},
			Subscriptions: []packets.SubOptions{{Topic: c.topic, QoS: 1}}}
		if _, err := s.WriteTo(nc); err != nil {
			return fail(err)
		}
		p, err := packets.ReadPacket(r)
		if err != nil {
			return fail(err)
		}
		if sa, ok := p.Content.(*packets.Suback); !ok || sa.Reasons[0] != 1 {
			return fail(fmt.Errorf("%s: SUBACK %v", c.id, p))
		}
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, r, nil
}

// run reads until ctx ends, following one 0x9C; ready is told once the
// first session is subscribed, movedc once the client is back.
func (c *drainClient) run(ctx context.Context, addr string, ready, movedc chan<- struct{}) {
	nc, r, err := c.connect(addr, true)
	if err != nil {
		c.fail(err)
		ready <- struct{}{}
		return
	}
	ready <- struct{}{}
	for {
		stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
		ref, err := c.read(nc, r)
		stop()
		_ = nc.Close()
		if err != nil || ref == "" {
			if ctx.Err() == nil {
				c.fail(fmt.Errorf("%s: %v", c.id, err))
			}
			return
		}
		if nc, r, err = c.connect(ref, false); err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		c.moved = time.Now()
		c.mu.Unlock()
		movedc <- struct{}{}
	}
}

// read counts and acknowledges deliveries until the connection ends; it
// returns the Server Reference of a DISCONNECT 0x9C.
func (c *drainClient) read(nc net.Conn, r *bufio.Reader) (string, error) {
	for {
		p, err := packets.ReadPacket(r)
		if err != nil {
			return "", err
		}
		switch m := p.Content.(type) {
		case *packets.Publish:
			c.mu.Lock()
			if c.got[string(m.Payload)] {
				c.dups++
			}
			c.got[string(m.Payload)] = true
			c.mu.Unlock()
			// A failed write is the gateway closing after its DISCONNECT,
			// which is read next; the broker resends what was not
			// acknowledged.
			ack := &packets.Puback{PacketID: m.PacketID, Properties: &packets.Properties{}}
			_, _ = ack.WriteTo(nc)
		case *packets.Disconnect:
			if m.ReasonCode != 0x9C {
				return "", fmt.Errorf("DISCONNECT 0x%02x", m.ReasonCode)
			}
			return m.Properties.ServerReference, nil
		}
	}
}

func (c *drainClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// TestDrain moves 1,000 MQTT 5 clients with persistent sessions from a
// draining gateway to another in front of the same mosquitto while a
// publisher sends each of them QoS 1 messages straight to the broker,
// and checks that every message the broker acknowledged reached its
// client (none lost; duplicates are QoS 1's right) and that the draining
// gateway is not ready. It logs the time the move took: the figure of
// BENCHMARKS.md. MQTTAUTH_DRAIN_CLIENTS changes the number of clients.
func TestDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 clients: not in -short")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("MQTTAUTH_DRAIN_CLIENTS")); err == nil && v > 0 {
		n = v
	}
	const rounds = 5 // messages per client
	b := startMosquitto(t, "log_dest none\nmax_queued_messages 10000\n")
	limits := mqttconn.Limits{MaxPending: 2 * n, MaxPendingPerSource: 2 * n} // every client is 127.0.0.1
	plain := func(c *gateway.Config) {
		c.UpstreamProtocol, c.UpstreamPassword, c.Limits = gateway.UpstreamAuto, nil, limits
	}
	ga := startGateway(t, drainAuth(), b.Addr, plain)
	gb := startGateway(t, drainAuth(), b.Addr, plain)

	ctx, cancel := context.WithCancel(context.Background())
	clients := make([]*drainClient, n)
	ready, moved := make(chan struct{}, n), make(chan struct{}, n)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	dial := make(chan struct{}, 64) // connects in flight at once
	for i := range clients {
		c := &drainClient{id: "drain-" + strconv.Itoa(i), topic: "drain/" + strconv.Itoa(i), got: map[string]bool{}}
		clients[i] = c
		wg.Go(func() {
			dial <- struct{}{}
			c.run(ctx, ga.Addr, ready, moved)
		})
	}
	for range n {
		select {
		case <-ready:
			<-dial
		case <-time.After(60 * time.Second):
			t.Fatal("clients did not connect")
		}
	}
	for _, c := range clients {
		require.NoError(t, c.err)
	}
	require.Equal(t, n, ga.Gateway.Len())

	// The publisher: QoS 1 straight to mosquitto, at most 256 in flight.
	pub := newPublisher(t, b.Addr)
	acked := make(chan int, 1)
	half := make(chan struct{})
	go func() {
		for round := range rounds {
			if round == 2 {
				close(half)
			}
			for i := range n {
				pub.publish(clients[i].topic, strconv.Itoa(round))
			}
		}
		acked <- pub.wait()
	}()

	<-half
	require.False(t, ga.Gateway.Draining())
	require.NoError(t, ga.Gateway.DrainCheck(context.Background()))
	start := time.Now()
	drained := make(chan error, 1)
	go func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer dcancel()
		drained <- ga.Gateway.Drain(dctx, gb.Addr)
	}()
	require.Eventually(t, ga.Gateway.Draining, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, ga.Gateway.DrainCheck(context.Background()), gateway.ErrDraining, "/readyz: not ready while draining")
	require.NoError(t, gb.Gateway.DrainCheck(context.Background()))
	for range n {
		select {
		case <-moved:
		case <-time.After(60 * time.Second):
			for _, c := range clients {
				c.mu.Lock()
				err := c.err
				c.mu.Unlock()
				require.NoError(t, err)
			}
			t.Fatal("clients did not move")
		}
	}
	movedIn := time.Since(start)
	require.NoError(t, <-drained)
	drainedIn := time.Since(start)

	total := <-acked
	require.Equal(t, n*rounds, total, "the broker acknowledged every publish")
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for c.count() < rounds && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	delivered := time.Since(start)
	lost, dups := 0, 0
	for _, c := range clients {
		require.NoError(t, c.err)
		c.mu.Lock()
		for r := range rounds {
			if !c.got[strconv.Itoa(r)] {
				lost++
				t.Logf("lost: %s round %d (moved at %v after the drain began; got %v)", c.id, r, c.moved.Sub(start), c.got)
			}
		}
		dups += c.dups
		c.mu.Unlock()
	}
	require.Zero(t, lost, "QoS 1 messages lost")
	require.Equal(t, n, gb.Gateway.Len())
	require.Zero(t, ga.Gateway.Len())
	t.Logf("drain: %d clients moved in %v (Drain returned after %v); %d QoS 1 messages, %d lost, %d duplicates, all delivered %v after the drain began",
		n, movedIn.Round(time.Millisecond), drainedIn.Round(time.Millisecond), total, lost, dups, delivered.Round(time.Millisecond))
}

// publisher is an MQTT 5 QoS 1 publisher with a window of acknowledgements.
type publisher struct {
	nc     net.Conn
	window chan uint16 // free packet identifiers
	ok     atomic.Int64
	done   chan struct{}
}

func newPublisher(t *testing.T, addr string) *publisher {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	r := bufio.NewReader(nc)
	cp := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "drain-publisher", CleanStart: true,
		Properties: &packets.Properties{}}
	_, err = cp.WriteTo(nc)
	require.NoError(t, err)
	p, err := packets.ReadPacket(r)
	require.NoError(t, err)
	require.Equal(t, byte(0), p.Content.(*packets.Connack).ReasonCode)
	pb := &publisher{nc: nc, window: make(chan uint16, 256), done: make(chan struct{})}
	for id := range uint16(256) {
		pb.window <- id + 1
	}
	go func() {
		defer close(pb.done)
		for {
			p, err := packets.ReadPacket(r)
			if err != nil {
				return
			}
			if a, ok := p.Content.(*packets.Puback); ok {
				if a.ReasonCode == 0 {
					pb.ok.Add(1)
				}
				pb.window <- a.PacketID
			}
		}
	}()
	t.Cleanup(func() { _ = nc.Close(); <-pb.done })
	return pb
}

// publish sends one QoS 1 message once a packet identifier is free (a
// failed write leaves it unacknowledged: wait's count falls short).
func (p *publisher) publish(topic, payload string) {
	id := <-p.window
	m := &packets.Publish{Topic: topic, QoS: 1, PacketID: id, Payload: []byte(payload), Properties: &packets.Properties{}}
	if _, err := m.WriteTo(p.nc); err != nil {
		p.window <- id
	}
}

// wait returns the number of publishes the broker acknowledged with 0x00
// once every identifier is back.
func (p *publisher) wait() int {
	for range 256 {
		<-p.window
	}
	return int(p.ok.Load())
}
