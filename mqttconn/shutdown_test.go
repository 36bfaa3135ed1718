package mqttconn_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// transport records what the layer writes and when it closes.
type transport struct {
	mu     sync.Mutex
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func (t *transport) Write(b []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.out.Write(b)
	return nil
}

func (t *transport) ReadExchange() (mqttconn.Inbound, error) {
	return mqttconn.Inbound{}, errors.New("no exchange in this test")
}

func (t *transport) Close() { t.once.Do(func() { close(t.closed) }) }

func (t *transport) written() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.out.Bytes())
}

// newPassServer returns a Server whose Manager passes every client as
// user "u" and allows it everything.
func newPassServer(t *testing.T) *mqttconn.Server {
	t.Helper()
	discard := slog.New(slog.DiscardHandler)
	m, err := auth.NewManager(auth.Config{
		Authenticator: auth.AuthenticatorFunc(func(context.Context, *auth.Request) auth.Result {
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "u"}))
		}),
		Authorizer: auth.AllowAuthenticated,
		Logger:     discard,
	})
	require.NoError(t, err)
	srv, err := mqttconn.New(mqttconn.Config{Manager: m, Logger: discard})
	require.NoError(t, err)
	return srv
}

// TestShutdownClientConnectedAfterSweep: a client whose success CONNACK
// was being written when Shutdown swept the connected clients (its
// adapter calls Connected after the sweep) is disconnected with 0x8B at
// once, and Shutdown returns when it is gone, not at its deadline. The
// conformance suite's shutdown cases found the window on both adapters.
func TestShutdownClientConnectedAfterSweep(t *testing.T) {
	srv := newPassServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln, nil, func(nc net.Conn) error { return nc.Close() }) }()

	nc, peer := net.Pipe()
	defer func() { _ = peer.Close() }()
	tr := &transport{closed: make(chan struct{})}
	c := srv.NewClient(nc, tr, "test")
	r := c.Connect(context.Background(), &mqttconn.Connect{ProtocolVersion: mqttconn.V5, ClientID: "late", Username: "u", HasUsername: true})
	require.True(t, r.OK, "Connect refused: %+v", r)

	// A deadline far beyond the test's own pace: Shutdown must return
	// because the client is gone, and a loaded machine must not reach it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	require.ErrorIs(t, <-served, mqttconn.ErrClosed)
	time.Sleep(100 * time.Millisecond) // let the sweep pass before the CONNACK is "written"
	c.Connected()

	select {
	case <-tr.closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the client connected after the sweep was not closed")
	}
	c.Close() // what the adapter does when the connection has ended
	require.NoError(t, <-shut, "Shutdown waited for its deadline")
	require.Equal(t, []byte{0xe0, 2, byte(auth.ServerShuttingDown), 0}, tr.written(), "want DISCONNECT 0x8B")
}

// serveTwo serves two listeners on 127.0.0.1 with handle; each channel
// gets its Serve's error.
func serveTwo(t *testing.T, srv *mqttconn.Server, handle func(net.Conn) error) (lnA, lnB net.Listener, servedA, servedB chan error) {
	t.Helper()
	var err error
	lnA, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	lnB, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	servedA, servedB = make(chan error, 1), make(chan error, 1)
	go func() { servedA <- srv.Serve(lnA, nil, handle) }()
	go func() { servedB <- srv.Serve(lnB, nil, handle) }()
	return lnA, lnB, servedA, servedB
}

// TestShutdownListener: one listener of a server is shut down while the
// other goes on: its connected MQTT 5 client gets DISCONNECT 0x8B, the
// other listener's client nothing, and the other listener still accepts.
func TestShutdownListener(t *testing.T) {
	srv := newPassServer(t)
	defer func() { _ = srv.Close() }()
	accepted := make(chan struct{}, 4)
	handle := func(nc net.Conn) error { accepted <- struct{}{}; return nc.Close() }
	lnA, lnB, servedA, servedB := serveTwo(t, srv, handle)

	connect := func(listener string) (*mqttconn.Client, *transport) {
		nc, peer := net.Pipe()
		t.Cleanup(func() { _ = peer.Close() })
		tr := &transport{closed: make(chan struct{})}
		c := srv.NewClient(nc, tr, listener)
		r := c.Connect(context.Background(), &mqttconn.Connect{ProtocolVersion: mqttconn.V5, ClientID: listener, Username: "u", HasUsername: true})
		require.True(t, r.OK, "Connect refused: %+v", r)
		c.Connected()
		return c, tr
	}
	a, trA := connect("A")
	b, trB := connect("B")
	go func() { <-trA.closed; a.Close() }() // the adapter's part

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	require.NoError(t, srv.ShutdownListener(ctx, lnA, "A"))
	require.ErrorIs(t, <-servedA, mqttconn.ErrClosed, "listener A's Serve returned")
	require.Equal(t, []byte{0xe0, 2, byte(auth.ServerShuttingDown), 0}, trA.written(), "want DISCONNECT 0x8B")
	select {
	case <-trB.closed:
		t.Fatal("the other listener's client was closed")
	default:
	}
	require.Empty(t, trB.written())
	require.Equal(t, 1, srv.Len())
	nc, err := net.Dial("tcp", lnB.Addr().String())
	require.NoError(t, err)
	_ = nc.Close()
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("listener B no longer accepts")
	}
	b.Close()
	require.NoError(t, srv.Shutdown(ctx))
	require.ErrorIs(t, <-servedB, mqttconn.ErrClosed)
}

// TestCloseListener: one listener closed at once closes every connection
// it accepted whose handler runs, CONNECT read or not, and its Serve
// returns ErrClosed; the other listener's connection stays and it still
// accepts.
func TestCloseListener(t *testing.T) {
	srv := newPassServer(t)
	defer func() { _ = srv.Close() }()
	// handle holds each connection until it is closed, as a broker's
	// connection loop does; the second connection on A reads its
	// "CONNECT" (NewClient) first.
	handled := make(chan string, 8)
	handle := func(nc net.Conn) error {
		b := make([]byte, 1)
		if _, err := nc.Read(b); err == nil && b[0] == 'C' {
			c := srv.NewClient(nc, &transport{closed: make(chan struct{})}, "A")
			defer c.Close()
		}
		_, err := io.Copy(io.Discard, nc)
		handled <- nc.LocalAddr().String()
		return err
	}
	lnA, lnB, servedA, servedB := serveTwo(t, srv, handle)

	dial := func(ln net.Listener, first string) net.Conn {
		nc, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { _ = nc.Close() })
		_, err = nc.Write([]byte(first))
		require.NoError(t, err)
		return nc
	}
	silent := dial(lnA, "x")
	client := dial(lnA, "C")
	other := dial(lnB, "x")
	require.Eventually(t, func() bool { return srv.Stats().Pending == 3 }, 5*time.Second, 10*time.Millisecond)

	srv.CloseListener(lnA)
	require.ErrorIs(t, <-servedA, mqttconn.ErrClosed)
	for _, nc := range []net.Conn{silent, client} {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := nc.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF, "listener A's connection was closed")
	}
	for range 2 {
		require.Equal(t, lnA.Addr().String(), <-handled)
	}
	_ = other.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := other.Read(make([]byte, 1))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "listener B's connection stays open: %v", err)
	dial(lnB, "x")
	require.Eventually(t, func() bool { return srv.Stats().Pending == 2 }, 5*time.Second, 10*time.Millisecond, "listener B still accepts")
	_ = lnB.Close()
	require.Error(t, <-servedB)
}
