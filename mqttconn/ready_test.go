package mqttconn_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// pipeListener hands Serve the server ends of net.Pipe connections: a
// Write on the client end returns only when the server has read all of
// it, so the test knows what crypto/tls has taken from the "socket".
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// dial returns the client end of a new connection to Serve.
func (l *pipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.conns <- server
	return client
}

// heldConn holds what the client's TLS writes while held, and writes it
// with one Write on release: records that arrive together.
type heldConn struct {
	net.Conn
	hold bool
	buf  bytes.Buffer
}

func (h *heldConn) Write(b []byte) (int, error) {
	if h.hold {
		return h.buf.Write(b)
	}
	return h.Conn.Write(b)
}

// release writes n of the held bytes (all when n < 0) in one Write.
func (h *heldConn) release(t *testing.T, n int) {
	t.Helper()
	if n < 0 {
		n = h.buf.Len()
	}
	_, err := h.Conn.Write(h.buf.Next(n))
	require.NoError(t, err)
}

// TestReadReady: records crypto/tls has already taken from the socket are
// read without waiting, one per call, and a record only partly received
// gives nothing and is read whole later: the temporary error ReadReady
// makes crypto/tls see is never kept as the connection's error. Before
// NewClient (the handshake may not be done) it reads nothing.
func TestReadReady(t *testing.T) {
	srv := newPassServer(t)
	defer func() { _ = srv.Close() }()

	ca := authtest.NewRootCA(t, "ReadReady CA")
	server := ca.Leaf(t, "localhost", authtest.WithDNSNames("localhost"), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	ln := newPipeListener()
	type step struct {
		got string
		err error
	}
	steps := make(chan step)
	next := make(chan struct{})
	handled := make(chan error, 1)
	handle := func(nc net.Conn) error {
		report := func(s string, err error) {
			steps <- step{s, err}
			<-next
		}
		buf := make([]byte, 64)
		n, err := mqttconn.ReadReady(nc, buf)
		report(string(buf[:n]), err) // before the handshake: nothing
		_ = nc.SetDeadline(time.Time{})
		n, err = nc.Read(buf) // the handshake and "a", the first record
		if err != nil {
			report("", err)
			return err
		}
		srv.NewClient(nc, &transport{closed: make(chan struct{})}, "test").Close()
		report(string(buf[:n]), nil)
		for range 4 { // "bb", "ccc", then nothing twice
			n, err = mqttconn.ReadReady(nc, buf)
			report(string(buf[:n]), err)
		}
		n, err = nc.Read(buf) // "d", written whole after part of it
		report(string(buf[:n]), err)
		n, err = nc.Read(buf) // the client's close_notify
		report(string(buf[:n]), err)
		return nil
	}
	// No session tickets: on a pipe the server's ticket would wait for a
	// client read that never comes.
	scfg := authtest.ServerTLSConfig(t, server)
	scfg.SessionTicketsDisabled = true
	go func() { handled <- srv.Serve(ln, scfg, handle) }()

	held := &heldConn{Conn: ln.dial()}
	ccfg := authtest.ClientTLSConfig(t, ca, "localhost", nil)
	ccfg.MinVersion = tls.VersionTLS13
	client := tls.Client(held, ccfg)
	defer func() { _ = client.Close() }()
	expect := func(want string) {
		t.Helper()
		select {
		case s := <-steps:
			require.NoError(t, s.err)
			require.Equal(t, want, s.got)
			next <- struct{}{}
		case <-time.After(10 * time.Second):
			t.Fatalf("the server did not read %q (it waited for the network)", want)
		}
	}
	expect("")
	require.NoError(t, client.Handshake())
	held.hold = true
	for _, s := range []string{"a", "bb", "ccc", "d"} {
		_, err := client.Write([]byte(s))
		require.NoError(t, err)
	}
	// Each record is 5 bytes of header, the data, its type and a tag of
	// 16: "a", "bb", "ccc" and 10 bytes of "d"'s record go in one write.
	held.release(t, 23+24+25+10)
	expect("a")
	expect("bb")
	expect("ccc")
	expect("")
	expect("")
	held.release(t, -1)
	expect("d")
	require.NoError(t, client.Close())
	select {
	case s := <-steps:
		require.ErrorIs(t, s.err, io.EOF, "the connection is intact: it ends with the client's close_notify")
		next <- struct{}{}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not read the close_notify")
	}
	_ = ln.Close()
	require.ErrorIs(t, <-handled, net.ErrClosed)
}
