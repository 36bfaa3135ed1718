package gateway

import (
	"bytes"
	"cmp"
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
	"github.com/mqttauth/mqttauth/mqttconn"
)

// readBufferSize is the buffer of each leg's reader, taken from a pool
// only while the leg has unread bytes (legreader.go): an idle connection
// holds none.
const readBufferSize = 1024

// conn is one client connection and, once the client is authenticated, its
// broker leg. Its connection-layer side (the Session, the Will, refusals,
// shutdown) is lc, a mqttconn.Client, to which it is the Transport.
//
// Goroutines: serve authenticates the client; then upstreamLoop, on a
// goroutine of its own, reads the client and writes the broker, while
// downstream, on serve's goroutine, reads the broker and writes the
// client. Writes to the client are serialized by wmu (upstreamLoop
// answers some packets itself, and the layer writes the Session's final
// packet from a timer). Each read is
// followed by a blocking write to the other leg before the next read, so a
// leg is read only as fast as the other accepts writes.
type conn struct {
	g  *Gateway
	nc net.Conn   // the client leg (a *tls.Conn when Config.TLS is set)
	cr *legReader // the client leg's packets
	lc *mqttconn.Client

	version   byte         // the client's protocol level: 4 or 5
	upVersion byte         // the broker leg's protocol level (Config.UpstreamProtocol)
	tr        *translation // an MQTT 5 client in front of a 3.1.1 broker, else nil
	clientID  string       // for logs
	user      string       // the principal's user name, for logs

	wmu sync.Mutex // serializes writes to nc
	umu sync.Mutex // serializes writes to up

	mu     sync.Mutex
	up     net.Conn // the broker leg, once dialed
	closed bool     // the legs are (being) closed
	upDone bool     // the client's DISCONNECT went upstream: the broker decides the Will
	// brokerGone: the broker closed its leg first (3.1.1), and
	// brokerClosed decides what the client is told (coordination.go).
	brokerGone bool

	admitted uint64 // the admission's sequence number (Config.Coordination), or 0

	// Used by serve, then by upstreamLoop, only.
	upq     batch               // packets for the broker, not yet written
	aliases map[uint16][]byte   // the client's topic aliases
	denied2 map[uint16]struct{} // 3.1.1: denied QoS 2 packet ids awaiting PUBREL

	// subs are SUBSCRIBE packets forwarded with some filters removed: the
	// SUBACK codes of the removed filters, 0 where the broker's code goes.
	smu  sync.Mutex
	subs map[uint16][]byte
}

// authorize asks the session about an action with its current principal
// (the Manager's Authorizer, with the session's own decision cache when
// that Authorizer gives one: see auth.SessionAuthorizer); before
// authentication and after the session ended it denies.
func (c *conn) authorize(kind auth.ActionKind, topic string) bool {
	if c.g.coord != nil && c.g.coord.reserved(topic) {
		return false // the coordination topic, whatever the policy says
	}
	return c.lc.Authorize(c.g.ctx, kind, topic)
}

// serve runs the connection from accept to close. The connection layer
// set the deadline for the TLS handshake (lazy: on the first read) and the
// CONNECT.
func (c *conn) serve() error {
	defer c.closeLegs()
	c.cr = newClientReader(c.nc)
	ur, err := c.authenticate()
	if c.lc != nil {
		defer c.lc.Close()
	}
	if err != nil {
		return err
	}
	// The client leg is read on a goroutine of its own, whose stack starts
	// small; this goroutine, whose stack grew during the TLS handshake and
	// the authentication, reads the broker leg. An idle connection waits
	// on both with few frames, so that GC shrinks both stacks to 4 KiB:
	// behind TLS, crypto/tls's read frames would keep this one at 8 KiB
	// (see legReader.wait).
	up := make(chan error, 1)
	downDone := make(chan struct{}) // closed when downstream has returned
	go func() {
		err := c.upstreamLoop()
		c.awaitBrokerClosed(downDone)
		c.closeLegs()
		up <- err
	}()
	c.downstream(ur)
	close(downDone)
	err = <-up
	c.logEnded(err)
	return nil
}

// logEnded logs the end of a connection. It is not part of serve, whose
// frame stays small: serve's goroutine waits on the broker leg while the
// connection is idle, and the runtime shrinks an idle goroutine's stack
// only when it uses little of it (see legReader).
func (c *conn) logEnded(err error) {
	c.g.log.LogAttrs(c.g.ctx, slog.LevelDebug, "gateway: connection ended",
		slog.String("client_id", c.clientID), slog.String("username", c.user), slog.Any("err", err))
}

// closeLegs closes both legs; the goroutines blocked on them return. When
// the client had a Will and its connection ends without a DISCONNECT the
// broker saw, the broker publishes the Will once its leg closes: unless
// the connection layer decides that the Will may no longer be published
// (a policy reload removed the right, the session expired or was revoked),
// in which case the gateway first sends the broker a normal DISCONNECT,
// which deletes the Will [MQTT-3.1.2-10].
func (c *conn) closeLegs() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	nc, up, upDone := c.nc, c.up, c.upDone
	c.mu.Unlock()
	c.tr.close()
	_ = nc.Close()
	if up == nil {
		return
	}
	if !upDone && c.lc.Will() != nil && !c.lc.WillAllowed(c.g.ctx) {
		c.umu.Lock()
		_ = up.SetWriteDeadline(time.Now().Add(c.g.lim.WriteTimeout))
		_, _ = up.Write([]byte{packets.DISCONNECT << 4, 0}) // Normal disconnection: no Will
		c.umu.Unlock()
	}
	_ = up.Close()
}

// transport is the connection layer's view of a gateway client.
type transport struct{ c *conn }

// Write writes one packet to the client.
func (t transport) Write(b []byte) error { return t.c.writeClient(b) }

// ReadExchange reads the client's answer to an AUTH 0x18 before CONNACK.
func (t transport) ReadExchange() (mqttconn.Inbound, error) {
	c := t.c
	p, err := c.cr.readPacket(int(c.g.lim.MaxPacketSize))
	if err != nil {
		return mqttconn.Inbound{}, err
	}
	in := mqttconn.Inbound{Type: p.typ()}
	if in.Type == packets.AUTH {
		a := &packets.Auth{Properties: &packets.Properties{}}
		if err := a.Unpack(bytes.NewBuffer(p.body)); err != nil {
			return mqttconn.Inbound{}, fmt.Errorf("%w: AUTH: %w", ErrMalformed, err)
		}
		in.Auth = auth.Packet{Type: auth.AUTH, Code: auth.ReasonCode(a.ReasonCode),
			Method: a.Properties.AuthMethod, Data: a.Properties.AuthData}
		clear(p.raw)
	}
	return in, nil
}

// Close closes both legs.
func (t transport) Close() { t.c.closeLegs() }

// writeClient writes one packet to the client.
func (c *conn) writeClient(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.g.lim.WriteTimeout))
	_, err := c.nc.Write(b)
	return err
}

// writeUp queues one packet for the broker; upstreamLoop flushes the
// queue (one writev) before it would block reading the client. Only
// upstreamLoop writes there.
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
	return c.upq.flush(c.up, c.g.lim.WriteTimeout)
}

// ackUp writes an acknowledgement to the broker from the downstream
// goroutine (for a delivery the gateway withheld).
func (c *conn) ackUp(b []byte) error {
	c.umu.Lock()
	defer c.umu.Unlock()
	_ = c.up.SetWriteDeadline(time.Now().Add(c.g.lim.WriteTimeout))
	_, err := c.up.Write(b)
	return err
}

// disconnect ends the connection from the gateway's side for code: DISCONNECT
// to an MQTT 5 client (a 3.1.1 client's connection is closed), through the
// connection layer.
func (c *conn) disconnect(code auth.ReasonCode) {
	c.lc.Disconnect(code, "")
}

// v5Code returns the MQTT 5 reason code that stands for a broker's CONNACK
// code in version (auth.FromConnackV311 for an MQTT 3.1.1 return code).
func v5Code(code, version byte) auth.ReasonCode {
	if version == 5 {
		return auth.ReasonCode(code)
	}
	return auth.FromConnackV311(code)
}

// authenticate reads CONNECT, runs it through the connection layer (the
// Session's exchange, the Will, refusals), connects to the broker with the
// principal's identity and writes the CONNACK. It returns the broker leg's
// reader when the client is connected.
func (c *conn) authenticate() (*legReader, error) {
	g := c.g
	p, err := c.cr.readPacket(int(g.lim.MaxPacketSize))
	if err != nil {
		return nil, err
	}
	if p.typ() != packets.CONNECT {
		// The first packet must be CONNECT [MQTT-3.1.0-1].
		return nil, fmt.Errorf("%w: first packet is not CONNECT", ErrMalformed)
	}
	cp, err := parseConnect(p.body)
	if err != nil {
		if errors.Is(err, ErrUnsupportedVersion) && cp != nil && cp.ProtocolVersion != 5 {
			// 0x01: unacceptable protocol level [MQTT-3.1.2-2].
			_ = c.writeClient([]byte{packets.CONNACK << 4, 2, 0, 0x01})
		}
		return nil, err
	}
	c.version = cp.ProtocolVersion
	c.clientID = cp.ClientID
	c.lc = g.conn.NewClient(c.nc, transport{c}, g.cfg.Listener)
	if c.upVersion = g.cfg.UpstreamProtocol.upstreamVersion(c.version); c.upVersion == 0 {
		err := fmt.Errorf("%w: MQTT %d client, upstream protocol %v", ErrUnsupportedVersion, c.version, g.cfg.UpstreamProtocol)
		c.lc.Refuse(0x84, "", err) // 3.1.1 return code 1
		return nil, err
	}
	if c.upVersion != c.version {
		c.tr = newTranslation(cp)
	}
	lcp := mqttconn.Connect{
		ProtocolVersion: cp.ProtocolVersion,
		ClientID:        cp.ClientID,
		Username:        cp.Username,
		HasUsername:     cp.UsernameFlag,
		Password:        cp.Password,
		HasPassword:     cp.PasswordFlag,
		AuthMethod:      cp.Properties.AuthMethod,
		AuthData:        cp.Properties.AuthData,
	}
	if cp.WillFlag {
		lcp.Will = &mqttconn.Will{Topic: cp.WillTopic, QoS: cp.WillQOS, Retain: cp.WillRetain}
	}
	res := c.lc.Connect(g.ctx, &lcp)
	// The credentials have been judged (and cleared); none of them goes
	// upstream.
	clear(p.raw)
	cp.Password, cp.PasswordFlag = nil, false
	if !res.OK {
		return nil, cmp.Or(res.Err, error(auth.ErrClosed))
	}
	principal := c.lc.Session().Principal()
	if principal == nil {
		return nil, auth.ErrClosed // ended meanwhile
	}
	c.user = principal.Username()
	if c.tr != nil {
		if code, reason := c.tr.checkConnect(cp); code != 0 {
			err := fmt.Errorf("%w: %s", ErrUpstream, reason)
			c.lc.Refuse(code, reason, err)
			return nil, err
		}
	}
	if err := c.coordinate(cp); err != nil {
		return nil, err
	}
	up, ur, ca, err := c.dialUpstream(cp, principal)
	if err != nil {
		c.lc.Refuse(auth.ServerUnavailable, "", err)
		return nil, err
	}
	if ca.code != 0 {
		// The broker refused: relay its code.
		_ = up.Close()
		err := fmt.Errorf("%w: CONNACK 0x%02x", ErrUpstream, ca.code)
		code, reason := v5Code(ca.code, c.version), ""
		if ca.props != nil {
			reason = ca.props.ReasonString
		}
		if c.tr != nil {
			code = connackCode(ca.code)
		}
		c.lc.Refuse(code, reason, err)
		return nil, err
	}
	var out []byte
	if c.version == 5 {
		props := ca.props
		if c.tr != nil {
			props = &packets.Properties{}
			c.tr.connack(props)
		}
		props.AuthMethod, props.AuthData = res.Method, res.Data
		tam := g.cfg.TopicAliasMaximum
		props.TopicAliasMaximum = &tam
		mps := g.lim.MaxPacketSize
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
		return nil, auth.ErrClosed
	}
	c.up = up
	c.mu.Unlock()
	if err := c.writeClient(out); err != nil {
		return nil, err
	}
	c.lc.Connected()
	g.log.LogAttrs(g.ctx, slog.LevelInfo, "gateway: connected",
		slog.String("client_id", c.clientID), slog.String("username", c.user),
		slog.String("method", principal.Method()), slog.Int("protocol", int(c.version)))
	return ur, nil
}

// dialUpstream connects to the broker and sends the CONNECT of the
// principal: the client's CONNECT with the principal's user name, no
// password and no enhanced-authentication properties.
func (c *conn) dialUpstream(cp *packets.Connect, p *auth.Principal) (net.Conn, *legReader, connack, error) {
	g := c.g
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.UpstreamTimeout)
	defer cancel()
	up := *cp
	up.Username, up.UsernameFlag = p.Username(), p.Username() != ""
	up.Password, up.PasswordFlag = nil, false
	if len(g.cfg.UpstreamPassword) > 0 {
		up.Password, up.PasswordFlag = g.cfg.UpstreamPassword, true
	}
	props := *cp.Properties
	props.AuthMethod, props.AuthData = "", nil
	if up.ProtocolVersion == 5 {
		// The broker must not send the gateway more than it reads.
		mps := g.lim.MaxPacketSize
		if props.MaximumPacketSize == nil || *props.MaximumPacketSize > mps {
			props.MaximumPacketSize = &mps
		}
	}
	up.Properties = &props
	if c.tr != nil && c.tr.connect(&up) {
		if err := c.purgeSession(ctx, up); err != nil {
			return nil, nil, connack{}, fmt.Errorf("%w: %w", ErrUpstream, err)
		}
	}
	nc, err := c.dialBroker(ctx)
	if err != nil {
		return nil, nil, connack{}, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	fail := func(err error) (net.Conn, *legReader, connack, error) {
		_ = nc.Close()
		return nil, nil, connack{}, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	ur := newLegReader(nc)
	ca, err := brokerConnect(nc, &up, func() (packet, error) { return ur.readPacket(int(g.lim.MaxPacketSize)) })
	if err != nil {
		return fail(err)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, ur, ca, nil
}

// dialBroker opens a broker leg (with the PROXY protocol header and TLS
// when configured) whose deadline is ctx's.
func (c *conn) dialBroker(ctx context.Context) (net.Conn, error) {
	g := c.g
	nc, err := g.cfg.Dialer.DialContext(ctx, "tcp", g.cfg.Upstream)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	if g.cfg.ProxyProtocol {
		if _, err := nc.Write(proxyHeader(c.nc.RemoteAddr(), c.nc.LocalAddr())); err != nil {
			_ = nc.Close()
			return nil, err
		}
	}
	if g.cfg.UpstreamTLS != nil {
		tc := tls.Client(nc, g.cfg.UpstreamTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		nc = tc
	}
	return nc, nil
}

// upstreamLoop relays the client's packets to the broker, authorizing
// PUBLISH and SUBSCRIBE and answering AUTH itself, until either leg ends.
// Each packet is handled by fromClient, so that the loop's frame, under
// which an idle connection waits, stays small.
func (c *conn) upstreamLoop() error {
	for {
		var err error
		if c.cr.idle() {
			err = c.cr.wait() // an idle client waits here
		}
		var p packet
		if err == nil {
			p, err = c.cr.next(int(c.g.lim.MaxPacketSize))
		}
		if err != nil {
			return c.readFailed(err)
		}
		if end, err := c.fromClient(p); end || err != nil {
			return err
		}
	}
}

// readFailed disconnects the client for a packet it sent that could not
// be read, and returns err.
func (c *conn) readFailed(err error) error {
	switch {
	case errors.Is(err, ErrPacketTooLarge):
		c.disconnect(auth.PacketTooLarge)
	case errors.Is(err, ErrMalformed):
		c.disconnect(auth.MalformedPacket)
	}
	return err
}

// fromClient handles one packet of the client; end reports that the
// relay ends.
func (c *conn) fromClient(p packet) (end bool, err error) {
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
		err = c.relayUp(p)
	case packets.AUTH:
		err = c.reauth(p)
	case packets.CONNECT:
		c.disconnect(auth.ProtocolError) // [MQTT-3.1.0-2]
		return true, fmt.Errorf("%w: second CONNECT", auth.ErrProtocol)
	case packets.DISCONNECT:
		c.disconnectUp(p)
		return true, nil
	default:
		err = c.relayUp(p)
	}
	if err == nil && !c.cr.buffered() {
		err = c.flushUp()
	}
	return err != nil, err
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
	if err := mqttconn.CheckTopicName(t); err != nil {
		c.disconnect(auth.MalformedPacket) // nothing is forwarded [MQTT-4.13.1-1]
		return err
	}
	if !c.authorize(auth.Publish, t) {
		if c.lc.Session().Closed() {
			// Ending (the legs close next): no PUBACK 0x87 for what
			// was not judged; the client resends it on its next
			// connection.
			return nil
		}
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
	return c.writeUp(c.upPublish(p.raw[0], topic, pub, out))
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
	for _, s := range sub.subs {
		if err := mqttconn.CheckTopicFilter(string(s.filter)); err != nil {
			c.disconnect(auth.MalformedPacket) // [MQTT-4.13.1-1]
			return err
		}
	}
	var subID bool
	var reason string // of the refused options (translation)
	if c.tr != nil {
		if subID, err = hasSubscriptionID(sub.props); err != nil {
			c.disconnect(auth.MalformedPacket)
			return err
		}
	}
	for i, s := range sub.subs {
		f := string(s.filter)
		if c.tr != nil {
			code, why, err := c.tr.unsupported(s, subID)
			if err != nil {
				c.disconnect(auth.MalformedPacket)
				return err
			}
			if code != 0 {
				codes[i], reason = byte(code), why
				continue
			}
		}
		if c.authorize(auth.Subscribe, f) {
			allowed = append(allowed, s)
			continue
		}
		c.logDenied(auth.Subscribe, f)
		codes[i] = deniedCode
	}
	switch {
	case len(allowed) == 0:
		return c.writeClient(suback{id: sub.id, props: c.tr.subackProps(reason), codes: codes}.encode(c.version))
	case len(allowed) == len(sub.subs) && c.tr == nil:
		return c.writeUp(p.raw)
	}
	c.smu.Lock()
	if c.subs == nil {
		c.subs = make(map[uint16][]byte)
	}
	c.subs[sub.id] = codes
	c.smu.Unlock()
	if c.tr != nil {
		c.tr.noteSubscribe(sub.id, reason)
		return c.writeUp(subscribe311(sub.id, allowed))
	}
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

// reauth hands an AUTH packet after CONNACK to the connection layer, which
// writes the Session's answer; it is never forwarded.
func (c *conn) reauth(p packet) error {
	if c.version != 5 {
		c.disconnect(auth.ProtocolError) // closes: 3.1.1 has no DISCONNECT
		return fmt.Errorf("%w: AUTH from an MQTT 3.1.1 client", auth.ErrProtocol)
	}
	a := &packets.Auth{Properties: &packets.Properties{}}
	if err := a.Unpack(bytes.NewBuffer(p.body)); err != nil {
		c.disconnect(auth.MalformedPacket)
		return fmt.Errorf("%w: AUTH: %w", ErrMalformed, err)
	}
	ended, err := c.lc.Auth(c.g.ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReasonCode(a.ReasonCode),
		Method: a.Properties.AuthMethod, Data: a.Properties.AuthData})
	clear(p.raw)
	if pr := c.lc.Session().Principal(); pr != nil {
		c.user = pr.Username()
	}
	if ended {
		return cmp.Or(err, errEnd)
	}
	return nil
}

// disconnectUp forwards the client's DISCONNECT: the broker then discards
// the Will, or, for MQTT 5 reason code 0x04 (Disconnect with Will
// Message), publishes it. A Will that the connection layer says may no
// longer be published is sent as a normal DISCONNECT instead.
func (c *conn) disconnectUp(p packet) {
	if c.tr != nil {
		c.disconnectUp311(p)
		return
	}
	out := p.raw
	if c.version == 5 && len(p.body) > 0 && p.body[0] == 0x04 {
		if c.lc.Will() == nil || !c.lc.WillAllowed(c.g.ctx) {
			out = []byte{packets.DISCONNECT << 4, 0} // Normal disconnection: no Will
		}
	}
	_ = c.writeUp(out)
	_ = c.flushUp()
	c.mu.Lock()
	c.upDone = true
	c.mu.Unlock()
}

// downstream relays the broker's packets to the client, merging the SUBACK
// of a SUBSCRIBE whose denied filters were removed, until either leg ends;
// then it closes both. Each packet is handled by fromBroker, so that the
// loop's frame, under which an idle connection waits, stays small.
func (c *conn) downstream(ur *legReader) {
	defer c.closeLegs()
	s := downState{ur: ur}
	for {
		var err error
		if ur.idle() {
			err = ur.wait() // an idle broker leg waits here
		}
		var p packet
		if err == nil {
			p, err = ur.next(int(c.g.lim.MaxPacketSize))
		}
		if err != nil {
			c.brokerClosed()
			return
		}
		if !c.fromBroker(p, &s) {
			return
		}
	}
}

// downState is the downstream relay's state.
type downState struct {
	ur *legReader
	q  batch // packets for the client, not yet written
	d  deliveries
}

// fromBroker relays one packet of the broker; false ends the relay.
func (c *conn) fromBroker(p packet, s *downState) bool {
	var err error
	out := p.raw
	switch p.typ() {
	case packets.PUBLISH:
		var ok bool
		if out, ok, err = c.deliver(p, &s.d); err != nil {
			return false
		}
		if !ok {
			return true
		}
		if c.tr != nil && p.flags()&0x06 != 0 {
			// The client's Receive Maximum: wait for its window,
			// after sending it what is queued.
			id := deliveryID(out)
			if !c.tr.tryAcquire(id) {
				c.wmu.Lock()
				err = s.q.flush(c.nc, c.g.lim.WriteTimeout)
				c.wmu.Unlock()
				if err != nil || !c.tr.acquire(id) {
					return false
				}
			}
		}
	case packets.PUBREL:
		if id, ok := packetID(p.body); ok && s.d.withheld2 != nil {
			if _, w := s.d.withheld2[id]; w {
				delete(s.d.withheld2, id)
				return c.ackUp(ack(packets.PUBCOMP, id, 0, c.version)) == nil
			}
		}
		if id, ok := packetID(p.body); ok && c.tr != nil && c.tr.takeRefused(id) {
			return c.ackUp(ack(packets.PUBCOMP, id, 0, c.upVersion)) == nil
		}
	}
	if p.typ() == packets.PUBLISH || p.typ() == packets.PUBACK {
		// The common case: queue, and write once nothing whole is
		// left to read.
		s.q.add(out)
		if s.q.full() || !s.ur.buffered() {
			c.wmu.Lock()
			err = s.q.flush(c.nc, c.g.lim.WriteTimeout)
			c.wmu.Unlock()
			if err != nil {
				return false
			}
		}
		return true
	}
	c.wmu.Lock()
	err = s.q.flush(c.nc, c.g.lim.WriteTimeout)
	c.wmu.Unlock()
	if err != nil {
		return false
	}
	switch p.typ() {
	case packets.SUBACK:
		out = c.mergeSuback(p)
	case packets.UNSUBACK:
		if c.tr != nil {
			out = c.tr.unsuback(p)
		}
	case packets.AUTH:
		return false // the gateway named no method upstream [MQTT-4.12.0-1]
	case packets.CONNACK, packets.CONNECT:
		return false // protocol errors
	}
	if err := c.writeClient(out); err != nil {
		return false
	}
	if p.typ() == packets.DISCONNECT {
		return false // relayed (for example 0x8E, session taken over)
	}
	return true
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
	pub, err := parsePublish(p, c.upVersion)
	if err != nil {
		return nil, false, err
	}
	topic, out := pub.topic, p.raw
	if c.tr != nil {
		out = publish5(p.raw[0], pub)
	}
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
	// A delivery above the client's Maximum Packet Size is discarded
	// [MQTT-3.1.2-25] (a 3.1.1 broker does not know the maximum).
	if !c.authorize(auth.Subscribe, string(topic)) || (c.tr != nil && c.tr.maxPacket > 0 && len(out) > c.tr.maxPacket) {
		if c.lc.Session().Closed() {
			// The connection is ending (drain, shutdown, expiry,
			// revocation; the legs close next, after the client's
			// DISCONNECT): neither relayed nor acknowledged, so that
			// the broker keeps the message for the session's next
			// connection.
			return nil, false, nil
		}
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
	if c.tr != nil {
		return c.mergeSuback311(p)
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
