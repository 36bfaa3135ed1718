package conformance

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// shutdownDisconnect0x8B: Broker.Shutdown sends every connected MQTT 5
// client DISCONNECT 0x8B Server shutting down and closes it (MQTT 5.0
// 3.14.2.1), closes an MQTT 3.1.1 client without a packet (3.1.1 has no
// DISCONNECT from the server), stops accepting, and returns nil once the
// clients are gone.
func shutdownDisconnect0x8B(t *testing.T, b Broker, _ *Fixture) {
	var cs []*Client
	for i := range 3 {
		c, _ := mustConnect(t, b, password(fmt.Sprintf("shut-%d", i), UserAlice), nil)
		cs = append(cs, c)
	}
	old := dialRaw(t, b.Addr)
	if rc := old.connectV311(t, "shut-311", UserAlice, PasswordGood, nil); rc != 0 {
		t.Fatalf("MQTT 3.1.1 CONNACK return code %d, want 0", rc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	err := b.Shutdown(ctx)
	deadline := time.After(Timeout) // one wait for all the clients
	for i, c := range cs {
		select {
		case d := <-c.Disconnects:
			if d.ReasonCode != 0x8B {
				t.Errorf("client %d: DISCONNECT 0x%02x, want 0x8B", i, d.ReasonCode)
			}
		case <-deadline:
			t.Errorf("client %d: no DISCONNECT within %v of Shutdown; want 0x8B", i, Timeout)
			deadline = closedChan
		}
		select {
		case <-c.Done():
		case <-time.After(Timeout):
			t.Errorf("client %d: still connected %v after Shutdown", i, Timeout)
		}
	}
	old.expectClosed(t, Timeout, "MQTT 3.1.1 has no DISCONNECT from the server: Shutdown closes the connection", nil)
	if err != nil {
		t.Errorf("Shutdown: %v; want nil (every client gone before the deadline)", err)
	}
	expectNotAccepting(t, b.Addr)
}

// closedChan is a closed channel: a deadline that has passed.
var closedChan = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// expectNotAccepting fails the test when a new client at addr is
// accepted.
func expectNotAccepting(t *testing.T, addr string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		return // the listener is closed
	}
	c := &rawConn{Conn: nc, r: bufio.NewReader(nc)}
	defer func() { _ = nc.Close() }()
	c.send(t, v311Connect("late", UserAlice, PasswordGood, nil))
	c.expectClosed(t, Timeout, "a client that connects after Shutdown is not accepted",
		func(p rawPacket) bool { return p.Type == packets.CONNACK && len(p.Body) == 2 && p.Body[1] != 0 })
}

// shutdownDrain0x9C: Broker.Drain sends every connected MQTT 5 client
// DISCONNECT 0x9C Use another server with the Server Reference given
// (MQTT 5.0 3.14.2.2.5, 4.11) and closes it.
func shutdownDrain0x9C(t *testing.T, b Broker, _ *Fixture) {
	const ref = "other.example:1883"
	var cs []*Client
	for i := range 2 {
		c, _ := mustConnect(t, b, password(fmt.Sprintf("drain-%d", i), UserAlice), nil)
		cs = append(cs, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	err := b.Drain(ctx, ref)
	deadline := time.After(Timeout) // one wait for all the clients
	for i, c := range cs {
		select {
		case d := <-c.Disconnects:
			switch {
			case d.ReasonCode != 0x9C:
				t.Errorf("client %d: DISCONNECT 0x%02x, want 0x9C", i, d.ReasonCode)
			case d.Properties == nil || d.Properties.ServerReference != ref:
				t.Errorf("client %d: DISCONNECT 0x9C properties %+v; want Server Reference %q", i, d.Properties, ref)
			}
		case <-deadline:
			t.Errorf("client %d: no DISCONNECT within %v of Drain; want 0x9C", i, Timeout)
			deadline = closedChan
		}
		select {
		case <-c.Done():
		case <-time.After(Timeout):
			t.Errorf("client %d: still connected %v after Drain", i, Timeout)
		}
	}
	if err != nil {
		t.Errorf("Drain: %v; want nil (every client gone before the deadline)", err)
	}
}
