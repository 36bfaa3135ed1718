package mochi

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Defaults for the limits of [Config] that protect the server from peers
// that have not authenticated.
const (
	// DefaultMaxPacketSize is 1 MiB: large enough for any CONNECT this
	// module's authenticators accept (Authentication Data is bounded by
	// auth.DefaultMaxDataLength, certificates travel in TLS) and for
	// ordinary telemetry, and small enough that MaxPending connections that
	// each declare one packet of that size cost at most 256 MiB of heap.
	// mochi's own default, 0, lets a single CONNECT that declares 256 MiB
	// allocate 256 MiB before any hook runs.
	DefaultMaxPacketSize uint32 = 1 << 20
	// DefaultConnectTimeout bounds the TLS handshake and the CONNECT read of
	// a new connection: a device on a slow link takes a few seconds; mochi
	// itself waits forever.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxPending bounds the connections that have not authenticated
	// yet. At DefaultMaxPacketSize each, they pin at most 256 MiB for at most
	// DefaultConnectTimeout (plus the authentication exchange).
	DefaultMaxPending = 256
)

// Stats counts the connections the hook's listeners closed before they
// authenticated. The counts only grow; they are for logs and metrics.
type Stats struct {
	// Pending is the number of connections accepted and not yet through
	// OnConnect now.
	Pending int64
	// OverPending counts connections closed at accept because MaxPending
	// connections were already pending.
	OverPending uint64
	// TimedOut counts connections that did not complete the TLS handshake
	// and send CONNECT within ConnectTimeout.
	TimedOut uint64
	// TooLarge counts connections whose first packet declared more than the
	// maximum packet size; the packet was not read.
	TooLarge uint64
	// Invalid counts the other connections that failed before CONNECT was
	// read: a failed TLS handshake, a first packet that is not CONNECT, a
	// malformed CONNECT, or a peer that closed.
	Invalid uint64
}

type stats struct {
	overPending, timedOut, tooLarge, invalid atomic.Uint64
}

// Stats returns the counts of connections refused before authentication.
func (h *Hook) Stats() Stats {
	return Stats{
		Pending:     h.pendingConns.Load(),
		OverPending: h.stats.overPending.Load(),
		TimedOut:    h.stats.timedOut.Load(),
		TooLarge:    h.stats.tooLarge.Load(),
		Invalid:     h.stats.invalid.Load(),
	}
}

// Listener is a mochi TCP listener, with TLS when it has a TLS
// configuration, that protects the server from peers that have not
// authenticated: each accepted connection must complete the TLS handshake
// and send its CONNECT within Config.ConnectTimeout, and at most
// Config.MaxPending connections may be accepted and not yet authenticated,
// beyond which a new connection is closed at once. Both are counted in
// [Hook.Stats]. Create it with [Hook.Listener] and add it with
// srv.AddListener.
type Listener struct {
	h       *Hook
	id      string
	address string
	tls     *tls.Config

	mu  sync.Mutex
	ln  net.Listener
	log *slog.Logger
	end atomic.Bool
}

var _ listeners.Listener = (*Listener)(nil)

// Listener returns a listener with id on address (host:port). When
// tlsConfig is not nil connections are TLS; for mTLS with x509auth pass
// (*x509auth.Authenticator).ServerTLSConfig(base), which verifies client
// certificates against the trust store as it is at each handshake. The
// handshake is complete when the hook sees the client, so the session's
// Request carries the connection state.
func (h *Hook) Listener(id, address string, tlsConfig *tls.Config) *Listener {
	return &Listener{h: h, id: id, address: address, tls: tlsConfig}
}

// ID returns the listener's id.
func (l *Listener) ID() string { return l.id }

// Address returns the address the listener is bound to, once initialized.
func (l *Listener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Protocol returns "tcp".
func (l *Listener) Protocol() string { return "tcp" }

// Init opens the network address.
func (l *Listener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.mu.Unlock()
	return nil
}

// Serve accepts connections until the listener is closed and hands each to
// mochi with establish.
func (l *Listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	ln, log := l.ln, l.log
	l.mu.Unlock()
	h := l.h
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does, rather than stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if log != nil {
				log.Warn("accept failed; retrying", "error", err, "delay", backoff)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if l.end.Load() {
			_ = conn.Close()
			return
		}
		if h.pendingConns.Add(1) > h.maxPending {
			h.pendingConns.Add(-1)
			h.stats.overPending.Add(1)
			_ = conn.Close()
			continue
		}
		g := &guardConn{Conn: conn, h: h}
		_ = conn.SetDeadline(time.Now().Add(h.connectTimeout))
		var c net.Conn = g
		if l.tls != nil {
			c = tls.Server(g, l.tls)
		}
		go func() {
			err := establish(l.id, c)
			g.release()
			if err != nil && !g.isConnected() {
				h.countRefused(err)
			}
			if err != nil && log != nil {
				log.Warn("client connection ended", "error", err)
			}
		}()
	}
}

// countRefused counts a connection that ended before its CONNECT was
// judged.
func (h *Hook) countRefused(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		h.stats.timedOut.Add(1)
	case errors.Is(err, packets.ErrPacketTooLarge):
		h.stats.tooLarge.Add(1)
	default:
		h.stats.invalid.Add(1)
	}
}

// Close stops accepting connections and closes the listener's clients.
func (l *Listener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) {
		closeClients(l.id)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		_ = l.ln.Close()
	}
}

// guardConn is an accepted connection until it has authenticated: it holds
// one of the hook's pending slots and the deadline for its CONNECT.
type guardConn struct {
	net.Conn
	h    *Hook
	once sync.Once
	conn atomic.Bool // CONNECT read: the deadline is cleared
}

// guardOf returns the guardConn under conn (a *tls.Conn's too), or nil.
func guardOf(conn net.Conn) *guardConn {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	g, _ := conn.(*guardConn)
	return g
}

// connected clears the deadline once the CONNECT has been read.
func (g *guardConn) connected() {
	if g.conn.CompareAndSwap(false, true) {
		_ = g.Conn.SetDeadline(time.Time{})
	}
}

func (g *guardConn) isConnected() bool { return g.conn.Load() }

// release frees the connection's pending slot (once).
func (g *guardConn) release() {
	g.once.Do(func() { g.h.pendingConns.Add(-1) })
}

// ServerTLSConfigurer makes the server TLS configuration of a listener from
// a base that supplies the server certificate. *x509auth.Authenticator is
// one: its configuration requires a client certificate and verifies it
// against the trust store as it is at each handshake.
type ServerTLSConfigurer interface {
	ServerTLSConfig(base *tls.Config) *tls.Config
}

// TLSListener returns mochi's own TCP listener with id and address whose TLS
// configuration is a.ServerTLSConfig(base). It has the packet size limit of
// Config.MaxPacketSize but neither the CONNECT deadline nor the pending
// bound: prefer h.Listener(id, address, a.ServerTLSConfig(base)).
func TLSListener(id, address string, a ServerTLSConfigurer, base *tls.Config) *listeners.TCP {
	return listeners.NewTCP(listeners.Config{
		Type:      listeners.TypeTCP,
		ID:        id,
		Address:   address,
		TLSConfig: a.ServerTLSConfig(base),
	})
}
