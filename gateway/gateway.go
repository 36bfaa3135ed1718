package gateway

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// Defaults for the zero fields of a [Config]. The limits on clients that
// have not authenticated are the connection layer's (mqttconn.Limits), the
// same as every adapter's.
const (
	// DefaultUpstreamTimeout bounds dialing the broker and waiting for its
	// CONNACK.
	DefaultUpstreamTimeout = 10 * time.Second
	// DefaultTopicAliasMaximum is the Topic Alias Maximum the gateway
	// announces to MQTT v5 clients in CONNACK.
	DefaultTopicAliasMaximum = 64
)

// Config configures a [Gateway].
type Config struct {
	// Manager creates the session of every client. Required.
	Manager *auth.Manager
	// Upstream is the broker's address (host:port). Required.
	Upstream string
	// UpstreamTLS, when set, makes the broker leg TLS with this
	// configuration (for example with the gateway's client certificate,
	// which the broker then requires). Nil means plain TCP: bind the broker
	// to loopback or a private network.
	UpstreamTLS *tls.Config
	// Dialer dials the broker; nil means a net.Dialer.
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
	// UpstreamProtocol is the MQTT version spoken to the broker: the
	// client's (UpstreamAuto, the zero value), 3.1.1 for every client
	// (UpstreamV311: MQTT 5 clients are translated, for brokers that speak
	// only 3.1.1), or 5 (UpstreamV5: MQTT 3.1.1 clients are refused). See
	// the package documentation's TRANSLATION section.
	UpstreamProtocol UpstreamProtocol
	// UpstreamPassword, when set, is the Password of every CONNECT the
	// gateway sends the broker (with the principal's user name): a secret
	// the gateway shares with the broker, for brokers that require a
	// password with a user name (RabbitMQ) and to keep whoever else
	// reaches the broker from claiming identities. Never logged.
	UpstreamPassword []byte
	// ProxyProtocol makes the gateway send a PROXY protocol v2 header with
	// the client's address first on the broker leg (mosquitto 2.1 and EMQX
	// read it when configured to). Off by default: a broker that does not
	// expect it refuses the connection.
	ProxyProtocol bool
	// TLS, when set, makes client connections TLS with this configuration:
	// use (*x509auth.Authenticator).ServerTLSConfig for X.509 clients. Nil
	// means plain TCP.
	TLS *tls.Config
	// Listener names the listener in auth.Request.Listener.
	Listener string

	// Limits protect the gateway from clients that have not authenticated
	// (packet size on both legs, the TLS handshake and CONNECT deadline,
	// the write timeout on both legs, the bound on unauthenticated
	// connections and its per-source share); zero fields mean the
	// connection layer's defaults.
	Limits mqttconn.Limits
	// UpstreamTimeout bounds dialing the broker and its CONNACK; zero
	// means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// TopicAliasMaximum is announced to MQTT v5 clients; the gateway
	// resolves their aliases itself (it must, to authorize the topic) and
	// sends full topic names upstream. Zero means DefaultTopicAliasMaximum.
	TopicAliasMaximum uint16

	// Coordination, when set, makes this gateway and the others in front
	// of the same MQTT 3.1.1 broker or cluster tell each other through the
	// broker which client identifiers they admit, so that an MQTT 5 client
	// whose session a connection through another gateway took over gets
	// DISCONNECT 0x8E rather than 0x80. Nil (the default) means none. It
	// needs UpstreamProtocol UpstreamV311. See [Coordination] and the
	// package documentation's TAKEOVER section.
	Coordination *Coordination

	// Logger receives the gateway's records; nil means slog.Default().
	// Secrets are never logged.
	Logger *slog.Logger
}

// Errors of the gateway, for errors.Is.
var (
	// ErrPacketTooLarge: a packet declared a size above Limits.MaxPacketSize.
	ErrPacketTooLarge = mqttconn.ErrPacketTooLarge
	// ErrMalformed: a packet could not be decoded, or broke MQTT's rules
	// for its fields.
	ErrMalformed = mqttconn.ErrMalformed
	// ErrUnsupportedVersion: CONNECT named a protocol other than MQTT
	// 3.1.1 or 5.
	ErrUnsupportedVersion = errors.New("gateway: unsupported protocol version")
	// ErrUpstream: the broker could not be reached or refused the
	// gateway's CONNECT.
	ErrUpstream = errors.New("gateway: upstream broker")
	// ErrClosed is returned by Serve after Close or Shutdown.
	ErrClosed = errors.New("gateway: closed")
)

// Gateway accepts MQTT clients, authenticates them through an
// [auth.Session] and relays the authenticated ones to the upstream broker.
// Create it with [New]; run it with [Gateway.Serve].
type Gateway struct {
	cfg  Config
	m    *auth.Manager
	log  *slog.Logger
	conn *mqttconn.Server
	lim  mqttconn.Limits // the layer's, defaults applied

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{}
	wg     sync.WaitGroup
	n      atomic.Int64 // connections being served

	draining atomic.Bool // Drain or Shutdown has begun (drain.go)

	coord        *coordinator // Config.Coordination, or nil
	coordStarted bool         // under mu
}

// New validates cfg and returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Manager == nil {
		return nil, errors.New("gateway: Config.Manager is required")
	}
	if cfg.Upstream == "" {
		return nil, errors.New("gateway: Config.Upstream is required")
	}
	if cfg.UpstreamTimeout < 0 {
		return nil, errors.New("gateway: negative Config.UpstreamTimeout")
	}
	switch cfg.UpstreamProtocol {
	case UpstreamAuto, UpstreamV311, UpstreamV5:
	default:
		return nil, fmt.Errorf("%w: %d", ErrUpstreamProtocol, cfg.UpstreamProtocol)
	}
	cfg.UpstreamTimeout = cmp.Or(cfg.UpstreamTimeout, DefaultUpstreamTimeout)
	cfg.TopicAliasMaximum = cmp.Or(cfg.TopicAliasMaximum, DefaultTopicAliasMaximum)
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	log := cmp.Or(cfg.Logger, slog.Default())
	lc, err := mqttconn.New(mqttconn.Config{Manager: cfg.Manager, Limits: cfg.Limits, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{
		cfg:   cfg,
		m:     cfg.Manager,
		log:   log,
		conn:  lc,
		lim:   lc.Limits(),
		conns: make(map[*conn]struct{}),
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if cfg.Coordination != nil {
		if g.coord, err = newCoordinator(g, *cfg.Coordination); err != nil {
			g.cancel()
			return nil, err
		}
	}
	return g, nil
}

// Serve accepts connections on ln through the connection layer
// (admission with its per-source share, the deadline for the TLS handshake
// and CONNECT, accept backoff) until ln fails or the gateway is closed,
// and serves each one on its own goroutine (a second one relays the
// broker's packets once the client is authenticated). It returns ErrClosed
// after Close or Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	if !g.startCoordination() {
		_ = ln.Close()
		return ErrClosed
	}
	err := g.conn.Serve(ln, g.cfg.TLS, func(nc net.Conn) error {
		c := &conn{g: g, nc: nc}
		if !g.track(c) {
			_ = nc.Close()
			return ErrClosed
		}
		defer g.untrack(c)
		return c.serve()
	})
	if errors.Is(err, mqttconn.ErrClosed) || g.isClosed() {
		return ErrClosed
	}
	return err
}

// Shutdown shuts the gateway down in order through the connection layer
// (mqttconn.Server.Shutdown): it stops accepting, sends DISCONNECT 0x8B to
// every connected MQTT 5 client, lets the authentication exchanges in
// flight finish until ctx ends, and then closes what is left (both legs).
// It returns ctx's error when it had to cut exchanges short.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	err := g.conn.Shutdown(ctx)
	_ = g.Close()
	return err
}

// Drain is Shutdown with DISCONNECT 0x9C (Use another server) and
// serverReference as the Server Reference (see mqttconn.Server.Drain), so
// that clients move to another gateway at once.
func (g *Gateway) Drain(ctx context.Context, serverReference string) error {
	g.draining.Store(true)
	err := g.conn.Drain(ctx, serverReference)
	_ = g.Close()
	return err
}

// Stats returns the connection layer's counts: connections refused before
// authentication, Wills dropped.
func (g *Gateway) Stats() mqttconn.Stats { return g.conn.Stats() }

// startCoordination starts the control connection (Config.Coordination)
// at the first Serve; it reports false when the gateway is closed.
func (g *Gateway) startCoordination() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.coord != nil && !g.coordStarted {
		g.coordStarted = true
		g.coord.start(g.ctx)
	}
	return true
}

func (g *Gateway) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

func (g *Gateway) track(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	g.n.Add(1)
	return true
}

func (g *Gateway) untrack(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	g.n.Add(-1)
	g.wg.Done()
}

// Len returns the number of client connections being served, authenticated
// or not. It falls to zero when every connection has ended.
func (g *Gateway) Len() int { return int(g.n.Load()) }

// Close stops the listeners given to Serve, closes every connection (both
// legs) and waits until their goroutines have ended. Prefer Shutdown.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		g.wg.Wait()
		g.waitCoordination()
		return nil
	}
	g.closed = true
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	_ = g.conn.Close() // closes the listeners given to Serve
	g.cancel()
	for _, c := range conns {
		c.closeLegs()
	}
	g.wg.Wait()
	g.waitCoordination()
	return nil
}

// waitCoordination waits for the control connection's goroutines, once
// the gateway is closed.
func (g *Gateway) waitCoordination() {
	g.mu.Lock()
	started := g.coordStarted
	g.mu.Unlock()
	if started {
		g.coord.wait()
	}
}
