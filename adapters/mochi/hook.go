package mochi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// HookID is the ID the hook reports to mochi.
const HookID = "mqttauth"

// Config configures a [Hook].
type Config struct {
	// Manager creates the session of every client. Required.
	Manager *auth.Manager
	// Limits protect the server from peers that have not authenticated
	// (mqttconn.Limits: packet size, CONNECT deadline, write timeout, the
	// bound on unauthenticated connections and its per-source share); the
	// zero value means the connection layer's defaults, the same for every
	// adapter. Limits.MaxPacketSize becomes the server's
	// Capabilities.MaximumPacketSize when that is 0 (mochi's default:
	// unlimited), and is announced in CONNACK; a server whose
	// MaximumPacketSize is already set keeps it. The deadline and the
	// bound apply to the connections of [Hook.Listener].
	Limits mqttconn.Limits
	// Logger receives the hook's records; nil means slog.Default(). Secrets
	// are never logged.
	Logger *slog.Logger
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
// DISCONNECT, and it is an error, so mochi publishes the Will message (if
// OnWill lets it).
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
	conn        *mqttconn.Server
	log         *slog.Logger
	allowOthers bool

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
	log := cmp.Or(cfg.Logger, slog.Default())
	conn, err := mqttconn.New(mqttconn.Config{Manager: cfg.Manager, Limits: cfg.Limits, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("mochi: %w", err)
	}
	h := &Hook{
		srv:         srv,
		m:           cfg.Manager,
		conn:        conn,
		log:         log,
		allowOthers: cfg.InsecureAllowOtherAuthHooks,
		pending:     make(map[*client]struct{}),
		offline:     make(map[string]*client),
	}
	if srv.Options.Capabilities != nil && srv.Options.Capabilities.MaximumPacketSize == 0 {
		srv.Options.Capabilities.MaximumPacketSize = conn.Limits().MaxPacketSize
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

// Shutdown shuts the server down in order through the connection layer
// (mqttconn.Server.Shutdown): it stops accepting on the hook's listeners,
// sends DISCONNECT 0x8B to every connected MQTT 5 client, lets the
// authentication exchanges in flight finish until ctx ends, and then
// closes the mochi server. It returns ctx's error when it had to cut
// exchanges short.
func (h *Hook) Shutdown(ctx context.Context) error {
	err := h.conn.Shutdown(ctx)
	_ = h.srv.Close()
	return err
}

// Drain is Shutdown with DISCONNECT 0x9C (Use another server) and
// serverReference as the Server Reference (see mqttconn.Server.Drain).
func (h *Hook) Drain(ctx context.Context, serverReference string) error {
	err := h.conn.Drain(ctx, serverReference)
	_ = h.srv.Close()
	return err
}

// Stats returns the connection layer's counts: connections refused before
// authentication, Wills dropped.
func (h *Hook) Stats() mqttconn.Stats { return h.conn.Stats() }

// ID returns HookID.
func (h *Hook) ID() string { return HookID }

// Provides reports the hook methods the Hook implements.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnStarted, mqtt.OnStopped, mqtt.OnConnect, mqtt.OnConnectAuthenticate,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnACLCheck,
		mqtt.OnAuthPacket, mqtt.OnPacketEncode, mqtt.OnDisconnect, mqtt.OnClientExpired,
		mqtt.OnWill:
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
	// The connection layer refuses every CONNECT from now on (0x88, return
	// code 3 for MQTT 3.1.1) while mochi closes.
	_ = h.conn.Close()
	go func() { _ = h.srv.Close() }()
}

// listenerContext returns the context of the authentication calls of a
// client of the listener id: the Listener's when the hook made it (its
// Close cancels it), else the hook's.
func (h *Hook) listenerContext(id string) context.Context {
	if got, ok := h.srv.Listeners.Get(id); ok {
		if l, ok := got.(*Listener); ok && l.h == h {
			return l.ctx
		}
	}
	return h.ctx
}

// OnStopped ends the sessions of clients that are still known.
func (h *Hook) OnStopped() {
	h.cancel()
	h.sweep(true)
	_ = h.conn.Close()
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
		return c.s()
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
	c.lc.Close()
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

// OnConnect authenticates the client before CONNACK through the connection
// layer (mqttconn.Client.Connect): the CONNECT's malformed-packet checks,
// the whole enhanced-authentication exchange (AUTH 0x18 out, the client's
// AUTH in, read with the deadline of the Manager's ExchangeTimeout), the
// Will as a Publish of its topic, and the refusing CONNACK for the
// client's protocol version. It returns an error when the client is
// refused, and scrubs the password and Authentication Data once judged.
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	h.sweep(false)
	c := &client{h: h, cl: cl, ctx: h.listenerContext(cl.Net.Listener)}
	c.lc = h.conn.NewClient(cl.Net.Conn, transport{c}, cl.Net.Listener)
	h.clients.Store(cl, c)
	h.n.Add(1)

	cp := mqttconn.Connect{
		ProtocolVersion: pk.ProtocolVersion,
		ClientID:        cl.ID,
		Username:        string(pk.Connect.Username),
		HasUsername:     pk.Connect.UsernameFlag,
		Password:        pk.Connect.Password,
		HasPassword:     pk.Connect.PasswordFlag,
		AuthMethod:      pk.Properties.AuthenticationMethod,
		AuthData:        pk.Properties.AuthenticationData,
	}
	if pk.Connect.WillFlag {
		cp.Will = &mqttconn.Will{Topic: pk.Connect.WillTopic, QoS: pk.Connect.WillQos, Retain: pk.Connect.WillRetain}
	}
	// When another permissive hook was found at start, the layer is
	// closed and refuses the client (OnStarted).
	res := c.lc.Connect(c.ctx, &cp)
	if !res.OK && h.refused.Load() {
		res.Err = errRefused
	}
	// The credentials have been judged (and cleared by the layer): drop
	// them from the properties storage hooks persist.
	cl.Properties.Props.AuthenticationData = nil
	if !res.OK {
		h.forget(c)
		if res.Code != 0 {
			return &RefusedError{Code: res.Code, Err: res.Err}
		}
		if res.Err != nil {
			return fmt.Errorf("mochi: %w", res.Err)
		}
		return errEnded
	}
	c.connackMethod, c.connackData = res.Method, res.Data
	h.pmu.Lock()
	h.pending[c] = struct{}{}
	h.pmu.Unlock()
	return nil
}

// transport is the connection layer's view of a mochi client: raw writes
// under mochi's own write lock, reads of the exchange through mochi's
// reader, and mochi's Stop.
type transport struct{ c *client }

// Write writes an encoded packet with mochi's client lock held, as
// mochi's own WritePacket does, bounded by the write timeout.
func (t transport) Write(b []byte) error {
	cl := t.c.cl
	conn := cl.Net.Conn
	if conn == nil || cl.Closed() {
		return mqtt.ErrConnectionClosed
	}
	cl.Lock()
	defer cl.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(t.c.h.conn.Limits().WriteTimeout))
	_, err := conn.Write(b)
	_ = conn.SetWriteDeadline(time.Time{})
	return err
}

// ReadExchange reads the client's next packet with mochi's reader (the
// read loop has not started: OnConnect runs before it).
func (t transport) ReadExchange() (mqttconn.Inbound, error) {
	cl := t.c.cl
	var fh packets.FixedHeader
	err := cl.ReadFixedHeader(&fh)
	var pk packets.Packet
	if err == nil {
		pk, err = cl.ReadPacket(&fh)
	}
	if err != nil {
		var code packets.Code
		switch {
		case errors.Is(err, packets.ErrPacketTooLarge):
			return mqttconn.Inbound{}, fmt.Errorf("%w: %w", mqttconn.ErrPacketTooLarge, err)
		case errors.As(err, &code) && code.Code >= packets.ErrUnspecifiedError.Code:
			return mqttconn.Inbound{}, fmt.Errorf("%w: %w", mqttconn.ErrMalformed, err)
		}
		return mqttconn.Inbound{}, err
	}
	in := mqttconn.Inbound{Type: pk.FixedHeader.Type}
	if pk.FixedHeader.Type == packets.Auth {
		in.Auth = authPacket(pk)
	}
	return in, nil
}

// Close stops the mochi client: its read loop ends, mochi publishes the
// Will (see OnWill) and calls OnDisconnect.
func (t transport) Close() { t.c.cl.Stop(errEnded) }

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
	return c != nil && c.s().Principal() != nil && !h.refused.Load()
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
		if c.s().Authorize(h.ctx, auth.Action{Kind: auth.Subscribe, Topic: filter}).Allowed {
			continue
		}
		old.State.Subscriptions.Delete(filter)
		if h.srv.Topics.Unsubscribe(filter, old.ID) {
			atomic.AddInt64(&h.srv.Info.Subscriptions, -1)
		}
		h.log.LogAttrs(h.ctx, slog.LevelInfo, "mqttauth: subscription of the resumed session removed",
			slog.String("decision", "deny"), slog.String("client_id", old.ID),
			slog.String("username", username(c.s().Principal())), slog.String("topic", filter))
	}
	for _, pk := range old.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		if pk.TopicName != "" && c.s().Authorize(h.ctx, auth.Action{Kind: auth.Subscribe, Topic: pk.TopicName}).Allowed {
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
		c.lc.Connected()
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
// the rules about AUTH, through the connection layer (mqttconn.Client.Auth),
// which writes the answer itself (mochi sends nothing for AUTH): AUTH 0x00
// or 0x18, or DISCONNECT with the session's reason code before closing.
func (h *Hook) OnAuthPacket(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	c := h.lookup(cl)
	if c == nil {
		return pk, packets.ErrProtocolViolation
	}
	ended, err := c.lc.Auth(c.ctx, authPacket(pk))
	// mochi logs a packet whose handling failed: scrub its data first.
	clear(pk.Properties.AuthenticationData)
	if ended {
		if err != nil {
			return pk, fmt.Errorf("%w: %w", errEnded, err)
		}
		return pk, errEnded
	}
	return pk, nil
}

// OnWill authorizes the Will when mochi is about to publish it (the
// connection ended without DISCONNECT 0x00), through the connection layer
// (mqttconn.Client.WillAllowed): with the principal the session has or had
// when it ended and the policy in force now. A Will that may no longer be
// published (a policy reload removed the right, the session expired or was
// revoked) is dropped and counted in [Hook.Stats]. mochi publishes whatever
// OnWill returns, and an error would make it publish the original, so a
// dropped Will is returned with an empty topic, which no subscription
// matches and which is neither retained nor delivered. A Will with a Will
// Delay Interval is judged here, when the connection ends: mochi publishes
// it later without asking any hook.
func (h *Hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if c := h.lookup(cl); c != nil && c.lc.WillAllowed(h.ctx) {
		return will, nil
	}
	return mqtt.Will{}, nil
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
		d = c.s().Authorize(h.ctx, a)
	} else if !write && (p.Expiry().IsZero() || h.m.Clock().Now().Before(p.Expiry())) {
		d = c.s().Authorizer().Authorize(h.ctx, p, a)
	}
	if !d.Allowed && h.log.Enabled(h.ctx, slog.LevelDebug) {
		if p == nil {
			p = c.s().Principal()
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
	p := c.s().Principal()
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
	c.lc.Close() // ends timers and leaves the Manager; the principal is kept above
}

// OnClientExpired drops what the hook kept for an offline session that
// mochi has now expired.
func (h *Hook) OnClientExpired(cl *mqtt.Client) {
	if c := h.lookup(cl); c != nil {
		h.forget(c)
	}
}

// client is the hook's state for one mochi client.
type client struct {
	h  *Hook
	cl *mqtt.Client
	lc *mqttconn.Client
	// ctx is the context of its authentication calls (listenerContext).
	ctx context.Context

	// offline is the principal the session last had, set while mochi keeps
	// the session of a closed connection.
	offline atomic.Pointer[auth.Principal]

	// Set in OnConnect before CONNACK, read by OnPacketEncode on the same
	// goroutine while mochi writes the CONNACK.
	connackMethod string
	connackData   []byte
	resume        atomic.Pointer[resumption] // order.go: from OnSessionEstablish to OnSessionEstablished
}

// s returns the client's session.
func (c *client) s() *auth.Session { return c.lc.Session() }
