package mqttconn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// exchangeReadMargin is how much longer than the Manager's ExchangeTimeout
// the layer waits for the client's AUTH answer: the Session's own timer,
// which refuses with 0x87, fires first; the read deadline is the backstop.
const exchangeReadMargin = time.Second

// Transport is what an adapter gives the layer for one client connection.
// Its methods must be safe for concurrent use (the Session ends a
// connection from a timer, a re-check or a shutdown).
type Transport interface {
	// Write writes one whole encoded packet to the client, serialized with
	// the broker's own writes and bounded by Limits.WriteTimeout.
	Write(b []byte) error
	// ReadExchange reads the client's next packet during an
	// authentication exchange, before CONNACK. The layer has set the read
	// deadline on the connection given to NewClient. A packet larger than
	// Limits.MaxPacketSize is an error wrapping ErrPacketTooLarge, one that
	// cannot be decoded an error wrapping ErrMalformed.
	ReadExchange() (Inbound, error)
	// Close closes the network connection and ends what the broker holds
	// for it; it must not call back into the Client. More than one call is
	// safe.
	Close()
}

// Inbound is a packet a client sent during an authentication exchange.
type Inbound struct {
	// Type is the MQTT control packet type (15 for AUTH, 14 for
	// DISCONNECT).
	Type byte
	// Auth is the packet when Type is AUTH.
	Auth auth.Packet
}

// MQTT control packet types the layer tells apart.
const (
	TypeDisconnect byte = 14
	TypeAuth       byte = 15
)

// Client is the layer's state for one client connection: its
// auth.Session, its protocol version, its Will, and whether the success
// CONNACK was sent. Create it with [Server.NewClient] once the CONNECT has
// been read; call [Client.Close] when the connection has ended.
type Client struct {
	srv      *Server
	nc       net.Conn
	t        Transport
	listener string
	s        *auth.Session

	version  byte
	clientID string
	will     *Will

	mu        sync.Mutex
	connected bool // the success CONNACK was sent
	ended     bool // the transport was closed by the layer
	closed    bool // Close was called
}

// NewClient returns the Client of a connection whose CONNECT has been
// read. nc is the network connection (a *tls.Conn on a TLS listener): the
// layer reads its remote address and TLS state, and sets its deadlines
// during the exchange. listener names the listener in auth.Request.
func (s *Server) NewClient(nc net.Conn, t Transport, listener string) *Client {
	c := &Client{srv: s, nc: nc, t: t, listener: listener}
	if p := pendingOf(nc); p != nil {
		p.client.Store(true) // Shutdown waits for its exchange
	}
	c.s = s.m.NewSession(sessionConn{c})
	s.track(c)
	return c
}

// sessionConn is the auth.Conn through which the Session ends the
// connection on its own (expiry, revocation, a stalled exchange).
type sessionConn struct{ c *Client }

func (sc sessionConn) Close(final auth.Packet) { sc.c.end(final, "") }

// Session returns the client's auth.Session.
func (c *Client) Session() *auth.Session { return c.s }

// Version returns the client's protocol version (4 or 5), known once
// Connect has run.
func (c *Client) Version() byte { return c.version }

// Will returns the Will of the CONNECT, or nil.
func (c *Client) Will() *Will { return c.will }

// Result is the outcome of [Client.Connect].
type Result struct {
	// OK is set when the client passed: the adapter sends the success
	// CONNACK (carrying Method and Data when Method is set [MQTT-4.12.0-5])
	// and then calls [Client.Connected]. Otherwise the layer has sent the
	// refusal, if the protocol version has one, and the adapter closes the
	// connection.
	OK     bool
	Method string
	Data   []byte
	// Code is the refusal's reason code (0 when no CONNACK was sent or on
	// success).
	Code auth.ReasonCode
	// Err says why the client was refused, for the adapter's logs; it
	// never holds secrets.
	Err error
}

// Connect judges the CONNECT cp: its malformed-packet checks, the
// authentication through the Session with every AUTH exchange before
// CONNACK (each answer read with the deadline of the Manager's
// ExchangeTimeout), the Will as a Publish of its topic, and the server's
// shutdown. It clears cp's Password and AuthData once judged. On a refusal
// it writes the refusing CONNACK encoded for the client's version (see
// [Encode]) and logs it when the Session did not. The connection's
// admission slot is given back when Connect returns.
func (c *Client) Connect(ctx context.Context, cp *Connect) Result {
	if p := pendingOf(c.nc); p != nil {
		defer func() { p.judged.Store(true); p.release() }()
	}
	_ = c.nc.SetDeadline(time.Time{}) // the ConnectTimeout of Serve is over
	c.version, c.clientID = cp.ProtocolVersion, cp.ClientID
	defer cp.scrub()
	if err := cp.Validate(); err != nil {
		return c.refuse(auth.MalformedPacket, "", err)
	}
	if code, ref, closing := c.srv.closingCode(); closing {
		return c.refuseRef(code, ref, ErrShuttingDown)
	}
	req := cp.Request(c.nc.RemoteAddr(), ConnState(c.nc), c.listener)
	resp := c.s.Connect(ctx, &req)
	cp.scrub()
	for resp.Packet.Type == auth.AUTH {
		if err := c.write(resp.Packet, ""); err != nil {
			c.s.Close()
			return Result{Err: fmt.Errorf("mqttconn: sending AUTH: %w", err)}
		}
		resp = c.readExchange(ctx)
	}
	if resp.Close || resp.Packet.Type != auth.CONNACK || resp.Packet.Code != auth.Success {
		if resp.Packet.Type == auth.CONNACK {
			_ = c.write(resp.Packet, "")
		}
		c.s.Close()
		return Result{Code: resp.Packet.Code, Err: cmp.Or(resp.Err, error(auth.ErrClosed))}
	}
	if cp.Will != nil {
		if !c.s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: cp.Will.Topic}).Allowed {
			return c.refuse(auth.NotAuthorized, "Will topic not authorized",
				fmt.Errorf("%w: %q", ErrWillNotAuthorized, cp.Will.Topic))
		}
		w := *cp.Will
		c.will = &w
	}
	if code, ref, closing := c.srv.closingCode(); closing {
		return c.refuseRef(code, ref, ErrShuttingDown)
	}
	return Result{OK: true, Method: resp.Packet.Method, Data: resp.Packet.Data}
}

// Refuse refuses the client with code instead of the success CONNACK,
// after Connect passed: for what the adapter decides itself (the upstream
// broker refused or cannot be reached). Connect must have run (it read
// the protocol version the refusal is encoded for). It ends the session, writes the refusing CONNACK
// for the client's version (see [Encode]; for MQTT 3.1.1 the return code
// of code, or none), logs the deny record and returns the Result to act
// on. The adapter closes the connection.
func (c *Client) Refuse(code auth.ReasonCode, reason string, err error) Result {
	if p := pendingOf(c.nc); p != nil {
		p.judged.Store(true)
		p.release()
	}
	return c.refuse(code, reason, err)
}

// refuse ends the session, writes the refusing CONNACK and logs the deny
// record of a refusal the layer decided.
func (c *Client) refuse(code auth.ReasonCode, reason string, err error) Result {
	c.s.Close()
	_ = c.write(auth.Packet{Type: auth.CONNACK, Code: code, Reason: reason}, "")
	c.logRefused(code, err)
	return Result{Code: code, Err: err}
}

func (c *Client) refuseRef(code auth.ReasonCode, ref string, err error) Result {
	c.s.Close()
	_ = c.write(auth.Packet{Type: auth.CONNACK, Code: code}, ref)
	c.logRefused(code, err)
	return Result{Code: code, Err: err}
}

func (c *Client) logRefused(code auth.ReasonCode, err error) {
	log := c.srv.log
	if !log.Enabled(c.srv.ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision", "deny"),
		slog.String("client_id", c.clientID),
		slog.String("remote", remoteString(c.nc)),
		slog.String("reason_code", code.String()),
		slog.Int("protocol", int(c.version)),
	}
	if p := c.s.Principal(); p != nil {
		attrs = append(attrs, slog.String("username", p.Username()), slog.String("method", p.Method()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	log.LogAttrs(c.srv.ctx, slog.LevelInfo, "mqttauth: connection refused", attrs...)
}

func remoteString(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// readExchange reads the client's answer to an AUTH 0x18 before CONNACK
// and hands it to the Session.
func (c *Client) readExchange(ctx context.Context) auth.Response {
	if d := c.srv.m.ExchangeTimeout(); d >= 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(d + exchangeReadMargin))
	}
	in, err := c.t.ReadExchange()
	_ = c.nc.SetReadDeadline(time.Time{})
	if err != nil {
		if c.s.Closed() {
			// The Session's exchange timer ended it and sent the CONNACK.
			return auth.Response{Close: true, Err: fmt.Errorf("mqttconn: %w", auth.ErrTimeout)}
		}
		c.s.Close()
		var ne net.Error
		code := auth.ReasonCode(0)
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			code, err = auth.NotAuthorized, auth.ErrTimeout
		case errors.Is(err, ErrPacketTooLarge):
			code = auth.PacketTooLarge
		case errors.Is(err, ErrMalformed):
			code = auth.MalformedPacket
		}
		resp := auth.Response{Close: true, Err: fmt.Errorf("mqttconn: reading the client's AUTH: %w", err)}
		if code != 0 {
			resp.Packet = auth.Packet{Type: auth.CONNACK, Code: code} // Connect writes it
		}
		return resp
	}
	switch in.Type {
	case TypeAuth:
		resp := c.s.Auth(ctx, in.Auth)
		clear(in.Auth.Data)
		return resp
	case TypeDisconnect:
		c.s.Close()
		return auth.Response{Close: true, Err: errors.New("mqttconn: the client disconnected during the authentication exchange")}
	}
	return c.s.OtherPacket()
}

// Connected tells the layer that the success CONNACK was written: from now
// on the Session's final packets are DISCONNECTs, and Shutdown disconnects
// the client. A client that becomes connected while the server shuts down
// (Shutdown swept the clients while its CONNACK was being written) is
// disconnected at once, as Shutdown would have done.
func (c *Client) Connected() {
	c.mu.Lock()
	c.connected = true
	c.mu.Unlock()
	// Shutdown sets closing before it reads connected; this reads closing
	// after setting connected: one of the two sees the other.
	if code, ref, closing := c.srv.closingCode(); closing {
		if code == auth.ServerUnavailable { // the CONNACK code of a shutdown
			code = auth.ServerShuttingDown
		}
		c.disconnectFor(code, ref)
	}
}

func (c *Client) isConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected && !c.ended
}

// Auth handles an AUTH packet after CONNACK (re-authentication; the
// Session bounds its rate) and writes the Session's answer. It reports
// whether the connection was ended (the transport is closed then); err
// says why. An AUTH from an MQTT 3.1.1 client is a protocol error: the
// connection is closed.
func (c *Client) Auth(ctx context.Context, p auth.Packet) (ended bool, err error) {
	if c.version != V5 {
		c.end(auth.Packet{}, "")
		return true, fmt.Errorf("%w: AUTH from an MQTT 3.1.1 client", auth.ErrProtocol)
	}
	resp := c.s.Auth(ctx, p)
	clear(p.Data)
	if resp.Close {
		c.end(resp.Packet, "")
		return true, resp.Err
	}
	if resp.Packet.Type != auth.None {
		if err := c.write(resp.Packet, ""); err != nil {
			return false, err
		}
	}
	return false, resp.Err
}

// Authorize asks the session about an action with its current principal;
// before authentication and after the session ended it denies.
func (c *Client) Authorize(ctx context.Context, kind auth.ActionKind, topic string) bool {
	return c.s.Authorize(ctx, auth.Action{Kind: kind, Topic: topic}).Allowed
}

// WillAllowed decides, when the Will is about to be published, whether it
// may be: with the principal the session has or had when the connection
// ended, and the policy in force now (see auth.Session.AuthorizeWill). A
// Will that may not be published is counted in Stats.WillsDropped and
// logged; the adapter drops it. Without a Will it reports false.
func (c *Client) WillAllowed(ctx context.Context) bool {
	w := c.will
	if w == nil {
		return false
	}
	d := c.s.AuthorizeWill(ctx, w.Topic)
	if d.Allowed {
		return true
	}
	c.srv.stats.willsDropped.Add(1)
	c.srv.log.LogAttrs(ctx, slog.LevelInfo, "mqttauth: Will dropped",
		slog.String("decision", "deny"), slog.String("client_id", c.clientID),
		slog.String("topic", w.Topic), slog.String("reason_code", auth.NotAuthorized.String()))
	return false
}

// Disconnect ends the connection from the server side for code: an MQTT 5
// client that was sent its CONNACK gets DISCONNECT with code and reason
// first (an MQTT 3.1.1 client has no server DISCONNECT); then the
// connection is closed and the session ends. Adapters use it for the
// malformed packets and protocol errors they find after CONNACK
// [MQTT-4.13.1-1].
func (c *Client) Disconnect(code auth.ReasonCode, reason string) {
	c.s.Close()
	c.end(auth.Packet{Type: auth.DISCONNECT, Code: code, Reason: reason}, "")
}

func (c *Client) disconnectFor(code auth.ReasonCode, ref string) {
	c.s.Close()
	c.end(auth.Packet{Type: auth.DISCONNECT, Code: code}, ref)
}

// end sends final, when it may be sent in the connection's state and
// version, and closes the transport.
func (c *Client) end(final auth.Packet, ref string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	connected := c.connected
	c.mu.Unlock()
	switch {
	case final.Type == auth.DISCONNECT && !connected:
		// No CONNACK yet: a DISCONNECT would precede it [MQTT-3.2.0-1].
	case final.Type == auth.CONNACK && connected:
	default:
		_ = c.write(final, ref)
	}
	c.t.Close()
}

// write encodes p for the client's version and writes it; a packet the
// version does not have is not written.
func (c *Client) write(p auth.Packet, ref string) error {
	if p.Type == auth.None {
		return nil
	}
	b, ok := encodePacket(c.version, p, ref)
	if !ok {
		return nil
	}
	return c.t.Write(b)
}

// Close tells the layer that the connection has ended: the session ends
// (timers stop, it leaves the Manager) and the server forgets the client.
// It is safe to call more than once.
func (c *Client) Close() {
	c.mu.Lock()
	closed := c.closed
	c.closed = true
	c.mu.Unlock()
	if closed {
		return
	}
	c.s.Close()
	c.srv.untrack(c)
}
