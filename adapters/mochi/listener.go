package mochi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttauth/mqttauth/mqttconn"
)

// Listener is a mochi TCP listener, with TLS when it has a TLS
// configuration, served by the connection layer (mqttconn.Server.Serve):
// each accepted connection must complete the TLS handshake and send its
// CONNECT within Limits.ConnectTimeout, and at most Limits.MaxPending
// connections may be accepted and not yet authenticated, at most
// Limits.MaxPendingPerSource of them from one source (an IPv4 address, an
// IPv6 /64); beyond either a new connection is closed at once. All of it
// is counted in [Hook.Stats]. Create it with [Hook.Listener] and add it
// with srv.AddListener.
type Listener struct {
	h       *Hook
	id      string
	address string
	tls     *tls.Config
	// ctx is the context of its clients' authentication calls: cancelled
	// when mochi closes the listener, so that none holds mochi's Close.
	ctx    context.Context
	cancel context.CancelFunc

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
	ctx, cancel := context.WithCancel(h.ctx)
	return &Listener{h: h, id: id, address: address, tls: tlsConfig, ctx: ctx, cancel: cancel}
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

// Serve accepts connections through the connection layer until the
// listener is closed and hands each to mochi with establish.
func (l *Listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	ln, log := l.ln, l.log
	l.mu.Unlock()
	_ = l.h.conn.Serve(ln, l.tls, func(c net.Conn) error {
		err := establish(l.id, c)
		if err != nil && log != nil {
			// A refusal's deny record is the connection layer's (or the
			// Session's audit record): this is detail.
			log.Debug("client connection ended", "error", err)
		}
		if errors.Is(err, packets.ErrPacketTooLarge) {
			err = fmt.Errorf("%w: %w", mqttconn.ErrPacketTooLarge, err)
		}
		return err
	})
}

// Close stops accepting connections and closes the listener's clients:
// mochi's own close of its clients (DISCONNECT 0x8B for MQTT 5), then,
// through the connection layer (mqttconn.Server.CloseListener), every
// connection the listener accepted that mochi does not list yet (still
// authenticating, or judged and not yet added), and it cancels the
// context of its clients' authentication calls in flight: mochi's Close
// waits for each connection it has begun to establish, and such a one
// would otherwise be served after mochi's sweep and hold Close until its
// peer left.
func (l *Listener) Close(closeClients listeners.CloseFn) {
	closing := l.end.CompareAndSwap(false, true)
	if closing {
		l.cancel()
		closeClients(l.id)
	}
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	switch {
	case ln == nil:
	case closing:
		l.h.conn.CloseListener(ln)
	default:
		_ = ln.Close()
	}
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
// Limits.MaxPacketSize but neither the CONNECT deadline nor the pending
// bounds: prefer h.Listener(id, address, a.ServerTLSConfig(base)).
func TLSListener(id, address string, a ServerTLSConfigurer, base *tls.Config) *listeners.TCP {
	return listeners.NewTCP(listeners.Config{
		Type:      listeners.TypeTCP,
		ID:        id,
		Address:   address,
		TLSConfig: a.ServerTLSConfig(base),
	})
}
