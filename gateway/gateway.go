package gateway

import (
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
)

// Defaults for the zero fields of a [Config].
const (
	// DefaultMaxPacketSize bounds every packet on both legs (fixed header
	// included): 1 MiB.
	DefaultMaxPacketSize = 1 << 20
	// DefaultHandshakeTimeout bounds the client's TLS handshake.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultConnectTimeout bounds the wait for the client's CONNECT after
	// the connection (and TLS handshake) is established.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultExchangeReadTimeout bounds each wait for the client's AUTH
	// answer during a CONNECT exchange. It is longer than
	// auth.DefaultExchangeTimeout so that the Session's own timer, which
	// sends CONNACK 0x87, normally fires first.
	DefaultExchangeReadTimeout = auth.DefaultExchangeTimeout + 5*time.Second
	// DefaultUpstreamTimeout bounds dialing the broker and waiting for its
	// CONNACK.
	DefaultUpstreamTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds each write on either leg, so that a peer
	// that stops reading releases the connection.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultMaxPending bounds the connections that have not yet been
	// authenticated (TLS handshake, CONNECT, AUTH exchange, upstream
	// CONNECT). Connections beyond it are closed at once.
	DefaultMaxPending = 1024
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

	// MaxPacketSize bounds every packet on both legs, fixed header
	// included; a larger declared Remaining Length is refused before
	// anything is allocated. Zero means DefaultMaxPacketSize.
	MaxPacketSize int
	// HandshakeTimeout, ConnectTimeout, ExchangeReadTimeout,
	// UpstreamTimeout and WriteTimeout: zero means the Default… constant.
	HandshakeTimeout    time.Duration
	ConnectTimeout      time.Duration
	ExchangeReadTimeout time.Duration
	UpstreamTimeout     time.Duration
	WriteTimeout        time.Duration
	// MaxPending bounds the connections not yet authenticated; zero means
	// DefaultMaxPending.
	MaxPending int
	// TopicAliasMaximum is announced to MQTT v5 clients; the gateway
	// resolves their aliases itself (it must, to authorize the topic) and
	// sends full topic names upstream. Zero means DefaultTopicAliasMaximum.
	TopicAliasMaximum uint16

	// Logger receives the gateway's records; nil means slog.Default().
	// Secrets are never logged.
	Logger *slog.Logger
}

// Errors of the gateway, for errors.Is.
var (
	// ErrPacketTooLarge: a packet declared a size above Config.MaxPacketSize.
	ErrPacketTooLarge = errors.New("gateway: packet too large")
	// ErrMalformed: a packet could not be decoded.
	ErrMalformed = errors.New("gateway: malformed packet")
	// ErrUnsupportedVersion: CONNECT named a protocol other than MQTT
	// 3.1.1 or 5.
	ErrUnsupportedVersion = errors.New("gateway: unsupported protocol version")
	// ErrUpstream: the broker could not be reached or refused the
	// gateway's CONNECT.
	ErrUpstream = errors.New("gateway: upstream broker")
	// ErrClosed is returned by Serve after Close.
	ErrClosed = errors.New("gateway: closed")
)

// Gateway accepts MQTT clients, authenticates them through an
// [auth.Session] and relays the authenticated ones to the upstream broker.
// Create it with [New]; run it with [Gateway.Serve].
type Gateway struct {
	cfg     Config
	m       *auth.Manager
	log     *slog.Logger
	pending chan struct{} // semaphore of not-yet-authenticated connections

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[*conn]struct{}
	wg     sync.WaitGroup
	n      atomic.Int64 // connections being served
}

// New validates cfg and returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Manager == nil {
		return nil, errors.New("gateway: Config.Manager is required")
	}
	if cfg.Upstream == "" {
		return nil, errors.New("gateway: Config.Upstream is required")
	}
	if cfg.MaxPacketSize < 0 || cfg.HandshakeTimeout < 0 || cfg.ConnectTimeout < 0 ||
		cfg.ExchangeReadTimeout < 0 || cfg.UpstreamTimeout < 0 || cfg.WriteTimeout < 0 || cfg.MaxPending < 0 {
		return nil, errors.New("gateway: negative limit in Config")
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.MaxPacketSize < 16 || cfg.MaxPacketSize > 268435460 {
		return nil, fmt.Errorf("gateway: Config.MaxPacketSize %d out of range [16, 268435460]", cfg.MaxPacketSize)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&cfg.ConnectTimeout, DefaultConnectTimeout)
	def(&cfg.ExchangeReadTimeout, DefaultExchangeReadTimeout)
	def(&cfg.UpstreamTimeout, DefaultUpstreamTimeout)
	def(&cfg.WriteTimeout, DefaultWriteTimeout)
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.TopicAliasMaximum == 0 {
		cfg.TopicAliasMaximum = DefaultTopicAliasMaximum
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	g := &Gateway{
		cfg:     cfg,
		m:       cfg.Manager,
		log:     cfg.Logger,
		pending: make(chan struct{}, cfg.MaxPending),
		lns:     make(map[net.Listener]struct{}),
		conns:   make(map[*conn]struct{}),
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

// Serve accepts connections on ln until ln fails or the gateway is closed,
// and serves each one on its own goroutine (a second one relays the
// broker's packets once the client is authenticated). It returns ErrClosed
// after Close.
func (g *Gateway) Serve(ln net.Listener) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	g.lns[ln] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.lns, ln)
		g.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if g.isClosed() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("gateway: accept: %w", err)
			}
			// Out of file descriptors, a connection reset before accept:
			// wait a little and go on, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			g.log.LogAttrs(g.ctx, slog.LevelWarn, "gateway: accept failed", slog.String("err", err.Error()))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case g.pending <- struct{}{}:
		default:
			// Too many connections are authenticating: refuse at once,
			// before any TLS or MQTT work.
			_ = nc.Close()
			g.log.LogAttrs(g.ctx, slog.LevelWarn, "gateway: too many unauthenticated connections",
				slog.String("remote", nc.RemoteAddr().String()), slog.Int("max_pending", g.cfg.MaxPending))
			continue
		}
		c := g.newConn(nc)
		if !g.track(c) {
			<-g.pending
			_ = nc.Close()
			return ErrClosed
		}
		go c.serve()
	}
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
// legs) and waits until their goroutines have ended.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		g.wg.Wait()
		return nil
	}
	g.closed = true
	for ln := range g.lns {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	g.cancel()
	for _, c := range conns {
		c.closeLegs()
	}
	g.wg.Wait()
	return nil
}
