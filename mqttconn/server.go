package mqttconn

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
)

// Defaults of [Limits]. Every adapter has the same ones.
const (
	// DefaultMaxPacketSize is 1 MiB: large enough for any CONNECT the
	// authenticators of this module accept (Authentication Data is bounded
	// by auth.DefaultMaxDataLength, certificates travel in TLS) and for
	// ordinary telemetry; DefaultMaxPending connections that each declare
	// one packet of that size pin at most 256 MiB.
	DefaultMaxPacketSize uint32 = 1 << 20
	// DefaultConnectTimeout bounds the TLS handshake and the CONNECT read
	// of a new connection: a device on a slow link takes a few seconds.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds each write to a client, so a client that
	// stops reading releases its connection (and a re-check that
	// disconnects it is not held up).
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxPending bounds the connections accepted and not yet judged
	// (TLS handshake, CONNECT, the authentication exchange).
	DefaultMaxPending = 256
	// DefaultPendingShare is the part of MaxPending one source may hold
	// when Limits.MaxPendingPerSource is zero: MaxPending/8 (32 of 256),
	// at least 1. A fleet behind one NAT address reconnecting at once
	// queues for a moment; a flood from one address cannot keep the other
	// sources out.
	DefaultPendingShare = 8
)

// Limits protect a broker from peers that have not authenticated. The zero
// value of each field means its default.
type Limits struct {
	// MaxPacketSize is the largest packet, fixed header included, the
	// server reads; a larger declared Remaining Length is refused before
	// anything is allocated. Zero means DefaultMaxPacketSize.
	MaxPacketSize uint32
	// ConnectTimeout bounds the time from accept to the end of the CONNECT
	// read, TLS handshake included. Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// WriteTimeout bounds each write to a client. Zero means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxPending bounds the connections accepted and not yet judged; one
	// beyond it is closed at once. Zero means DefaultMaxPending.
	MaxPending int
	// MaxPendingPerSource bounds the pending connections of one source (an
	// IPv4 address, an IPv6 /64); one beyond it is closed at once. Zero
	// means MaxPending/DefaultPendingShare, at least 1.
	MaxPendingPerSource int
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	l.MaxPacketSize = cmp.Or(l.MaxPacketSize, DefaultMaxPacketSize)
	l.ConnectTimeout = cmp.Or(l.ConnectTimeout, DefaultConnectTimeout)
	l.WriteTimeout = cmp.Or(l.WriteTimeout, DefaultWriteTimeout)
	l.MaxPending = cmp.Or(l.MaxPending, DefaultMaxPending)
	l.MaxPendingPerSource = cmp.Or(l.MaxPendingPerSource, max(l.MaxPending/DefaultPendingShare, 1))
	return l
}

// Validate reports a negative or out-of-range limit.
func (l Limits) Validate() error {
	switch {
	case l.ConnectTimeout < 0, l.WriteTimeout < 0, l.MaxPending < 0, l.MaxPendingPerSource < 0:
		return fmt.Errorf("mqttconn: negative limit in %+v", l)
	case l.MaxPacketSize != 0 && (l.MaxPacketSize < 16 || l.MaxPacketSize > 268435460):
		return fmt.Errorf("mqttconn: Limits.MaxPacketSize %d out of range [16, 268435460]", l.MaxPacketSize)
	case l.MaxPending != 0 && l.MaxPendingPerSource > l.MaxPending:
		return fmt.Errorf("mqttconn: Limits.MaxPendingPerSource %d exceeds MaxPending %d", l.MaxPendingPerSource, l.MaxPending)
	}
	return nil
}

// Config configures a [Server].
type Config struct {
	// Manager creates the session of every client. Required.
	Manager *auth.Manager
	// Limits protect the server from peers that have not authenticated.
	Limits Limits
	// Logger receives the layer's records (refusals it decides, dropped
	// Wills, accept failures); nil means slog.Default(). Secrets are never
	// logged.
	Logger *slog.Logger
}

// Errors of the layer, for errors.Is.
var (
	// ErrMalformed marks a packet that breaks the MQTT encoding rules
	// (MQTT 5.0 sections 1.5 and 4.13): the connection is closed, after
	// CONNACK or DISCONNECT 0x81 for MQTT 5 when the packet was parsed far
	// enough to know the version.
	ErrMalformed = errors.New("mqttconn: malformed packet")
	// ErrPacketTooLarge marks a packet larger than Limits.MaxPacketSize.
	ErrPacketTooLarge = errors.New("mqttconn: packet too large")
	// ErrWillNotAuthorized: the principal may not publish to the Will
	// topic; the CONNECT is refused with 0x87 (return code 5).
	ErrWillNotAuthorized = errors.New("mqttconn: Will topic not authorized")
	// ErrShuttingDown: the server is shutting down or draining.
	ErrShuttingDown = errors.New("mqttconn: server shutting down")
	// ErrClosed is returned by Serve after Shutdown or Close.
	ErrClosed = errors.New("mqttconn: server closed")
)

// Server is the connection layer of one broker: the listeners it serves,
// the admission of their connections, and the clients it has, for
// shutdown. Create it with [New]; one per broker, shared by its listeners.
type Server struct {
	m      *auth.Manager
	lim    Limits
	log    *slog.Logger
	ctx    context.Context // cancelled by Close: ends authenticator calls in progress
	cancel context.CancelFunc

	adm   admission
	stats counters

	mu       sync.Mutex
	closing  bool   // Shutdown, Drain or Close began: refuse new clients
	drainRef string // Server Reference of a Drain
	drain    bool
	lns      map[net.Listener]bool // served; true once ShutdownListener or CloseListener closed it
	clients  map[*Client]struct{}
	idle     chan struct{} // closed when clients becomes empty while closing
	// pending are the connections Serve accepted whose CONNECT has not
	// been read yet (no Client): Shutdown closes them at once.
	pending map[*pendingConn]struct{}
	// handlers counts the handle goroutines of Serve: Shutdown returns
	// when they have all returned, so an adapter may tear down what they
	// use (mochi's Close waits for connections it counts from the first
	// packet on).
	handlers sync.WaitGroup
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Manager == nil {
		return nil, errors.New("mqttconn: Config.Manager is required")
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		m:       cfg.Manager,
		lim:     cfg.Limits.withDefaults(),
		log:     cmp.Or(cfg.Logger, slog.Default()),
		lns:     make(map[net.Listener]bool),
		clients: make(map[*Client]struct{}),
		pending: make(map[*pendingConn]struct{}),
	}
	s.adm.init(s.lim.MaxPending, s.lim.MaxPendingPerSource)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Limits returns the limits in force, defaults applied.
func (s *Server) Limits() Limits { return s.lim }

// Manager returns the Manager the server's sessions come from.
func (s *Server) Manager() *auth.Manager { return s.m }

// Context returns the context of authenticator calls: it ends when the
// server is closed.
func (s *Server) Context() context.Context { return s.ctx }

// Stats counts what the layer refused or dropped. The counts only grow,
// except Pending.
type Stats struct {
	// Pending is the number of connections accepted and not yet judged.
	Pending int64
	// Clients is the number of clients the server holds now (Len): it
	// falls back to zero when every connection has ended.
	Clients int
	// OverPending counts connections closed at accept because MaxPending
	// connections were pending.
	OverPending uint64
	// OverSource counts connections closed at accept because their source
	// held MaxPendingPerSource pending connections.
	OverSource uint64
	// TimedOut counts connections that did not complete the TLS handshake
	// and send CONNECT within ConnectTimeout.
	TimedOut uint64
	// TooLarge counts connections whose first packet declared more than
	// MaxPacketSize; the packet was not read.
	TooLarge uint64
	// Invalid counts the other connections that ended before their
	// CONNECT was judged: a failed TLS handshake, a first packet that is
	// not CONNECT, a malformed CONNECT, a peer that closed.
	Invalid uint64
	// WillsDropped counts Will Messages not published because the
	// principal, or the policy in force, no longer allowed them.
	WillsDropped uint64
}

type counters struct {
	overPending, overSource, timedOut, tooLarge, invalid, willsDropped atomic.Uint64
}

// Stats returns the server's counts.
func (s *Server) Stats() Stats {
	return Stats{
		Pending:      s.adm.pending(),
		Clients:      s.Len(),
		OverPending:  s.stats.overPending.Load(),
		OverSource:   s.stats.overSource.Load(),
		TimedOut:     s.stats.timedOut.Load(),
		TooLarge:     s.stats.tooLarge.Load(),
		Invalid:      s.stats.invalid.Load(),
		WillsDropped: s.stats.willsDropped.Load(),
	}
}

// Serve accepts connections on ln until ln is closed or the server shuts
// down, and runs handle for each on a goroutine of its own. Before handle
// runs, a connection has passed admission (the global and the per-source
// bound: one that does not is closed at once and counted) and carries a
// deadline of Limits.ConnectTimeout for its TLS handshake (when tlsConfig
// is set the connection handed to handle is a *tls.Conn, not yet
// handshaken) and its CONNECT. The connection's pending slot is given back
// when the adapter's [Client.Connect] has judged it, or when handle
// returns; a connection that ended before it was judged is counted in
// [Stats] by handle's error. Serve returns ErrClosed after Shutdown,
// Drain or Close, and after ShutdownListener or CloseListener of ln (also
// when they came first); when ln is closed otherwise, an error wrapping
// net.ErrClosed. Other accept errors are retried with backoff, as
// net/http does.
func (s *Server) Serve(ln net.Listener, tlsConfig *tls.Config, handle func(net.Conn) error) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	if s.lns[ln] { // closed by ShutdownListener or CloseListener before it was served
		delete(s.lns, ln)
		s.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	s.lns[ln] = false
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() || s.listenerClosed(ln) {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("mqttconn: accept: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.LogAttrs(s.ctx, slog.LevelWarn, "mqttconn: accept failed; retrying",
				slog.String("err", err.Error()), slog.Duration("delay", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		slot, why := s.adm.admit(nc.RemoteAddr())
		if slot == nil {
			// Counted before the close: whoever sees the close sees the
			// count.
			s.refusedAtAccept(nc.RemoteAddr(), why)
			_ = nc.Close()
			continue
		}
		pc := &pendingConn{Conn: nc, slot: slot}
		s.mu.Lock()
		// Accepted before the listener (or the server) closed, after
		// its connections were closed: not served.
		if s.closing || s.lns[ln] {
			s.mu.Unlock()
			slot.release()
			_ = nc.Close()
			return ErrClosed
		}
		s.pending[pc] = struct{}{}
		s.handlers.Add(1)
		s.mu.Unlock()
		_ = nc.SetDeadline(time.Now().Add(s.lim.ConnectTimeout))
		var c net.Conn = pc
		if tlsConfig != nil {
			c = tls.Server(pc, tlsConfig)
		}
		go func() {
			defer s.handlers.Done()
			err := handle(c)
			judged := pc.judged.Load()
			pc.release()
			s.mu.Lock()
			delete(s.pending, pc)
			s.mu.Unlock()
			if err != nil && !judged {
				s.countUnjudged(err)
			}
		}()
	}
}

func (s *Server) refusedAtAccept(remote net.Addr, why refusal) {
	limit := s.lim.MaxPending
	if why == overSource {
		s.stats.overSource.Add(1)
		limit = s.lim.MaxPendingPerSource
	} else {
		s.stats.overPending.Add(1)
	}
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.LogAttrs(s.ctx, slog.LevelDebug, "mqttconn: connection refused at accept",
			slog.String("remote", remote.String()), slog.String("limit", why.String()), slog.Int("max", limit))
	}
}

// countUnjudged counts a connection that ended before its CONNECT was
// judged.
func (s *Server) countUnjudged(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		s.stats.timedOut.Add(1)
	case errors.Is(err, ErrPacketTooLarge):
		s.stats.tooLarge.Add(1)
	default:
		s.stats.invalid.Add(1)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Len returns the number of clients the server holds: from
// [Server.NewClient] to [Client.Close].
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Shutdown shuts the server down in order: it stops accepting (the
// listeners given to Serve are closed), sends DISCONNECT 0x8B (Server
// shutting down) to every connected MQTT 5 client and closes the
// connection of every connected client, lets the authentication exchanges
// in flight finish (a client that passes then is refused with CONNACK 0x88,
// return code 3 for MQTT 3.1.1), and waits until every client is gone or
// ctx ends; then it closes what is left and returns ctx's error.
// Connections that have not sent their CONNECT yet are closed at once. When
// Shutdown returns nil, every handle goroutine of Serve has returned.
// Adapters wire it to their own shutdown (mochi.Hook.Shutdown,
// gateway.Shutdown).
func (s *Server) Shutdown(ctx context.Context) error {
	return s.shutdown(ctx, false, "")
}

// Drain is Shutdown, except that connected MQTT 5 clients are sent
// DISCONNECT 0x9C (Use another server) with serverReference as the Server
// Reference property (when it is not empty), and exchanges that pass while
// draining are refused with CONNACK 0x9C: a client that honours it
// reconnects elsewhere at once. MQTT 3.1.1 clients are closed.
func (s *Server) Drain(ctx context.Context, serverReference string) error {
	return s.shutdown(ctx, true, serverReference)
}

func (s *Server) shutdown(ctx context.Context, drain bool, ref string) error {
	s.mu.Lock()
	if !s.closing {
		s.closing, s.drain, s.drainRef = true, drain, ref
		s.idle = make(chan struct{})
		if len(s.clients) == 0 {
			close(s.idle)
		}
	}
	for ln := range s.lns {
		_ = ln.Close()
	}
	var unread []*pendingConn // no CONNECT yet: nothing in flight to wait for
	for pc := range s.pending {
		if !pc.client.Load() {
			unread = append(unread, pc)
		}
	}
	clients := make([]*Client, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	idle := s.idle
	code := auth.ServerShuttingDown
	if s.drain {
		code = auth.UseAnotherServer
	}
	ref = s.drainRef
	s.mu.Unlock()

	for _, pc := range unread {
		_ = pc.Close()
	}
	for _, c := range clients {
		if c.isConnected() {
			c.disconnectFor(code, ref)
		}
	}
	handled := make(chan struct{})
	go func() {
		<-idle
		s.handlers.Wait()
		close(handled)
	}()
	select {
	case <-handled:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	clients = clients[:0]
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	for _, c := range clients {
		c.t.Close()
	}
	s.mu.Lock()
	for pc := range s.pending {
		_ = pc.Close()
	}
	s.mu.Unlock()
	return ctx.Err()
}

// Close closes the server at once: the listeners and every client's
// connection, without a DISCONNECT, and cancels the context of
// authenticator calls in progress. Prefer Shutdown.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.shutdown(ctx, false, "")
	s.cancel()
	return nil
}

// closingCode returns the CONNACK code for an exchange that passed while
// the server shuts down, and whether it does.
func (s *Server) closingCode() (auth.ReasonCode, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.closing:
		return 0, "", false
	case s.drain:
		return auth.UseAnotherServer, s.drainRef, true
	}
	return auth.ServerUnavailable, "", true
}

func (s *Server) track(c *Client) {
	s.mu.Lock()
	s.clients[c] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) untrack(c *Client) {
	s.mu.Lock()
	delete(s.clients, c)
	if s.closing && len(s.clients) == 0 {
		select {
		case <-s.idle:
		default:
			close(s.idle)
		}
	}
	s.mu.Unlock()
}
