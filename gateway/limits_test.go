package gateway_test

import (
	"crypto/x509"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// closedWithin fails unless the server closes c within d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
}

// Connections that send no CONNECT are closed after ConnectTimeout; those
// beyond MaxPending are closed at once (all come from one address here:
// its share is the whole bound).
func TestUnauthenticatedLimits(t *testing.T) {
	s := startStack(t, passwordAuth(), "", func(c *gateway.Config) {
		c.Limits = mqttconn.Limits{MaxPending: 2, MaxPendingPerSource: 2, ConnectTimeout: 500 * time.Millisecond}
	})
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.Addr)
		require.NoError(t, err)
		defer c.Close()
		idle = append(idle, c)
	}
	require.Eventually(t, func() bool { return s.Gateway.Len() == 2 }, 5*time.Second, 5*time.Millisecond)
	third, err := net.Dial("tcp", s.Addr)
	require.NoError(t, err)
	defer third.Close()
	start := time.Now()
	closedWithin(t, third, 300*time.Millisecond)
	require.Less(t, time.Since(start), 300*time.Millisecond, "the third connection is closed at once")
	for _, c := range idle {
		closedWithin(t, c, 3*time.Second) // ConnectTimeout
	}
	require.Eventually(t, func() bool { return s.Gateway.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	// The slots are free again: a client connects.
	rawDial(t, s.Addr, "after", "alice")
}

// A TLS client that never completes its handshake is closed after
// ConnectTimeout, which includes the handshake.
func TestHandshakeTimeout(t *testing.T) {
	leaf := authtest.NewRootCA(t, "server-root").Leaf(t, "localhost", authtest.WithDNSNames("localhost"),
		authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	s := startStack(t, passwordAuth(), "", func(c *gateway.Config) {
		c.TLS = authtest.ServerTLSConfig(t, leaf)
		c.Limits.ConnectTimeout = 300 * time.Millisecond
	})
	c, err := net.Dial("tcp", s.Addr)
	require.NoError(t, err)
	defer c.Close()
	closedWithin(t, c, 3*time.Second)
}

// Goroutines: two per authenticated connection at most, none left after
// thousands of connections; the Manager's registry empties too.
func TestGoroutinesPerConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("thousands of connections")
	}
	s := startStack(t, passwordAuth(), "max_connections -1\n", nil)
	base := runtime.NumGoroutine()

	const held = 100
	var conns []*rawClient
	for i := range held {
		conns = append(conns, rawDial(t, s.Addr, "held-"+itoa(i), "alice"))
	}
	require.Eventually(t, func() bool { return s.Manager.Len() == held }, 5*time.Second, 5*time.Millisecond)
	require.LessOrEqual(t, runtime.NumGoroutine()-base, 2*held+5, "at most a goroutine pair per connection")
	for _, c := range conns {
		_, _ = (&packets.Disconnect{Properties: &packets.Properties{}}).WriteTo(c.c)
		_ = c.c.Close()
	}

	const total = 2000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range total {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", s.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			cp := packets.NewControlPacket(packets.CONNECT)
			cc := cp.Content.(*packets.Connect)
			cc.ClientID, cc.CleanStart = "many-"+itoa(i), true
			cc.Username, cc.UsernameFlag, cc.Password, cc.PasswordFlag = "bob", true, []byte("bob-pw"), true
			if _, err := cp.WriteTo(c); err != nil {
				t.Error(err)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			p, err := packets.ReadPacket(c)
			if err != nil || p.Type != packets.CONNACK {
				t.Errorf("client %d: %v", i, err)
				return
			}
			if i%2 == 0 { // half say goodbye, half just drop
				_, _ = (&packets.Disconnect{Properties: &packets.Properties{}}).WriteTo(c)
			}
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		return s.Gateway.Len() == 0 && s.Manager.Len() == 0 && runtime.NumGoroutine() <= base+2
	}, 10*time.Second, 10*time.Millisecond, "gateway %d, sessions %d, goroutines %d (base %d)",
		s.Gateway.Len(), s.Manager.Len(), runtime.NumGoroutine(), base)
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}
