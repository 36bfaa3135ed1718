package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// UpstreamProtocol is the MQTT version the gateway speaks to the broker
// (Config.UpstreamProtocol). The zero value is [UpstreamAuto].
type UpstreamProtocol byte

// The upstream protocols.
const (
	// UpstreamAuto speaks the client's version to the broker: the broker
	// must speak MQTT 5 for MQTT 5 clients.
	UpstreamAuto UpstreamProtocol = 0
	// UpstreamV311 speaks MQTT 3.1.1 to the broker for every client: MQTT 5
	// clients are translated (see the package documentation's TRANSLATION
	// section), for brokers that speak 3.1.1 only (NATS, RabbitMQ 3.x).
	UpstreamV311 UpstreamProtocol = 4
	// UpstreamV5 speaks MQTT 5 to the broker: MQTT 3.1.1 clients are
	// refused with return code 1 (unacceptable protocol version); the
	// gateway does not translate 3.1.1 up to 5.
	UpstreamV5 UpstreamProtocol = 5
)

// ErrUpstreamProtocol: a string that names no upstream protocol.
var ErrUpstreamProtocol = errors.New("gateway: unknown upstream protocol (want 5, 3.1.1 or auto)")

// ParseUpstreamProtocol reads "5", "3.1.1" or "auto" (or "": auto), as
// the example gateway's -upstream-protocol flag spells them.
func ParseUpstreamProtocol(s string) (UpstreamProtocol, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return UpstreamAuto, nil
	case "3.1.1", "311", "4":
		return UpstreamV311, nil
	case "5", "5.0":
		return UpstreamV5, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUpstreamProtocol, s)
}

// String returns "auto", "3.1.1" or "5".
func (p UpstreamProtocol) String() string {
	switch p {
	case UpstreamAuto:
		return "auto"
	case UpstreamV311:
		return "3.1.1"
	case UpstreamV5:
		return "5"
	}
	return fmt.Sprintf("UpstreamProtocol(%d)", byte(p))
}

// upstreamVersion returns the protocol level of the broker leg for a
// client of the given level, or 0 when the client is refused.
func (p UpstreamProtocol) upstreamVersion(client byte) byte {
	switch p {
	case UpstreamV311:
		return mqttconn.V311
	case UpstreamV5:
		if client != mqttconn.V5 {
			return 0
		}
		return mqttconn.V5
	}
	return client
}

// Reason codes of the translation (MQTT 5, 2.4).
const (
	codeImplementationSpecific auth.ReasonCode = 0x83
	codeSharedNotSupported     auth.ReasonCode = 0x9E
	codeSubIDsNotSupported     auth.ReasonCode = 0xA1
)

// translation is the state of an MQTT 5 client whose broker leg speaks
// MQTT 3.1.1 (conn.tr; nil when both legs speak the same version).
type translation struct {
	// maxPacket is the client's Maximum Packet Size (0: none): a larger
	// delivery is discarded [MQTT-3.1.2-25].
	maxPacket int
	// problemInfo is the client's Request Problem Information: without
	// it, no Reason String goes in a SUBACK [MQTT-3.1.2-29].
	problemInfo bool
	// assigned is the client identifier the gateway assigned to a client
	// that sent none (MQTT 5 3.2.2.3.7), or "".
	assigned string

	// sem holds a token per QoS 1 or 2 delivery the client has not
	// acknowledged yet, when the client set a Receive Maximum: a 3.1.1
	// broker does not know it, so the gateway stops reading the broker
	// while the client's window is full [MQTT-3.3.4-9].
	sem  chan struct{}
	done chan struct{} // closed with the legs

	mu        sync.Mutex
	inflight  map[uint16]struct{} // deliveries holding a token
	refused   map[uint16]struct{} // deliveries the client refused with PUBREC >= 0x80
	unsubs    map[uint16]int      // UNSUBSCRIBE id → its number of filters
	reasons   map[uint16]string   // SUBSCRIBE id → Reason String for its SUBACK
	closeOnce sync.Once
}

func newTranslation(cp *packets.Connect) *translation {
	t := &translation{problemInfo: true, done: make(chan struct{})}
	if p := cp.Properties; p != nil {
		if p.MaximumPacketSize != nil {
			t.maxPacket = int(*p.MaximumPacketSize)
		}
		if p.RequestProblemInfo != nil && *p.RequestProblemInfo == 0 {
			t.problemInfo = false
		}
		if p.ReceiveMaximum != nil && *p.ReceiveMaximum > 0 {
			t.sem = make(chan struct{}, *p.ReceiveMaximum)
		}
	}
	return t
}

// close releases a downstream goroutine waiting for the client's window.
func (t *translation) close() {
	if t != nil {
		t.closeOnce.Do(func() { close(t.done) })
	}
}

// checkConnect refuses what the broker cannot be asked for: a Will Delay
// Interval (3.1.1 publishes the Will at once).
func (t *translation) checkConnect(cp *packets.Connect) (auth.ReasonCode, string) {
	if cp.WillFlag && cp.WillProperties != nil && cp.WillProperties.WillDelayInterval != nil && *cp.WillProperties.WillDelayInterval > 0 {
		return codeImplementationSpecific, "Will Delay Interval not supported: the broker speaks MQTT 3.1.1"
	}
	return 0, ""
}

// connect turns the upstream CONNECT up (a copy of the client's, with the
// principal's user name) into MQTT 3.1.1. It reports whether the broker's
// session for the client identifier must be discarded first (Clean Start
// with a Session Expiry Interval above 0: 3.1.1 cannot start a new session
// that outlives the connection in one CONNECT).
func (t *translation) connect(up *packets.Connect) (purge bool) {
	var expiry uint32
	if up.Properties != nil && up.Properties.SessionExpiryInterval != nil {
		expiry = *up.Properties.SessionExpiryInterval
	}
	purge = up.CleanStart && expiry > 0
	// Session Expiry 0: the session ends with the connection (Clean
	// Session 1; an existing session is discarded, and CONNACK says so).
	// Above 0: the broker keeps it (Clean Session 0), for as long as the
	// broker keeps sessions: 3.1.1 has no expiry.
	up.CleanStart = expiry == 0
	up.ProtocolVersion = mqttconn.V311
	up.Properties = &packets.Properties{}
	up.WillProperties = nil
	if up.ClientID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		t.assigned = "mqttauth-" + hex.EncodeToString(b[:])
		up.ClientID = t.assigned
	}
	return purge
}

// connack adds to the client's CONNACK properties what the gateway says
// for a 3.1.1 broker: the assigned client identifier, and that
// subscription identifiers and shared subscriptions are not available.
func (t *translation) connack(p *packets.Properties) {
	zero := byte(0)
	p.SubIDAvailable = &zero
	p.SharedSubAvailable = &zero
	p.AssignedClientID = t.assigned
}

// connackCode maps a 3.1.1 broker's CONNACK return code to the MQTT 5
// reason code the client gets. Return code 1 (the broker does not accept
// 3.1.1) is the gateway's problem, not the client's version: 0x88.
func connackCode(rc byte) auth.ReasonCode {
	if rc == 1 {
		return auth.ServerUnavailable
	}
	return auth.FromConnackV311(rc)
}

// publish311 returns a client's PUBLISH (its topic alias resolved into
// topic) as MQTT 3.1.1: the properties are not carried.
func publish311(first byte, topic []byte, pub publish) []byte {
	b := make([]byte, 0, 2+len(topic)+2+len(pub.payload))
	b = appendString(b, topic)
	if pub.qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pub.id)
	}
	return frame(first, append(b, pub.payload...))
}

// publish5 returns a 3.1.1 broker's PUBLISH as MQTT 5: no properties.
func publish5(first byte, pub publish) []byte {
	b := make([]byte, 0, 2+len(pub.topic)+3+len(pub.payload))
	b = appendString(b, pub.topic)
	if pub.qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pub.id)
	}
	b = append(b, 0) // Property Length
	return frame(first, append(b, pub.payload...))
}

// upPublish returns the PUBLISH to send the broker: out as it is, or in
// MQTT 3.1.1.
func (c *conn) upPublish(first byte, topic []byte, pub publish, out []byte) []byte {
	if c.tr == nil {
		return out
	}
	return publish311(first, topic, pub)
}

// unsupported returns the SUBACK reason code of a subscription that a
// 3.1.1 broker cannot honour, with the Reason String, or 0. Options 3.1.1
// has no room for are refused, never dropped: the client learns it from
// the SUBACK. errMalformed is returned for options MQTT 5 forbids.
func (t *translation) unsupported(s subscription, hasSubID bool) (auth.ReasonCode, string, error) {
	o := s.options
	if o&0xC0 != 0 || o&0x03 == 3 || o&0x30 == 0x30 {
		return 0, "", fmt.Errorf("%w: subscription options 0x%02x", ErrMalformed, o) // [MQTT-3.8.3-5]
	}
	switch {
	case hasSubID:
		return codeSubIDsNotSupported, "Subscription Identifiers not supported: the broker speaks MQTT 3.1.1", nil
	case strings.HasPrefix(string(s.filter), "$share/"):
		return codeSharedNotSupported, "Shared Subscriptions not supported: the broker speaks MQTT 3.1.1", nil
	case o&0x04 != 0:
		return codeImplementationSpecific, "No Local not supported: the broker speaks MQTT 3.1.1", nil
	case o&0x08 != 0:
		return codeImplementationSpecific, "Retain As Published not supported: the broker speaks MQTT 3.1.1", nil
	case o&0x30 != 0:
		return codeImplementationSpecific, "Retain Handling other than 0 not supported: the broker speaks MQTT 3.1.1", nil
	}
	return 0, "", nil
}

// hasSubscriptionID reports whether a SUBSCRIBE's properties carry a
// Subscription Identifier.
func hasSubscriptionID(props []byte) (bool, error) {
	if len(props) == 0 {
		return false, nil
	}
	p, err := unpackProps(props, packets.SUBSCRIBE)
	if err != nil {
		return false, err
	}
	return p.SubscriptionIdentifier != nil, nil
}

// subscribe311 returns the SUBSCRIBE with only subs, in MQTT 3.1.1 (no
// properties; of the options, the QoS).
func subscribe311(id uint16, subs []subscription) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	for _, s := range subs {
		b = appendString(b, s.filter)
		b = append(b, s.options&0x03)
	}
	return frame(packets.SUBSCRIBE<<4|2, b)
}

// subackProps returns the raw SUBACK property block with reason as its
// Reason String, when there is one and the client wants it.
func (t *translation) subackProps(reason string) []byte {
	if t == nil || reason == "" || !t.problemInfo {
		return nil
	}
	return appendString([]byte{packets.PropReasonString}, []byte(reason))
}

// noteSubscribe records the Reason String of the SUBACK of id.
func (t *translation) noteSubscribe(id uint16, reason string) {
	if reason == "" || !t.problemInfo {
		return
	}
	t.mu.Lock()
	if t.reasons == nil {
		t.reasons = make(map[uint16]string)
	}
	t.reasons[id] = reason
	t.mu.Unlock()
}

// mergeSuback311 turns the 3.1.1 broker's SUBACK into the client's MQTT 5
// SUBACK: the broker's codes (granted QoS, or 0x80, which MQTT 5 reads as
// Unspecified error) for the forwarded filters among the gateway's own
// codes, in the client's order, with the Reason String of the refused
// options.
func (c *conn) mergeSuback311(p packet) []byte {
	sa, err := parseSuback(p.body, mqttconn.V311)
	if err != nil {
		return nil
	}
	c.smu.Lock()
	codes, ok := c.subs[sa.id]
	delete(c.subs, sa.id)
	c.smu.Unlock()
	if ok {
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
	}
	t := c.tr
	t.mu.Lock()
	reason := t.reasons[sa.id]
	delete(t.reasons, sa.id)
	t.mu.Unlock()
	sa.props = t.subackProps(reason)
	return sa.encode(mqttconn.V5)
}

// relayUp forwards a client packet the gateway does not look into
// (acknowledgements, UNSUBSCRIBE, PINGREQ), in the broker's version.
func (c *conn) relayUp(p packet) error {
	if c.tr == nil {
		return c.writeUp(p.raw)
	}
	t := c.tr
	switch typ := p.typ(); typ {
	case packets.PUBACK, packets.PUBREC, packets.PUBREL, packets.PUBCOMP:
		id, ok := packetID(p.body)
		if !ok {
			c.disconnect(auth.MalformedPacket)
			return fmt.Errorf("%w: acknowledgement without a packet identifier", ErrMalformed)
		}
		switch {
		case typ == packets.PUBACK || typ == packets.PUBCOMP:
			t.release(id)
		case typ == packets.PUBREC && len(p.body) > 2 && p.body[2] >= 0x80:
			// The client refused the message: its QoS 2 flow ends here
			// [MQTT-4.3.3], the broker's goes on with PUBREL, which the
			// gateway answers.
			t.release(id)
			t.mu.Lock()
			if t.refused == nil {
				t.refused = make(map[uint16]struct{})
			}
			t.refused[id] = struct{}{}
			t.mu.Unlock()
		}
		// 3.1.1 acknowledgements carry the packet identifier only.
		return c.writeUp([]byte{p.raw[0], 2, p.body[0], p.body[1]})
	case packets.UNSUBSCRIBE:
		r := reader{b: p.body}
		id := r.uint16()
		r.props()
		n := 0
		b := binary.BigEndian.AppendUint16(nil, id)
		for len(r.b) > 0 && r.err == nil {
			b = appendString(b, r.bytes())
			n++
		}
		if r.err != nil || n == 0 {
			c.disconnect(auth.MalformedPacket)
			return cmpErr(r.err, fmt.Errorf("%w: UNSUBSCRIBE without a topic filter", ErrMalformed))
		}
		t.mu.Lock()
		if t.unsubs == nil {
			t.unsubs = make(map[uint16]int)
		}
		t.unsubs[id] = n
		t.mu.Unlock()
		return c.writeUp(frame(p.raw[0], b))
	}
	return c.writeUp(p.raw)
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// unsuback turns the 3.1.1 broker's UNSUBACK (an identifier only) into the
// client's MQTT 5 UNSUBACK: 0x00 Success for each filter (the broker
// processed them; 3.1.1 does not say whether a subscription existed).
func (t *translation) unsuback(p packet) []byte {
	id, ok := packetID(p.body)
	if !ok {
		return p.raw
	}
	t.mu.Lock()
	n, ok := t.unsubs[id]
	delete(t.unsubs, id)
	t.mu.Unlock()
	if !ok {
		n = 1
	}
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0) // Property Length
	b = append(b, make([]byte, n)...)
	return frame(packets.UNSUBACK<<4, b)
}

// takeRefused reports whether a broker's PUBREL is for a delivery the
// client refused with PUBREC >= 0x80 (the gateway answers PUBCOMP).
func (t *translation) takeRefused(id uint16) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.refused[id]; ok {
		delete(t.refused, id)
		return true
	}
	return false
}

// tryAcquire takes a token of the client's receive window for delivery
// id without waiting; it reports false when the window is full.
func (t *translation) tryAcquire(id uint16) bool {
	if t.sem == nil {
		return true
	}
	t.mu.Lock()
	_, held := t.inflight[id]
	t.mu.Unlock()
	if held {
		return true // a resend of a delivery in flight
	}
	select {
	case t.sem <- struct{}{}:
		t.hold(id)
		return true
	default:
		return false
	}
}

// acquire waits for a token of the client's receive window; it reports
// false when the connection closed first.
func (t *translation) acquire(id uint16) bool {
	select {
	case t.sem <- struct{}{}:
		t.hold(id)
		return true
	case <-t.done:
		return false
	}
}

func (t *translation) hold(id uint16) {
	t.mu.Lock()
	if t.inflight == nil {
		t.inflight = make(map[uint16]struct{})
	}
	t.inflight[id] = struct{}{}
	t.mu.Unlock()
}

// release gives back the token of delivery id, if it holds one.
func (t *translation) release(id uint16) {
	if t.sem == nil {
		return
	}
	t.mu.Lock()
	_, held := t.inflight[id]
	delete(t.inflight, id)
	t.mu.Unlock()
	if held {
		<-t.sem
	}
}

// disconnectUp311 maps the client's MQTT 5 DISCONNECT to 3.1.1: reason
// code 0x00 is a DISCONNECT (the broker discards the Will); any other code
// (0x04 Disconnect with Will Message, or an error) asks for the Will,
// which 3.1.1 expresses by closing without DISCONNECT: closeLegs then
// keeps the Will rules (a Will that may no longer be published is deleted
// with a DISCONNECT first).
func (c *conn) disconnectUp311(p packet) {
	if len(p.body) > 0 && p.body[0] != 0x00 {
		return
	}
	_ = c.writeUp([]byte{packets.DISCONNECT << 4, 0})
	_ = c.flushUp()
	c.mu.Lock()
	c.upDone = true
	c.mu.Unlock()
}

// purgeSession discards the broker's session for up's client identifier
// before the real CONNECT (Clean Start with a Session Expiry Interval
// above 0): a CONNECT with Clean Session 1 on a leg of its own, its
// CONNACK, a DISCONNECT, and the broker's close awaited, so that the
// next CONNECT (Clean Session 0) starts a new persistent session.
func (c *conn) purgeSession(ctx context.Context, up packets.Connect) error {
	nc, err := c.dialBroker(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	up.CleanStart, up.WillFlag, up.WillQOS, up.WillRetain = true, false, 0, false
	up.WillTopic, up.WillMessage = "", nil
	if _, err := nc.Write(encodeConnect(&up)); err != nil {
		return err
	}
	r := bufio.NewReaderSize(nc, 64)
	pk, err := readPacket(r, 64)
	if err != nil {
		return err
	}
	ca, err := parseConnack(pk.body, mqttconn.V311)
	if err != nil || pk.typ() != packets.CONNACK {
		return fmt.Errorf("%w: purging the session: no CONNACK", ErrMalformed)
	}
	if ca.code != 0 {
		return fmt.Errorf("purging the session: CONNACK %d", ca.code)
	}
	if _, err := nc.Write([]byte{packets.DISCONNECT << 4, 0}); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, r) // until the broker closes (ctx's deadline bounds it)
	return nil
}

// deliveryID returns the Packet Identifier of a QoS 1 or 2 PUBLISH.
func deliveryID(raw []byte) uint16 {
	r := reader{b: raw[1:]}
	r.vbi()
	r.bytes()
	return r.uint16()
}
