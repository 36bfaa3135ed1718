package mqttconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth"
)

// fakeConn records the read deadlines the layer sets.
type fakeConn struct {
	net.Conn
	mu        sync.Mutex
	deadlines []time.Time
}

func (f *fakeConn) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.deadlines = append(f.deadlines, t)
	f.mu.Unlock()
	return nil
}
func (f *fakeConn) SetDeadline(time.Time) error { return nil }
func (f *fakeConn) RemoteAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1} }

// fakeTransport answers the exchange from a script and records writes.
type fakeTransport struct {
	mu      sync.Mutex
	written [][]byte
	reads   []func() (Inbound, error)
	closed  bool
}

func (f *fakeTransport) Write(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written = append(f.written, b)
	return nil
}

func (f *fakeTransport) ReadExchange() (Inbound, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reads) == 0 {
		return Inbound{}, errors.New("no more packets")
	}
	r := f.reads[0]
	f.reads = f.reads[1:]
	return r()
}

func (f *fakeTransport) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// challenge asks for one more round, then passes.
var challenge = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
	if req.Step == 0 {
		return auth.ContinueResult([]byte("c"), nil)
	}
	return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "u"}))
})

var willTopics = auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	if p != nil && (a.Kind == auth.Connect || a.Topic == "ok/will") {
		return auth.Allow("r")
	}
	return auth.Deny
})

func newServer(t *testing.T, cfg auth.Config) *Server {
	t.Helper()
	cfg.Authenticator = auth.Chain{challenge}
	cfg.Authorizer = willTopics
	cfg.Logger = slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	m, err := auth.NewManager(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	s, err := New(Config{Manager: m, Logger: cfg.Logger})
	require.NoError(t, err)
	return s
}

// The answer to a challenge is read with the deadline of the Manager's
// ExchangeTimeout, however long it is: the adapters read with a fixed 35 s
// that cut a configured 60 s.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExchangeDeadlineFromManager(t *testing.T) {
	for _, d := range []time.Duration{2 * time.Second, time.Minute, 10 * time.Minute} {
		s := newServer(t, auth.Config{ExchangeTimeout: d})
		nc := &fakeConn{}
		tr := &fakeTransport{reads: []func() (Inbound, error){func() (Inbound, error) {
			return Inbound{Type: TypeAuth, Auth: auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "M", Data: []byte("a")}}, nil
		}}}
		c := s.NewClient(nc, tr, "l")
		start := time.Now()
		res := c.Connect(context.Background(), &Connect{ProtocolVersion: V5, ClientID: "x", AuthMethod: "M"})
		require.True(t, res.OK, "%v", res.Err)
		require.NotEmpty(t, nc.deadlines)
		got := nc.deadlines[0].Sub(start)
		require.InDelta(t, float64(d+exchangeReadMargin), float64(got), float64(time.Second), "deadline for ExchangeTimeout %v", d)
		c.Close()
	}
}

// A read that times out refuses with 0x87, and a Will topic the principal
// may not publish refuses the CONNECT with 0x87.
func TestConnectRefusals(t *testing.T) {
	s := newServer(t, auth.Config{})
	tr := &fakeTransport{reads: []func() (Inbound, error){func() (Inbound, error) { return Inbound{}, timeoutErr{} }}}
	c := s.NewClient(&fakeConn{}, tr, "l")
	res := c.Connect(context.Background(), &Connect{ProtocolVersion: V5, ClientID: "x", AuthMethod: "M"})
	require.False(t, res.OK)
	require.ErrorIs(t, res.Err, auth.ErrTimeout)
	require.Equal(t, []byte{0x20, 3, 0, 0x87, 0}, tr.written[len(tr.written)-1])
	c.Close()

	for _, v := range []byte{V5, V311} {
		tr = &fakeTransport{reads: []func() (Inbound, error){func() (Inbound, error) {
			return Inbound{Type: TypeAuth, Auth: auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "M"}}, nil
		}}}
		c = s.NewClient(&fakeConn{}, tr, "l")
		cp := &Connect{ProtocolVersion: v, ClientID: "x", AuthMethod: "M", Will: &Will{Topic: "forbidden"}}
		if v == V311 {
			cp.AuthMethod = "" // 3.1.1 has no enhanced authentication
		}
		res = c.Connect(context.Background(), cp)
		if v == V311 {
			// The authenticator asks to continue, which a client that named
			// no method cannot: refused with 0x87, return code 5.
			require.False(t, res.OK)
			require.Equal(t, []byte{0x20, 2, 0, 5}, tr.written[len(tr.written)-1])
			c.Close()
			continue
		}
		require.False(t, res.OK)
		require.ErrorIs(t, res.Err, ErrWillNotAuthorized)
		require.Equal(t, auth.NotAuthorized, res.Code)
		c.Close()
	}
	require.EqualValues(t, 0, s.Len())
}

// Shutdown disconnects connected MQTT 5 clients with 0x8B and refuses an
// exchange that passes meanwhile with 0x88; Drain uses 0x9C.
func TestShutdown(t *testing.T) {
	for _, drain := range []bool{false, true} {
		s := newServer(t, auth.Config{})
		connected := s.NewClient(&fakeConn{}, &fakeTransport{reads: []func() (Inbound, error){func() (Inbound, error) {
			return Inbound{Type: TypeAuth, Auth: auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "M"}}, nil
		}}}, "l")
		require.True(t, connected.Connect(context.Background(), &Connect{ProtocolVersion: V5, ClientID: "a", AuthMethod: "M"}).OK)
		connected.Connected()
		ctr := connected.t.(*fakeTransport)

		release := make(chan struct{})
		midTr := &fakeTransport{reads: []func() (Inbound, error){func() (Inbound, error) {
			<-release
			return Inbound{Type: TypeAuth, Auth: auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "M"}}, nil
		}}}
		mid := s.NewClient(&fakeConn{}, midTr, "l")
		done := make(chan Result)
		go func() {
			done <- mid.Connect(context.Background(), &Connect{ProtocolVersion: V5, ClientID: "b", AuthMethod: "M"})
		}()

		shut := make(chan error)
		go func() {
			if drain {
				shut <- s.Drain(context.Background(), "elsewhere:1883")
			} else {
				shut <- s.Shutdown(context.Background())
			}
		}()
		require.Eventually(t, func() bool { ctr.mu.Lock(); defer ctr.mu.Unlock(); return ctr.closed }, 5*time.Second, time.Millisecond)
		last := ctr.written[len(ctr.written)-1]
		require.Equal(t, byte(0xE0), last[0])
		if drain {
			require.Equal(t, byte(0x9C), last[2])
			require.Contains(t, string(last), "elsewhere:1883")
		} else {
			require.Equal(t, byte(0x8B), last[2])
		}
		connected.Close()
		close(release)
		res := <-done
		require.False(t, res.OK)
		require.ErrorIs(t, res.Err, ErrShuttingDown)
		if drain {
			require.Equal(t, auth.UseAnotherServer, res.Code)
		} else {
			require.Equal(t, auth.ServerUnavailable, res.Code)
		}
		mid.Close()
		require.NoError(t, <-shut)
	}
}

// Shutdown returns ctx's error when clients do not go in time.
func TestShutdownDeadline(t *testing.T) {
	s := newServer(t, auth.Config{})
	c := s.NewClient(&fakeConn{}, &fakeTransport{}, "l") // never judged, never closed
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
	require.True(t, c.t.(*fakeTransport).closed, "what is left is closed")
	c.Close()
}

// A read error during the exchange refuses the client once: one CONNACK
// (0x81 for a malformed answer, none when the client just went away),
// never a success.
func TestExchangeReadErrors(t *testing.T) {
	s := newServer(t, auth.Config{})
	for _, tc := range []struct {
		name string
		err  error
		want [][]byte
	}{
		{"eof", errors.New("EOF"), [][]byte{}},
		{"malformed", fmt.Errorf("%w: reserved flags", ErrMalformed), [][]byte{{0x20, 3, 0, 0x81, 0}}},
		{"too_large", fmt.Errorf("%w: 2 MiB", ErrPacketTooLarge), [][]byte{{0x20, 3, 0, 0x95, 0}}},
		{"timeout", timeoutErr{}, [][]byte{{0x20, 3, 0, 0x87, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &fakeTransport{reads: []func() (Inbound, error){func() (Inbound, error) { return Inbound{}, tc.err }}}
			c := s.NewClient(&fakeConn{}, tr, "l")
			res := c.Connect(context.Background(), &Connect{ProtocolVersion: V5, ClientID: "x", AuthMethod: "M"})
			require.False(t, res.OK)
			require.Error(t, res.Err)
			require.Equal(t, tc.want, tr.written[1:], "after the AUTH 0x18") // written[0] is the challenge
			c.Close()
		})
	}
}
