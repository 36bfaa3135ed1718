package mochi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttauth/mqttauth/auth"
)

// HookID is the ID the hook reports to mochi.
const HookID = "mqttauth"

// DefaultExchangeReadTimeout bounds each read of a client's AUTH packet during
// a CONNECT exchange when Config.ExchangeReadTimeout is zero. It is longer
// than auth.DefaultExchangeTimeout so that the Session's own timer, which
// sends CONNACK 0x87, normally fires first.
const DefaultExchangeReadTimeout = auth.DefaultExchangeTimeout + 5*time.Second

// Config configures a [Hook].
type Config struct {
	// Manager creates the session of every client. Required.
	Manager *auth.Manager
	// ExchangeReadTimeout bounds each wait for the client's AUTH answer
	// during a CONNECT exchange; zero means DefaultExchangeReadTimeout.
	ExchangeReadTimeout time.Duration
	// WriteTimeout bounds the write of a DISCONNECT the hook sends on its
	// own (expiry, revocation), so a client that does not read cannot hold
	// up a re-check; zero means 5 seconds.
	WriteTimeout time.Duration
	// Logger receives the hook's records; nil means slog.Default(). Secrets
	// are never logged.
	Logger *slog.Logger
	// MaxPacketSize is the largest packet, in bytes, the server accepts
	// (fixed header included): it becomes the server's
	// Capabilities.MaximumPacketSize when that is 0 (mochi's default:
	// unlimited), and is announced in CONNACK. Zero means
	// DefaultMaxPacketSize. A server whose MaximumPacketSize is already set
	// keeps it.
	MaxPacketSize uint32
	// ConnectTimeout bounds the time from accepting a connection on a
	// [Hook.Listener] to reading its CONNECT, TLS handshake included; zero
	// means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxPending bounds the connections accepted by the hook's listeners
	// that have not yet been authenticated (from accept to the end of
	// OnConnect); a connection beyond it is closed at once. Zero means
	// DefaultMaxPending.
	MaxPending int
	// Now returns the current time; nil means time.Now. It decides whether
	// the principal of an offline session has expired.
	Now func() time.Time
	// InsecureAllowOtherAuthHooks lets the server run with other hooks that
	// provide OnConnectAuthenticate or OnACLCheck. mochi lets any hook that
	// allows win, so such a hook can grant what this one denies. Leave it
	// false unless every other such hook only ever denies.
	InsecureAllowOtherAuthHooks bool
}

// ErrOtherAuthHook is returned by [Attach], and logged by the hook when the
// server starts, when another hook provides OnConnectAuthenticate or
// OnACLCheck. mochi allows a client as soon as any hook allows it, so another
// permissive hook would silently defeat this one.
var ErrOtherAuthHook = errors.New("mochi: another hook provides OnConnectAuthenticate or OnACLCheck; mochi lets any allowing hook win")

// errEnded is returned to mochi from OnAuthPacket when the session ended the
// connection: it is not a packets.Code, so mochi does not send a second
// DISCONNECT, and it is an error, so mochi publishes the Will message.
var errEnded = errors.New("mochi: connection ended by authentication")

// errRefused is returned from OnConnect when the hook refuses every client
// because another authorization hook was found when the server started.
var errRefused = fmt.Errorf("mochi: refusing clients: %w", ErrOtherAuthHook)

// errNoV3Disconnect stops an MQTT 3 client instead of the DISCONNECT mochi
// was about to write to it: MQTT 3.1.1 has no DISCONNECT from the server.
var errNoV3Disconnect = errors.New("mochi: MQTT 3.1.1 has no DISCONNECT from the server: connection closed instead")

// RefusedError is the error OnConnect returns to mochi, which logs it, when
// the hook refuses a client: the reason code the client was sent (or the
// code that an MQTT 3.1.1 client could not be sent) and the cause, which
// never holds secrets.
type RefusedError struct {
	Code auth.ReasonCode
	Err  error
}

// Error reads "mochi: client refused with Not authorized (0x87): cause".
func (e *RefusedError) Error() string {
	msg := "mochi: client refused with " + e.Code.String()
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause and the code as a mochi packets.Code.
func (e *RefusedError) Unwrap() []error {
	errs := []error{packets.Code{Code: byte(e.Code)}}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Hook is a mochi hook that authenticates and authorizes every client through
// an [auth.Session]. Create it with [Attach].
type Hook struct {
	mqtt.HookBase

	srv         *mqtt.Server
	m           *auth.Manager
	readTimeout time.Duration
	writeTO     time.Duration
	log         *slog.Logger
	allowOthers bool
	now         func() time.Time

	connectTimeout time.Duration
	maxPending     int64
	pendingConns   atomic.Int64 // accepted by a Listener, not yet through OnConnect
	stats          stats

	// offline maps a client ID to the client of a persistent session whose
	// connection ended: mochi still delivers to it (queueing), checked with
	// the principal it last had. Guarded by omu.
	omu     sync.Mutex
	offline map[string]*client

	ctx    context.Context // cancelled when the server stops
	cancel context.CancelFunc

	refused atomic.Bool // another permissive hook was found at start

	// clients maps *mqtt.Client to *client. sync.Map reads take no lock,
	// which matters in OnACLCheck (called for every delivery).
	clients sync.Map
	n       atomic.Int64 // entries in clients

	// pending are clients past OnConnect that have not reached
	// OnSessionEstablished: mochi calls no OnDisconnect for a client that
	// fails between the two (a later hook's OnConnect, a failed CONNACK
	// write), so they are swept once closed.
	pmu     sync.Mutex
	pending map[*client]struct{}
}

// Attach validates cfg, checks that no other hook of srv provides
// OnConnectAuthenticate or OnACLCheck (see [ErrOtherAuthHook]), and adds the
// hook to srv. Call it before srv.Serve. Hooks that srv.Serve adds later
// from srv.Options.Hooks are checked too, and so is the whole list when the
// server starts: if a permissive hook is found then, the hook logs an error,
// refuses every client and closes the server.
func Attach(srv *mqtt.Server, cfg Config) (*Hook, error) {
	if srv == nil {
		return nil, errors.New("mochi: nil server")
	}
	if cfg.Manager == nil {
		return nil, errors.New("mochi: Config.Manager is required")
	}
	if cfg.ExchangeReadTimeout < 0 || cfg.WriteTimeout < 0 || cfg.ConnectTimeout < 0 || cfg.MaxPending < 0 {
		return nil, errors.New("mochi: negative Config.ExchangeReadTimeout, WriteTimeout, ConnectTimeout or MaxPending")
	}
	h := &Hook{
		srv:            srv,
		m:              cfg.Manager,
		readTimeout:    cfg.ExchangeReadTimeout,
		writeTO:        cfg.WriteTimeout,
		log:            cfg.Logger,
		allowOthers:    cfg.InsecureAllowOtherAuthHooks,
		now:            cfg.Now,
		connectTimeout: cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout),
		maxPending:     int64(cmp.Or(cfg.MaxPending, DefaultMaxPending)),
		pending:        make(map[*client]struct{}),
		offline:        make(map[string]*client),
	}
	if h.now == nil {
		h.now = time.Now
	}
	if srv.Options.Capabilities != nil && srv.Options.Capabilities.MaximumPacketSize == 0 {
		srv.Options.Capabilities.MaximumPacketSize = cmp.Or(cfg.MaxPacketSize, DefaultMaxPacketSize)
	}
	if h.readTimeout == 0 {
		h.readTimeout = DefaultExchangeReadTimeout
	}
	if h.writeTO == 0 {
		h.writeTO = 5 * time.Second
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if err := h.checkOthers(); err != nil {
		h.cancel()
		return nil, err
	}
	if err := srv.AddHook(h, nil); err != nil {
		h.cancel()
		return nil, fmt.Errorf("mochi: %w", err)
	}
	return h, nil
}

// ID returns HookID.
func (h *Hook) ID() string { return HookID }

// Provides reports the hook methods the Hook implements.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnStarted, mqtt.OnStopped, mqtt.OnConnect, mqtt.OnConnectAuthenticate,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnACLCheck,
		mqtt.OnAuthPacket, mqtt.OnPacketEncode, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// Init is called by mochi when the hook is added; it accepts a nil config.
func (h *Hook) Init(config any) error {
	if config != nil {
		return mqtt.ErrInvalidConfigType
	}
	return nil
}

// Stop is called by mochi when the server closes; it cancels the context of
// authenticator calls in progress.
func (h *Hook) Stop() error {
	h.cancel()
	return nil
}

// OnStarted checks the server's hooks again, now that srv.Serve has added
// those of srv.Options.Hooks. If another hook provides OnConnectAuthenticate
// or OnACLCheck (and Config.InsecureAllowOtherAuthHooks is false), it logs
// an error, refuses every client from now on and closes the server.
func (h *Hook) OnStarted() {
	err := h.checkOthers()
	if err == nil {
		return
	}
	h.refused.Store(true)
	h.log.LogAttrs(h.ctx, slog.LevelError, "mqttauth: refusing to serve: closing the server", slog.String("err", err.Error()))
	go func() { _ = h.srv.Close() }()
}

// OnStopped ends the sessions of clients that are still known.
func (h *Hook) OnStopped() {
	h.cancel()
	h.sweep(true)
}

// Len returns the number of clients the hook holds state for: connected
// clients and the offline persistent sessions of [Hook.Offline]. It is for
// tests and metrics: it falls to zero when every client has gone and every
// session has expired.
func (h *Hook) Len() int { return int(h.n.Load()) }

// Offline returns the number of offline persistent sessions for which the
// hook keeps the principal their connection last had.
func (h *Hook) Offline() int {
	h.omu.Lock()
	defer h.omu.Unlock()
	return len(h.offline)
}

// Session returns the session of cl, or nil.
func (h *Hook) Session(cl *mqtt.Client) *auth.Session {
	if c := h.lookup(cl); c != nil {
		return c.s
	}
	return nil
}

func (h *Hook) lookup(cl *mqtt.Client) *client {
	v, ok := h.clients.Load(cl)
	if !ok {
		return nil
	}
	return v.(*client)
}

// forget removes c from the hook and ends its session.
func (h *Hook) forget(c *client) {
	if _, ok := h.clients.LoadAndDelete(c.cl); ok {
		h.n.Add(-1)
	}
	h.omu.Lock()
	if h.offline[c.cl.ID] == c {
		delete(h.offline, c.cl.ID)
	}
	h.omu.Unlock()
	c.offline.Store(nil)
	h.pmu.Lock()
	delete(h.pending, c)
	h.pmu.Unlock()
	c.s.Close()
}

// sweep forgets pending clients whose connection has closed (all of them
// when all is set).
func (h *Hook) sweep(all bool) {
	var gone []*client
	h.pmu.Lock()
	for c := range h.pending {
		if all || c.cl.Closed() {
			gone = append(gone, c)
		}
	}
	h.pmu.Unlock()
	for _, c := range gone {
		h.forget(c)
	}
	if all {
		h.clients.Range(func(_, v any) bool {
			h.forget(v.(*client))
			return true
		})
	}
}

// OnConnect authenticates the client before CONNACK: it runs the whole
// enhanced-authentication exchange (AUTH 0x18 out, the client's AUTH in,
// with a read deadline), sends a failing CONNACK itself and returns an error
// when the client is refused, and scrubs the password and Authentication
// Data once they have been judged.
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	// The CONNECT has been read: the connection leaves the listener's
	// deadline, and its pending slot once it has been judged.
	if g := guardOf(cl.Net.Conn); g != nil {
		g.connected()
		defer g.release()
	}
	h.sweep(false)
	if h.refused.Load() {
		h.refuse(cl, auth.ServerUnavailable, "")
		return errRefused
	}
	c := &client{h: h, cl: cl}
	c.s = h.m.NewSession(c)
	h.clients.Store(cl, c)
	h.n.Add(1)

	req := auth.Request{
		ClientID:        cl.ID,
		Username:        string(pk.Connect.Username),
		HasUsername:     pk.Connect.UsernameFlag,
		Password:        pk.Connect.Password,
		HasPassword:     pk.Connect.PasswordFlag,
		AuthMethod:      pk.Properties.AuthenticationMethod,
		AuthData:        pk.Properties.AuthenticationData,
		Listener:        cl.Net.Listener,
		ProtocolVersion: pk.ProtocolVersion,
	}
	if conn := cl.Net.Conn; conn != nil {
		req.RemoteAddr = conn.RemoteAddr()
		if tc, ok := conn.(*tls.Conn); ok {
			cs := tc.ConnectionState()
			req.TLS = &cs
		}
	}
	resp := c.s.Connect(h.ctx, &req)
	// The credentials have been judged: scrub them from the packet mochi
	// hands to later hooks and from the properties storage hooks persist.
	clear(pk.Connect.Password)
	clear(pk.Properties.AuthenticationData)
	cl.Properties.Props.AuthenticationData = nil

	for {
		switch resp.Packet.Type {
		case auth.AUTH:
			if err := c.write(resp.Packet); err != nil {
				h.forget(c)
				return fmt.Errorf("mochi: sending AUTH: %w", err)
			}
			next, err := c.readExchange()
			if err != nil {
				h.forget(c)
				return err
			}
			resp = next
			continue
		case auth.CONNACK:
			if resp.Packet.Code == auth.Success {
				c.connackMethod = resp.Packet.Method
				c.connackData = resp.Packet.Data
				h.pmu.Lock()
				h.pending[c] = struct{}{}
				h.pmu.Unlock()
				return nil
			}
			h.refuse(cl, resp.Packet.Code, resp.Packet.Reason)
			h.forget(c)
			return &RefusedError{Code: resp.Packet.Code, Err: resp.Err}
		default: // a close without a packet
			h.forget(c)
			if resp.Err != nil {
				return fmt.Errorf("mochi: %w", resp.Err)
			}
			return errEnded
		}
	}
}

// refuse sends the failing CONNACK for code. An MQTT 3.1.1 client gets the
// 3.1.1 return code of auth.ReasonCode.ConnackV311, or no CONNACK at all
// when 3.1.1 has none (the connection is then closed): mochi's own mapping
// misses most v5 codes and would send them as they are.
func (h *Hook) refuse(cl *mqtt.Client, code auth.ReasonCode, reason string) {
	if cl.Properties.ProtocolVersion < 5 {
		rc, ok := code.ConnackV311()
		if ok {
			_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: rc})
		}
		return
	}
	_ = h.srv.SendConnack(cl, packets.Code{Code: byte(code), Reason: reason}, false, nil)
}

// readExchange reads the client's answer to an AUTH 0x18 during CONNECT and
// hands it to the session.
func (c *client) readExchange() (auth.Response, error) {
	conn := c.cl.Net.Conn
	if conn == nil {
		return auth.Response{}, errors.New("mochi: client has no network connection")
	}
	_ = conn.SetReadDeadline(time.Now().Add(c.h.readTimeout))
	var fh packets.FixedHeader
	err := c.cl.ReadFixedHeader(&fh)
	var pk packets.Packet
	if err == nil {
		pk, err = c.cl.ReadPacket(&fh)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		if c.s.Closed() {
			// The session's exchange timer ended it and sent the CONNACK.
			return auth.Response{}, fmt.Errorf("mochi: authentication exchange ended: %w", auth.ErrTimeout)
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			c.s.Close()
			c.h.refuse(c.cl, auth.NotAuthorized, "")
			return auth.Response{}, fmt.Errorf("mochi: %w", auth.ErrTimeout)
		}
		c.s.Close()
		var code packets.Code
		if errors.As(err, &code) && code.Code >= packets.ErrUnspecifiedError.Code {
			// A malformed packet: say so before closing, as for CONNECT.
			c.h.refuse(c.cl, auth.ReasonCode(code.Code), code.Reason)
		}
		return auth.Response{}, fmt.Errorf("mochi: reading the client's AUTH: %w", err)
	}
	switch pk.FixedHeader.Type {
	case packets.Auth:
		resp := c.s.Auth(c.h.ctx, authPacket(pk))
		clear(pk.Properties.AuthenticationData)
		return resp, nil
	case packets.Disconnect:
		c.s.Close()
		return auth.Response{}, errors.New("mochi: the client disconnected during the authentication exchange")
	default:
		return c.s.OtherPacket(), nil
	}
}

func authPacket(pk packets.Packet) auth.Packet {
	return auth.Packet{
		Type:   auth.AUTH,
		Code:   auth.ReasonCode(pk.ReasonCode),
		Method: pk.Properties.AuthenticationMethod,
		Data:   pk.Properties.AuthenticationData,
	}
}

// OnConnectAuthenticate allows exactly the clients whose session OnConnect
// authenticated.
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	c := h.lookup(cl)
	return c != nil && c.s.Principal() != nil && !h.refused.Load()
}

// OnSessionEstablish scrubs the Authentication Data again, in case a hook
// between OnConnect and here put it back, before storage hooks persist the
// client. When the client resumes a session (Clean Start 0) that mochi
// still holds, it then removes what the new principal may not have, before
// mochi hands the session over: see [Hook.OnDisconnect].
func (h *Hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	cl.Properties.Props.AuthenticationData = nil
	if pk.Connect.Clean {
		return // mochi discards the old session
	}
	old, ok := h.srv.Clients.Get(cl.ID)
	if c := h.lookup(cl); ok && old != cl && c != nil {
		h.recheckInherited(c, old)
		c.resume.Store(newResumption(old)) // order.go
	}
}

// recheckInherited removes from old, the session cl inherits, the
// subscriptions the new principal may not make and the queued messages it
// may not receive. A queued message whose topic mochi replaced by a topic
// alias cannot be checked and is removed too: the alias means nothing on
// the new connection anyway.
func (h *Hook) recheckInherited(c *client, old *mqtt.Client) {
	for filter := range old.State.Subscriptions.GetAll() {
		if c.s.Authorize(h.ctx, auth.Action{Kind: auth.Subscribe, Topic: filter}).Allowed {
			continue
		}
		old.State.Subscriptions.Delete(filter)
		if h.srv.Topics.Unsubscribe(filter, old.ID) {
			atomic.AddInt64(&h.srv.Info.Subscriptions, -1)
		}
		h.log.LogAttrs(h.ctx, slog.LevelInfo, "mqttauth: subscription of the resumed session removed",
			slog.String("decision", "deny"), slog.String("client_id", old.ID),
			slog.String("username", username(c.s.Principal())), slog.String("topic", filter))
	}
	for _, pk := range old.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		if pk.TopicName != "" && c.s.Authorize(h.ctx, auth.Action{Kind: auth.Subscribe, Topic: pk.TopicName}).Allowed {
			continue
		}
		if old.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
		}
	}
}

// OnSessionEstablished marks the client as fully connected: from now on
// mochi calls OnDisconnect for it. The principal kept for an earlier
// connection with the same client ID is dropped: that session is now this
// client's, or was discarded.
func (h *Hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if c := h.lookup(cl); c != nil {
		c.resume.Load().done() // order.go
		h.pmu.Lock()
		delete(h.pending, c)
		h.pmu.Unlock()
	}
	h.omu.Lock()
	old := h.offline[cl.ID]
	h.omu.Unlock()
	if old != nil && old.cl != cl {
		h.forget(old)
	}
}

// OnPacketEncode adds the Authentication Method and the final
// Authentication Data to the successful CONNACK [MQTT-4.12.0-5]. It also
// stops mochi from writing a DISCONNECT to an MQTT 3 client (a denied QoS 1
// or 2 publish, a session take-over): MQTT 3.1.1 has no DISCONNECT from the
// server, so the connection is closed instead and nothing is written.
func (h *Hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.resendInOrder(cl, &pk)
	switch {
	case pk.FixedHeader.Type == packets.Disconnect && cl.Properties.ProtocolVersion < 5:
		cl.Stop(errNoV3Disconnect)
	case pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == packets.CodeSuccess.Code:
		if c := h.lookup(cl); c != nil && c.connackMethod != "" {
			pk.Properties.AuthenticationMethod = c.connackMethod
			pk.Properties.AuthenticationData = c.connackData
		}
	}
	return pk
}

// OnAuthPacket handles an AUTH packet after CONNACK: re-authentication and
// the rules about AUTH. It writes the session's answer itself (mochi sends
// nothing for AUTH): AUTH 0x00 or 0x18, or DISCONNECT with the session's
// reason code and reason string before closing.
func (h *Hook) OnAuthPacket(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	c := h.lookup(cl)
	if c == nil {
		return pk, packets.ErrProtocolViolation
	}
	resp := c.s.Auth(h.ctx, authPacket(pk))
	// mochi logs a packet whose handling failed: scrub its data first.
	clear(pk.Properties.AuthenticationData)
	c.carry(resp.Packet, resp.Close)
	if resp.Close {
		if resp.Err != nil {
			return pk, fmt.Errorf("%w: %w", errEnded, resp.Err)
		}
		return pk, errEnded
	}
	return pk, nil
}

// OnACLCheck answers mochi's publish, subscribe and delivery checks through
// the client's session ([auth.Session.Authorize]): write is a Publish of
// topic; otherwise topic is a Subscribe filter, or the topic name of a
// message about to be delivered, both checked as Subscribe. The client of
// an offline persistent session is checked with the principal its session
// last had, until that principal's expiry; it publishes nothing. A client
// without a session, or whose session has ended, is denied. A hit in the
// session's decision cache allocates nothing.
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	v, ok := h.clients.Load(cl)
	if !ok {
		return false
	}
	c := v.(*client)
	kind := auth.Subscribe
	if write {
		kind = auth.Publish
	}
	a := auth.Action{Kind: kind, Topic: topic}
	var d auth.Decision
	p := c.offline.Load()
	if p == nil {
		d = c.s.Authorize(h.ctx, a)
	} else if !write && (p.Expiry().IsZero() || h.now().Before(p.Expiry())) {
		d = c.s.Authorizer().Authorize(h.ctx, p, a)
	}
	if !d.Allowed && h.log.Enabled(h.ctx, slog.LevelDebug) {
		if p == nil {
			p = c.s.Principal()
		}
		h.log.LogAttrs(h.ctx, slog.LevelDebug, "mqttauth: denied",
			slog.String("decision", "deny"), slog.String("client_id", cl.ID),
			slog.String("username", username(p)), slog.String("action", kind.String()),
			slog.String("topic", topic), slog.String("reason_code", auth.NotAuthorized.String()),
			slog.Bool("offline", c.offline.Load() != nil))
	}
	return d.Allowed
}

func username(p *auth.Principal) string {
	if p == nil {
		return ""
	}
	return p.Username()
}

// OnDisconnect ends the client's session. When mochi keeps the session (a
// session expiry interval, or an MQTT 3 client without Clean Session) and
// the session was still authenticated, the hook keeps the principal it last
// had, so that mochi can go on queueing the messages of its subscriptions
// (mochi checks every delivery, queueing included, with OnACLCheck). That
// principal is dropped when the session expires (OnClientExpired), is taken
// over or resumed by a new connection (OnSessionEstablished), or the server
// stops. A session that the Session itself ended (expiry, revocation) keeps
// nothing.
func (h *Hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	c := h.lookup(cl)
	if c == nil {
		return
	}
	p := c.s.Principal()
	if expire || p == nil || cl.IsTakenOver() {
		h.forget(c)
		return
	}
	// Under omu, so that OnSessionEstablished of a client that takes the
	// session over either sees this entry or has already replaced cl in
	// srv.Clients (then cl is forgotten here).
	h.omu.Lock()
	cur, ok := h.srv.Clients.Get(cl.ID)
	keep := ok && cur == cl
	var prev *client
	if keep {
		c.offline.Store(p)
		prev = h.offline[cl.ID]
		h.offline[cl.ID] = c
	}
	h.omu.Unlock()
	if prev != nil && prev != c {
		h.forget(prev)
	}
	if !keep {
		h.forget(c)
		return
	}
	c.s.Close() // ends timers and leaves the Manager; the principal is kept above
}

// OnClientExpired drops what the hook kept for an offline session that
// mochi has now expired.
func (h *Hook) OnClientExpired(cl *mqtt.Client) {
	if c := h.lookup(cl); c != nil {
		h.forget(c)
	}
}

// client is the hook's state for one mochi client, and the auth.Conn its
// Session ends the connection through.
type client struct {
	h  *Hook
	cl *mqtt.Client
	s  *auth.Session

	// offline is the principal the session last had, set while mochi keeps
	// the session of a closed connection.
	offline atomic.Pointer[auth.Principal]

	// Set in OnConnect before CONNACK, read by OnPacketEncode on the same
	// goroutine while mochi writes the CONNACK.
	connackMethod string
	connackData   []byte
	resume        atomic.Pointer[resumption] // order.go: from OnSessionEstablish to OnSessionEstablished
}

// Close implements auth.Conn: the session ends the connection on its own
// (expiry, revocation, a stalled exchange).
func (c *client) Close(final auth.Packet) {
	if conn := c.cl.Net.Conn; conn != nil {
		_ = conn.SetWriteDeadline(time.Now().Add(c.h.writeTO))
	}
	c.carry(final, true)
}

// carry sends p (unless it is None) and closes the connection when end is
// set. A DISCONNECT goes through mochi's DisconnectClient, which always
// writes the reason code byte and then stops the client.
func (c *client) carry(p auth.Packet, end bool) {
	switch p.Type {
	case auth.DISCONNECT:
		if c.cl.Properties.ProtocolVersion < 5 {
			break // MQTT 3 has no server DISCONNECT: close silently
		}
		// DisconnectClient stops the client too, unless the server runs with
		// Compatibilities.PassiveClientDisconnect: then Stop below does.
		_ = c.h.srv.DisconnectClient(c.cl, packets.Code{Code: byte(p.Code), Reason: p.Reason})
	case auth.CONNACK:
		c.h.refuse(c.cl, p.Code, p.Reason)
	case auth.AUTH:
		_ = c.write(p)
	}
	if end {
		c.cl.Stop(errEnded)
	}
}

// write sends an AUTH packet.
func (c *client) write(p auth.Packet) error {
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Auth},
		ReasonCode:  byte(p.Code),
		Properties: packets.Properties{
			AuthenticationMethod: p.Method,
			AuthenticationData:   bytes.Clone(p.Data),
			ReasonString:         p.Reason,
		},
	}
	return c.cl.WritePacket(out)
}
