package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttauth/mqttauth/auth"
)

// readBufferSize is the buffer of each leg's reader: small, since an idle
// connection keeps two.
const readBufferSize = 1024

// conn is one client connection and, once the client is authenticated, its
// broker leg. It is the auth.Conn through which the Session ends it.
//
// Goroutines: serve reads the client and writes the broker; downstream
// reads the broker and writes the client. Writes to the client are
// serialized by wmu (the serve goroutine answers some packets itself, and
// the Session writes its final packet from a timer). Each read is followed
// by a blocking write to the other leg before the next read, so a leg is
// read only as fast as the other accepts writes.
type conn struct {
	g  *Gateway
	nc net.Conn // the client leg (a *tls.Conn when Config.TLS is set)
	cr *bufio.Reader
	s  *auth.Session

	version  byte   // the client's protocol level: 4 or 5
	clientID string // for logs
	user     string // the principal's user name, for logs

	wmu sync.Mutex // serializes writes to nc
	umu sync.Mutex // serializes writes to up

	mu        sync.Mutex
	up        net.Conn // the broker leg, once dialed
	closed    bool     // the legs are (being) closed
	connacked bool     // the success CONNACK was written to the client
	released  bool     // the pending slot was given back

	// Used by the serve goroutine only.
	upq     batch               // packets for the broker, not yet written
	aliases map[uint16][]byte   // the client's topic aliases
	denied2 map[uint16]struct{} // 3.1.1: denied QoS 2 packet ids awaiting PUBREL

	// subs are SUBSCRIBE packets forwarded with some filters removed: the
	// SUBACK codes of the removed filters, 0 where the broker's code goes.
	smu  sync.Mutex
	subs map[uint16][]byte
}

func (g *Gateway) newConn(nc net.Conn) *conn {
	return &conn{g: g, nc: nc}
}

// authorize asks the session about an action with its current principal
// (the Manager's Authorizer, with the session's own decision cache when
// that Authorizer gives one: see auth.SessionAuthorizer); before
// authentication and after the session ended it denies.
func (c *conn) authorize(kind auth.ActionKind, topic string) bool {
	return c.s.Authorize(c.g.ctx, auth.Action{Kind: kind, Topic: topic}).Allowed
}

// serve runs the connection from accept to close.
func (c *conn) serve() {
	defer c.g.untrack(c)
	defer c.release()
	defer c.closeLegs()
	if c.g.cfg.TLS != nil {
		tc := tls.Server(c.nc, c.g.cfg.TLS)
		ctx, cancel := context.WithTimeout(c.g.ctx, c.g.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		c.mu.Lock()
		c.nc = tc
		c.mu.Unlock()
		if err != nil {
			c.g.log.LogAttrs(c.g.ctx, slog.LevelDebug, "gateway: TLS handshake failed",
				slog.String("remote", c.nc.RemoteAddr().String()), slog.String("err", err.Error()))
			return
		}
	}
	c.cr = bufio.NewReaderSize(c.nc, readBufferSize)
	ur, ok := c.authenticate()
	if c.s != nil {
		defer c.s.Close()
	}
	if !ok {
		return
	}
	c.release()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.downstream(ur)
	}()
	err := c.upstreamLoop()
	c.closeLegs()
	<-done
	c.g.log.LogAttrs(c.g.ctx, slog.LevelDebug, "gateway: connection ended",
		slog.String("client_id", c.clientID), slog.String("username", c.user), slog.Any("err", err))
}

// release gives back the connection's slot among the unauthenticated ones.
func (c *conn) release() {
	c.mu.Lock()
	r := c.released
	c.released = true
	c.mu.Unlock()
	if !r {
		<-c.g.pending
	}
}

// closeLegs closes both legs; the goroutines blocked on them return.
func (c *conn) closeLegs() {
	c.mu.Lock()
	c.closed = true
	nc, up := c.nc, c.up
	c.mu.Unlock()
	_ = nc.Close()
	if up != nil {
		_ = up.Close()
	}
}

// Close implements auth.Conn: the Session ends the connection on its own
// (expiry, revocation, a stalled exchange). It sends final when the client
// can receive it, then closes both legs.
func (c *conn) Close(final auth.Packet) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	connacked := c.connacked
	c.mu.Unlock()
	switch {
	case final.Type == auth.DISCONNECT && !connacked:
		// The client has no CONNACK yet: a DISCONNECT would precede it.
	case final.Type == auth.CONNACK && connacked:
	default:
		_ = c.send(final)
	}
	if final.Type == auth.DISCONNECT && connacked {
		c.g.log.LogAttrs(c.g.ctx, slog.LevelInfo, "gateway: disconnected by authentication",
			slog.String("client_id", c.clientID), slog.String("reason_code", final.Code.String()))
	}
	c.closeLegs()
}

// writeClient writes one packet to the client.
func (c *conn) writeClient(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.g.cfg.WriteTimeout))
	_, err := c.nc.Write(b)
	return err
}

// writeUp queues one packet for the broker; the serve goroutine flushes
// the queue (one writev) before it would block reading the client. Only
// the serve goroutine writes there.
func (c *conn) writeUp(b []byte) error {
	c.upq.add(b)
	if c.upq.full() {
		return c.flushUp()
	}
	return nil
}

// flushUp writes the queued packets to the broker.
func (c *conn) flushUp() error {
	c.umu.Lock()
	defer c.umu.Unlock()
	return c.upq.flush(c.up, c.g.cfg.WriteTimeout)
}

// ackUp writes an acknowledgement to the broker from the downstream
// goroutine (for a delivery the gateway withheld).
func (c *conn) ackUp(b []byte) error {
	c.umu.Lock()
	defer c.umu.Unlock()
	_ = c.up.SetWriteDeadline(time.Now().Add(c.g.cfg.WriteTimeout))
	_, err := c.up.Write(b)
	return err
}

// send writes a packet of the authentication flow in the client's protocol
// version. MQTT 3.1.1 has no AUTH and no server DISCONNECT: nothing is sent.
func (c *conn) send(p auth.Packet) error {
	var b []byte
	switch p.Type {
	case auth.AUTH:
		if c.version != 5 {
			return nil
		}
		b = encode(&packets.Auth{ReasonCode: byte(p.Code), Properties: &packets.Properties{
			AuthMethod: p.Method, AuthData: p.Data, ReasonString: p.Reason}})
	case auth.CONNACK:
		b = c.connackFailure(p.Code, p.Reason)
	case auth.DISCONNECT:
		if c.version != 5 {
			return nil
		}
		b = encode(&packets.Disconnect{ReasonCode: byte(p.Code), Properties: &packets.Properties{ReasonString: p.Reason}})
	default:
		return nil
	}
	return c.writeClient(b)
}

// connackFailure is a refusing CONNACK in the client's version.
func (c *conn) connackFailure(code auth.ReasonCode, reason string) []byte {
	if c.version == 5 {
		return encode(&packets.Connack{ReasonCode: byte(code), Properties: &packets.Properties{ReasonString: reason}})
	}
	rc, _ := code.ConnackV311()
	return []byte{packets.CONNACK << 4, 2, 0, rc}
}

// disconnect sends DISCONNECT with code to an MQTT v5 client.
func (c *conn) disconnect(code auth.ReasonCode) {
	_ = c.send(auth.Packet{Type: auth.DISCONNECT, Code: code})
}

// authenticate reads CONNECT, runs the Session's exchange, connects to the
// broker with the principal's identity and writes the CONNACK. It returns
// the broker leg's reader when the client is connected.
func (c *conn) authenticate() (*bufio.Reader, bool) {
	g := c.g
	_ = c.nc.SetReadDeadline(time.Now().Add(g.cfg.ConnectTimeout))
	p, err := readPacket(c.cr, g.cfg.MaxPacketSize)
	if err != nil {
		c.logRefused(err)
		return nil, false
	}
	if p.typ() != packets.CONNECT {
		// The first packet must be CONNECT [MQTT-3.1.0-1].
		c.logRefused(fmt.Errorf("%w: first packet is not CONNECT", ErrMalformed))
		return nil, false
	}
	cp, err := parseConnect(p.body)
	if err != nil {
		if errors.Is(err, ErrUnsupportedVersion) && cp != nil && cp.ProtocolVersion != 5 {
			// 0x01: unacceptable protocol level [MQTT-3.1.2-2].
			_ = c.writeClient([]byte{packets.CONNACK << 4, 2, 0, 0x01})
		}
		c.logRefused(err)
		return nil, false
	}
	c.version = cp.ProtocolVersion
	c.clientID = cp.ClientID
	c.s = g.m.NewSession(c)
	req := auth.Request{
		ClientID:        cp.ClientID,
		Username:        cp.Username,
		HasUsername:     cp.UsernameFlag,
		Password:        cp.Password,
		HasPassword:     cp.PasswordFlag,
		AuthMethod:      cp.Properties.AuthMethod,
		AuthData:        cp.Properties.AuthData,
		RemoteAddr:      c.nc.RemoteAddr(),
		Listener:        g.cfg.Listener,
		ProtocolVersion: cp.ProtocolVersion,
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		req.TLS = &cs
	}
	resp := c.s.Connect(g.ctx, &req)
	// The credentials have been judged; none of them goes upstream.
	clear(cp.Password)
	clear(cp.Properties.AuthData)
	clear(p.raw)
	cp.Password, cp.PasswordFlag = nil, false

	for resp.Packet.Type == auth.AUTH {
		if err := c.send(resp.Packet); err != nil {
			c.s.Close()
			return nil, false
		}
		resp = c.readExchange()
	}
	if resp.Packet.Type != auth.CONNACK || resp.Packet.Code != auth.Success {
		if resp.Packet.Type == auth.CONNACK {
			_ = c.send(resp.Packet)
		}
		c.logRefused(resp.Err)
		return nil, false
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	principal := c.s.Principal()
	if principal == nil {
		return nil, false // ended meanwhile
	}
	c.user = principal.Username()
	if cp.WillFlag {
		// The broker publishes the Will on the client's behalf: authorize
		// it now, as a Publish of its topic.
		if !c.authorize(auth.Publish, cp.WillTopic) {
			c.s.Close()
			_ = c.writeClient(c.connackFailure(auth.NotAuthorized, "will topic not authorized"))
			c.logRefused(errors.New("gateway: Will topic not authorized"))
			return nil, false
		}
	}
	up, ur, ca, err := c.dialUpstream(cp, principal)
	if err != nil {
		c.s.Close()
		_ = c.writeClient(c.connackFailure(auth.ServerUnavailable, ""))
		c.logRefused(err)
		return nil, false
	}
	if ca.code != 0 {
		// The broker refused: relay its code.
		c.s.Close()
		_ = up.Close()
		if c.version == 5 {
			_ = c.writeClient(encode(&packets.Connack{ReasonCode: ca.code, Properties: &packets.Properties{ReasonString: ca.props.ReasonString}}))
		} else {
			_ = c.writeClient([]byte{packets.CONNACK << 4, 2, 0, ca.code})
		}
		c.logRefused(fmt.Errorf("%w: CONNACK 0x%02x", ErrUpstream, ca.code))
		return nil, false
	}
	var out []byte
	if c.version == 5 {
		props := ca.props
		props.AuthMethod, props.AuthData = resp.Packet.Method, resp.Packet.Data
		tam := g.cfg.TopicAliasMaximum
		props.TopicAliasMaximum = &tam
		mps := uint32(g.cfg.MaxPacketSize)
		if props.MaximumPacketSize == nil || *props.MaximumPacketSize > mps {
			props.MaximumPacketSize = &mps
		}
		out = encode(&packets.Connack{SessionPresent: ca.sessionPresent, Properties: props})
	} else {
		out = []byte{packets.CONNACK << 4, 2, 0, 0}
		if ca.sessionPresent {
			out[2] = 1
		}
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = up.Close()
		return nil, false
	}
	c.up = up
	c.connacked = true
	c.wmu.Lock() // before unlocking mu: a Close now writes after the CONNACK
	c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
	_, err = c.nc.Write(out)
	c.wmu.Unlock()
	if err != nil {
		return nil, false
	}
	g.log.LogAttrs(g.ctx, slog.LevelInfo, "gateway: connected",
		slog.String("client_id", c.clientID), slog.String("username", c.user),
		slog.String("method", principal.Method()), slog.Int("protocol", int(c.version)))
	return ur, true
}

func (c *conn) logRefused(err error) {
	if err == nil {
		return
	}
	c.g.log.LogAttrs(c.g.ctx, slog.LevelInfo, "gateway: connection refused",
		slog.String("client_id", c.clientID), slog.String("remote", c.nc.RemoteAddr().String()),
		slog.String("err", err.Error()))
}

// readExchange reads the client's answer to an AUTH 0x18 before CONNACK
// and hands it to the Session.
func (c *conn) readExchange() auth.Response {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.g.cfg.ExchangeReadTimeout))
	p, err := readPacket(c.cr, c.g.cfg.MaxPacketSize)
	if err != nil {
		if c.s.Closed() {
			// The Session's exchange timer ended it and sent the CONNACK.
			return auth.Response{Close: true, Err: fmt.Errorf("gateway: %w", auth.ErrTimeout)}
		}
		c.s.Close()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			_ = c.writeClient(c.connackFailure(auth.NotAuthorized, ""))
			err = auth.ErrTimeout
		case errors.Is(err, ErrPacketTooLarge):
			_ = c.writeClient(c.connackFailure(auth.PacketTooLarge, ""))
		case errors.Is(err, ErrMalformed):
			_ = c.writeClient(c.connackFailure(auth.MalformedPacket, ""))
		}
		return auth.Response{Close: true, Err: fmt.Errorf("gateway: reading the client's AUTH: %w", err)}
	}
	switch p.typ() {
	case packets.AUTH:
		a := &packets.Auth{Properties: &packets.Properties{}}
		if err := a.Unpack(bytes.NewBuffer(p.body)); err != nil {
			c.s.Close()
			_ = c.writeClient(c.connackFailure(auth.MalformedPacket, ""))
			return auth.Response{Close: true, Err: fmt.Errorf("%w: AUTH: %w", ErrMalformed, err)}
		}
		resp := c.s.Auth(c.g.ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReasonCode(a.ReasonCode),
			Method: a.Properties.AuthMethod, Data: a.Properties.AuthData})
		clear(p.raw)
		return resp
	case packets.DISCONNECT:
		c.s.Close()
		return auth.Response{Close: true, Err: errors.New("gateway: the client disconnected during the authentication exchange")}
	default:
		return c.s.OtherPacket()
	}
}

// dialUpstream connects to the broker and sends the CONNECT of the
// principal: the client's CONNECT with the principal's user name, no
// password and no enhanced-authentication properties.
func (c *conn) dialUpstream(cp *packets.Connect, p *auth.Principal) (net.Conn, *bufio.Reader, connack, error) {
	g := c.g
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.UpstreamTimeout)
	defer cancel()
	nc, err := g.cfg.Dialer.DialContext(ctx, "tcp", g.cfg.Upstream)
	if err != nil {
		return nil, nil, connack{}, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	fail := func(err error) (net.Conn, *bufio.Reader, connack, error) {
		_ = nc.Close()
		return nil, nil, connack{}, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	if g.cfg.ProxyProtocol {
		if _, err := nc.Write(proxyHeader(c.nc.RemoteAddr(), c.nc.LocalAddr())); err != nil {
			return fail(err)
		}
	}
	if g.cfg.UpstreamTLS != nil {
		tc := tls.Client(nc, g.cfg.UpstreamTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		nc = tc
	}
	up := *cp
	up.Username, up.UsernameFlag = p.Username(), p.Username() != ""
	up.Password, up.PasswordFlag = nil, false
	props := *cp.Properties
	props.AuthMethod, props.AuthData = "", nil
	if up.ProtocolVersion == 5 {
		// The broker must not send the gateway more than it reads.
		mps := uint32(g.cfg.MaxPacketSize)
		if props.MaximumPacketSize == nil || *props.MaximumPacketSize > mps {
			props.MaximumPacketSize = &mps
		}
	}
	up.Properties = &props
	if _, err := nc.Write(encodeConnect(&up)); err != nil {
		return fail(err)
	}
	ur := bufio.NewReaderSize(nc, readBufferSize)
	pk, err := readPacket(ur, g.cfg.MaxPacketSize)
	if err != nil {
		return fail(err)
	}
	if pk.typ() != packets.CONNACK {
		return fail(fmt.Errorf("%w: first packet from the broker is not CONNACK", ErrMalformed))
	}
	ca, err := parseConnack(pk.body, cp.ProtocolVersion)
	if err != nil {
		return fail(err)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, ur, ca, nil
}

// upstreamLoop relays the client's packets to the broker, authorizing
// PUBLISH and SUBSCRIBE and answering AUTH itself, until either leg ends.
func (c *conn) upstreamLoop() error {
	for {
		p, err := readPacket(c.cr, c.g.cfg.MaxPacketSize)
		if err != nil {
			switch {
			case errors.Is(err, ErrPacketTooLarge):
				c.disconnect(auth.PacketTooLarge)
			case errors.Is(err, ErrMalformed):
				c.disconnect(auth.MalformedPacket)
			}
			return err
		}
		switch p.typ() {
		case packets.PUBLISH:
			err = c.publish(p)
		case packets.SUBSCRIBE:
			err = c.subscribe(p)
		case packets.PUBREL:
			if id, ok := packetID(p.body); ok && c.denied2 != nil {
				if _, denied := c.denied2[id]; denied {
					delete(c.denied2, id)
					err = c.writeClient(ack(packets.PUBCOMP, id, 0, c.version))
					break
				}
			}
			err = c.writeUp(p.raw)
		case packets.AUTH:
			err = c.reauth(p)
		case packets.CONNECT:
			c.disconnect(auth.ProtocolError) // [MQTT-3.1.0-2]
			return fmt.Errorf("%w: second CONNECT", auth.ErrProtocol)
		case packets.DISCONNECT:
			_ = c.writeUp(p.raw)
			_ = c.flushUp()
			return nil
		default:
			err = c.writeUp(p.raw)
		}
		if err == nil && !packetBuffered(c.cr) {
			err = c.flushUp()
		}
		if err != nil {
			return err
		}
	}
}

// errEnd ends the relay after the gateway answered the client itself.
var errEnd = errors.New("gateway: connection ended")

// publish authorizes a PUBLISH (after resolving its topic alias) and
// forwards it, or answers a denied one itself: PUBACK or PUBREC 0x87 for
// QoS 1 and 2, nothing for QoS 0.
func (c *conn) publish(p packet) error {
	pub, err := parsePublish(p, c.version)
	if err != nil {
		c.disconnect(auth.MalformedPacket)
		return err
	}
	topic, out := pub.topic, p.raw
	if pub.hasAlias {
		if pub.alias == 0 || pub.alias > c.g.cfg.TopicAliasMaximum {
			c.disconnect(0x94) // Topic Alias invalid [MQTT-3.3.2-9]
			return fmt.Errorf("%w: topic alias %d", auth.ErrProtocol, pub.alias)
		}
		if c.aliases == nil {
			c.aliases = make(map[uint16][]byte)
		}
		if len(topic) == 0 {
			t, ok := c.aliases[pub.alias]
			if !ok {
				c.disconnect(auth.ProtocolError) // [MQTT-3.3.4-?]: unknown alias
				return fmt.Errorf("%w: unknown topic alias %d", auth.ErrProtocol, pub.alias)
			}
			topic = t
		} else {
			c.aliases[pub.alias] = bytes.Clone(topic)
		}
		if out, err = pub.withoutAlias(p.raw[0], topic); err != nil {
			c.disconnect(auth.MalformedPacket)
			return err
		}
	}
	if len(topic) == 0 {
		c.disconnect(auth.ProtocolError) // [MQTT-3.3.2-1]
		return fmt.Errorf("%w: PUBLISH without a topic", auth.ErrProtocol)
	}
	t := string(topic)
	if !c.authorize(auth.Publish, t) {
		c.logDenied(auth.Publish, t)
		switch pub.qos {
		case 1:
			return c.writeClient(ack(packets.PUBACK, pub.id, byte(auth.NotAuthorized), c.version))
		case 2:
			if c.version != 5 {
				// 3.1.1 has no failure code: the flow completes here,
				// PUBREL is answered with PUBCOMP by the gateway.
				if c.denied2 == nil {
					c.denied2 = make(map[uint16]struct{})
				}
				c.denied2[pub.id] = struct{}{}
			}
			return c.writeClient(ack(packets.PUBREC, pub.id, byte(auth.NotAuthorized), c.version))
		}
		return nil
	}
	return c.writeUp(out)
}

// subscribe authorizes each filter of a SUBSCRIBE and forwards the allowed
// ones; the SUBACK is merged in downstream. When none is allowed the
// gateway answers the SUBACK itself.
func (c *conn) subscribe(p packet) error {
	sub, err := parseSubscribe(p.body, c.version)
	if err != nil {
		c.disconnect(auth.MalformedPacket)
		return err
	}
	deniedCode := byte(auth.NotAuthorized)
	if c.version != 5 {
		deniedCode = 0x80 // 3.1.1 SUBACK failure
	}
	codes := make([]byte, len(sub.subs))
	allowed := make([]subscription, 0, len(sub.subs))
	for i, s := range sub.subs {
		f := string(s.filter)
		if c.authorize(auth.Subscribe, f) {
			allowed = append(allowed, s)
			continue
		}
		c.logDenied(auth.Subscribe, f)
		codes[i] = deniedCode
	}
	switch {
	case len(allowed) == 0:
		return c.writeClient(suback{id: sub.id, codes: codes}.encode(c.version))
	case len(allowed) == len(sub.subs):
		return c.writeUp(p.raw)
	}
	c.smu.Lock()
	if c.subs == nil {
		c.subs = make(map[uint16][]byte)
	}
	c.subs[sub.id] = codes
	c.smu.Unlock()
	return c.writeUp(sub.encode(c.version, allowed))
}

func (c *conn) logDenied(kind auth.ActionKind, topic string) {
	if !c.g.log.Enabled(c.g.ctx, slog.LevelDebug) {
		return
	}
	c.g.log.LogAttrs(c.g.ctx, slog.LevelDebug, "gateway: denied",
		slog.String("decision", "deny"), slog.String("client_id", c.clientID),
		slog.String("username", c.user), slog.String("action", kind.String()),
		slog.String("topic", topic), slog.String("reason_code", auth.NotAuthorized.String()))
}

// reauth hands an AUTH packet after CONNACK to the Session and writes its
// answer; it is never forwarded.
func (c *conn) reauth(p packet) error {
	if c.version != 5 {
		return fmt.Errorf("%w: AUTH from an MQTT 3.1.1 client", auth.ErrProtocol)
	}
	a := &packets.Auth{Properties: &packets.Properties{}}
	if err := a.Unpack(bytes.NewBuffer(p.body)); err != nil {
		c.disconnect(auth.MalformedPacket)
		return fmt.Errorf("%w: AUTH: %w", ErrMalformed, err)
	}
	resp := c.s.Auth(c.g.ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReasonCode(a.ReasonCode),
		Method: a.Properties.AuthMethod, Data: a.Properties.AuthData})
	clear(p.raw)
	if p := c.s.Principal(); p != nil {
		c.user = p.Username()
	}
	if err := c.send(resp.Packet); err != nil {
		return err
	}
	if resp.Close {
		if resp.Err != nil {
			return resp.Err
		}
		return errEnd
	}
	return nil
}

// downstream relays the broker's packets to the client, merging the SUBACK
// of a SUBSCRIBE whose denied filters were removed, until either leg ends;
// then it closes both.
func (c *conn) downstream(ur *bufio.Reader) {
	defer c.closeLegs()
	var q batch
	d := deliveries{}
	for {
		p, err := readPacket(ur, c.g.cfg.MaxPacketSize)
		if err != nil {
			return
		}
		out := p.raw
		switch p.typ() {
		case packets.PUBLISH:
			var ok bool
			if out, ok, err = c.deliver(p, &d); err != nil {
				return
			}
			if !ok {
				continue
			}
		case packets.PUBREL:
			if id, ok := packetID(p.body); ok && d.withheld2 != nil {
				if _, w := d.withheld2[id]; w {
					delete(d.withheld2, id)
					if c.ackUp(ack(packets.PUBCOMP, id, 0, c.version)) != nil {
						return
					}
					continue
				}
			}
		}
		if p.typ() == packets.PUBLISH || p.typ() == packets.PUBACK {
			// The common case: queue, and write once nothing whole is
			// left to read.
			q.add(out)
			if q.full() || !packetBuffered(ur) {
				c.wmu.Lock()
				err = q.flush(c.nc, c.g.cfg.WriteTimeout)
				c.wmu.Unlock()
				if err != nil {
					return
				}
			}
			continue
		}
		c.wmu.Lock()
		err = q.flush(c.nc, c.g.cfg.WriteTimeout)
		c.wmu.Unlock()
		if err != nil {
			return
		}
		switch p.typ() {
		case packets.SUBACK:
			out = c.mergeSuback(p)
		case packets.AUTH:
			return // the gateway named no method upstream [MQTT-4.12.0-1]
		case packets.CONNACK, packets.CONNECT:
			return // protocol errors
		}
		if err := c.writeClient(out); err != nil {
			return
		}
		if p.typ() == packets.DISCONNECT {
			return // relayed (for example 0x8E, session taken over)
		}
	}
}

// deliveries is the downstream goroutine's state about the broker's
// PUBLISH packets.
type deliveries struct {
	// aliases are the broker's topic aliases towards the client, with
	// whether the client learnt each one (it does not when the packet that
	// set it was withheld).
	aliases map[uint16]*alias
	// withheld2 are QoS 2 deliveries the gateway withheld and acknowledged
	// with PUBREC: the broker's PUBREL is answered by the gateway.
	withheld2 map[uint16]struct{}
}

type alias struct {
	topic []byte
	known bool
}

// deliver authorizes a delivery from the broker as a Subscribe of its topic
// name, with the current principal, so that a policy change or a
// re-authentication that removes a subscription stops its messages. A
// withheld QoS 1 or 2 message is acknowledged to the broker by the gateway.
// It returns the packet to relay (rewritten to carry its topic when the
// client does not know the alias in it) and whether to relay it.
func (c *conn) deliver(p packet, d *deliveries) ([]byte, bool, error) {
	pub, err := parsePublish(p, c.version)
	if err != nil {
		return nil, false, err
	}
	topic, out := pub.topic, p.raw
	var a *alias
	if pub.hasAlias {
		if d.aliases == nil {
			d.aliases = make(map[uint16]*alias)
		}
		a = d.aliases[pub.alias]
		switch {
		case len(topic) > 0:
			if a == nil {
				a = &alias{}
				d.aliases[pub.alias] = a
			}
			a.topic, a.known = bytes.Clone(topic), false
		case a == nil:
			return nil, false, fmt.Errorf("%w: unknown topic alias %d from the broker", auth.ErrProtocol, pub.alias)
		default:
			topic = a.topic
		}
	}
	if !c.authorize(auth.Subscribe, string(topic)) {
		switch pub.qos {
		case 1:
			err = c.ackUp(ack(packets.PUBACK, pub.id, 0, c.version))
		case 2:
			if d.withheld2 == nil {
				d.withheld2 = make(map[uint16]struct{})
			}
			d.withheld2[pub.id] = struct{}{}
			err = c.ackUp(ack(packets.PUBREC, pub.id, 0, c.version))
		}
		return nil, false, err
	}
	if a != nil {
		if len(pub.topic) == 0 && !a.known {
			out = pub.withTopic(p.raw[0], topic) // teach the client the alias
		}
		a.known = true
	}
	return out, true, nil
}

// mergeSuback puts the broker's codes for the forwarded filters among the
// gateway's 0x87 codes, in the client's order.
func (c *conn) mergeSuback(p packet) []byte {
	id, ok := packetID(p.body)
	if !ok {
		return p.raw
	}
	c.smu.Lock()
	codes, ok := c.subs[id]
	delete(c.subs, id)
	c.smu.Unlock()
	if !ok {
		return p.raw
	}
	sa, err := parseSuback(p.body, c.version)
	if err != nil {
		return p.raw
	}
	j := 0
	for i := range codes {
		if codes[i] != 0 {
			continue
		}
		if j < len(sa.codes) {
			codes[i] = sa.codes[j]
			j++
		} else {
			codes[i] = byte(auth.UnspecifiedError)
		}
	}
	sa.codes = codes
	return sa.encode(c.version)
}
