package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// The gateway frames packets itself and decodes with paho.golang's packets
// package only what it must look into. paho's ReadPacket allocates the
// declared Remaining Length before reading it (up to 256 MiB from a 5-byte
// header) and decodes every packet as MQTT v5; readPacket refuses a length
// above the limit first, and the 3.1.1 forms of CONNECT, PUBLISH, SUBSCRIBE
// and SUBACK, which have no properties, are decoded here.

// packet is one MQTT control packet as read from the wire: raw holds the
// fixed header and the body, so that relaying it is one write.
type packet struct {
	raw  []byte
	body []byte // raw without the fixed header
}

func (p packet) typ() byte   { return p.raw[0] >> 4 }
func (p packet) flags() byte { return p.raw[0] & 0x0F }

// readPacket reads one packet of at most max bytes (fixed header included).
// A declared Remaining Length above the limit is refused with
// ErrPacketTooLarge before anything is allocated for it.
func readPacket(r *bufio.Reader, max int) (packet, error) {
	first, err := r.ReadByte()
	if err != nil {
		return packet{}, err
	}
	var hdr [5]byte
	hdr[0] = first
	n, mult := 0, 1
	i := 1
	for ; ; i++ {
		if i > 4 {
			return packet{}, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
		}
		b, err := r.ReadByte()
		if err != nil {
			return packet{}, noEOF(err)
		}
		hdr[i] = b
		n += int(b&0x7F) * mult
		mult *= 128
		if b&0x80 == 0 {
			break
		}
	}
	total := i + 1 + n
	if total > max {
		return packet{}, fmt.Errorf("%w: %d bytes exceed %d", ErrPacketTooLarge, total, max)
	}
	raw := make([]byte, total)
	copy(raw, hdr[:i+1])
	if _, err := io.ReadFull(r, raw[i+1:]); err != nil {
		return packet{}, noEOF(err)
	}
	return packet{raw: raw, body: raw[i+1:]}, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// frame returns the wire form of a packet with the given first byte and body.
func frame(first byte, body []byte) []byte {
	var vbi [4]byte
	n, l := 0, len(body)
	for {
		d := byte(l % 128)
		l /= 128
		if l > 0 {
			d |= 0x80
		}
		vbi[n] = d
		n++
		if l == 0 {
			break
		}
	}
	out := make([]byte, 0, 1+n+len(body))
	out = append(out, first)
	out = append(out, vbi[:n]...)
	return append(out, body...)
}

// encode returns the wire form of a paho packet (written whole, so that a
// TLS connection sends it in one record).
func encode(p interface {
	WriteTo(io.Writer) (int64, error)
}) []byte {
	var b bytes.Buffer
	_, _ = p.WriteTo(&b)
	return b.Bytes()
}

// reader is a cursor over a packet body.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated packet", ErrMalformed)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uint16() uint16 {
	if len(r.b) < 2 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes() []byte {
	n := int(r.uint16())
	if len(r.b) < n {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// vbi reads a Variable Byte Integer.
func (r *reader) vbi() int {
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		b := r.byte()
		if r.err != nil {
			return 0
		}
		n += int(b&0x7F) * mult
		mult *= 128
		if b&0x80 == 0 {
			return n
		}
	}
	r.fail()
	return 0
}

// props reads a v5 property block and returns its raw bytes (length
// prefix excluded).
func (r *reader) props() []byte {
	n := r.vbi()
	if len(r.b) < n {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func appendString(b []byte, s []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendVBI(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// unpackProps decodes a raw v5 property block with paho.
func unpackProps(raw []byte, typ byte) (*packets.Properties, error) {
	var buf bytes.Buffer
	buf.Grow(len(raw) + 4)
	buf.Write(appendVBI(nil, len(raw)))
	buf.Write(raw)
	p := &packets.Properties{}
	if err := p.Unpack(&buf, typ); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return p, nil
}

// parseConnect decodes a CONNECT body of MQTT 3.1.1 (level 4) or 5. Any
// other protocol level is ErrUnsupportedVersion (with the level decoded).
func parseConnect(body []byte) (*packets.Connect, error) {
	r := reader{b: body}
	name := r.bytes()
	level := r.byte()
	if r.err != nil {
		return nil, r.err
	}
	if string(name) != "MQTT" || (level != 4 && level != 5) {
		return &packets.Connect{ProtocolName: string(name), ProtocolVersion: level}, fmt.Errorf("%w: %q level %d", ErrUnsupportedVersion, name, level)
	}
	if level == 5 {
		c := &packets.Connect{Properties: &packets.Properties{}}
		if err := c.Unpack(bytes.NewBuffer(body)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if c.WillFlag && c.WillProperties == nil {
			c.WillProperties = &packets.Properties{}
		}
		return c, nil
	}
	c := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 4, Properties: &packets.Properties{}}
	flags := r.byte()
	if flags&0x01 != 0 {
		return nil, fmt.Errorf("%w: reserved CONNECT flag set", ErrMalformed) // [MQTT-3.1.2-3]
	}
	c.UnpackFlags(flags)
	c.KeepAlive = r.uint16()
	c.ClientID = string(r.bytes())
	if c.WillFlag {
		c.WillProperties = &packets.Properties{}
		c.WillTopic = string(r.bytes())
		c.WillMessage = bytes.Clone(r.bytes())
	}
	if c.UsernameFlag {
		c.Username = string(r.bytes())
	}
	if c.PasswordFlag {
		c.Password = bytes.Clone(r.bytes())
	}
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

// encodeConnect returns the wire form of c in its protocol version.
func encodeConnect(c *packets.Connect) []byte {
	if c.ProtocolVersion == 5 {
		return encode(c)
	}
	b := appendString(nil, []byte("MQTT"))
	b = append(b, 4, c.PackFlags())
	b = binary.BigEndian.AppendUint16(b, c.KeepAlive)
	b = appendString(b, []byte(c.ClientID))
	if c.WillFlag {
		b = appendString(b, []byte(c.WillTopic))
		b = appendString(b, c.WillMessage)
	}
	if c.UsernameFlag {
		b = appendString(b, []byte(c.Username))
	}
	if c.PasswordFlag {
		b = appendString(b, c.Password)
	}
	return frame(packets.CONNECT<<4, b)
}

// connack is a decoded CONNACK.
type connack struct {
	sessionPresent bool
	code           byte
	props          *packets.Properties // v5 only
}

func parseConnack(body []byte, version byte) (connack, error) {
	r := reader{b: body}
	ca := connack{sessionPresent: r.byte()&1 != 0, code: r.byte()}
	if r.err != nil {
		return ca, r.err
	}
	if version == 5 {
		ca.props = &packets.Properties{}
		if len(r.b) > 0 {
			raw := r.props()
			if r.err != nil {
				return ca, r.err
			}
			p, err := unpackProps(raw, packets.CONNACK)
			if err != nil {
				return ca, err
			}
			ca.props = p
		}
	}
	return ca, nil
}

// publish is what the gateway reads of a PUBLISH.
type publish struct {
	qos      byte
	topic    []byte
	id       uint16
	props    []byte // v5 property block, raw
	payload  []byte
	alias    uint16 // Topic Alias property, 0 when absent
	hasAlias bool
}

func parsePublish(p packet, version byte) (publish, error) {
	pub := publish{qos: (p.flags() >> 1) & 3}
	if pub.qos == 3 {
		return pub, fmt.Errorf("%w: PUBLISH with QoS 3", ErrMalformed) // [MQTT-3.3.1-4]
	}
	r := reader{b: p.body}
	pub.topic = r.bytes()
	if pub.qos > 0 {
		pub.id = r.uint16()
	}
	if version == 5 {
		pub.props = r.props()
		if r.err == nil && len(pub.props) > 0 {
			pub.alias, pub.hasAlias = findTopicAlias(pub.props)
		}
	}
	if r.err != nil {
		return pub, r.err
	}
	pub.payload = r.b
	return pub, nil
}

// findTopicAlias scans a PUBLISH property block for the Topic Alias (0x23)
// without decoding the rest.
func findTopicAlias(props []byte) (uint16, bool) {
	r := reader{b: props}
	for len(r.b) > 0 && r.err == nil {
		id := r.vbi()
		switch id {
		case 0x01: // Payload Format Indicator
			r.byte()
		case 0x02: // Message Expiry Interval
			r.uint16()
			r.uint16()
		case 0x03, 0x08: // Content Type, Response Topic
			r.bytes()
		case 0x09: // Correlation Data
			r.bytes()
		case 0x0B: // Subscription Identifier
			r.vbi()
		case 0x23: // Topic Alias
			v := r.uint16()
			return v, r.err == nil
		case 0x26: // User Property
			r.bytes()
			r.bytes()
		default:
			return 0, false
		}
	}
	return 0, false
}

// withoutAlias returns the PUBLISH packet with topic as its topic name and
// no Topic Alias property (v5).
func (pub publish) withoutAlias(first byte, topic []byte) ([]byte, error) {
	props, err := unpackProps(pub.props, packets.PUBLISH)
	if err != nil {
		return nil, err
	}
	props.TopicAlias = nil
	b := appendString(nil, topic)
	if pub.qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pub.id)
	}
	pp := props.Pack(packets.PUBLISH)
	b = appendVBI(b, len(pp))
	b = append(b, pp...)
	b = append(b, pub.payload...)
	return frame(first, b), nil
}

// withTopic returns the PUBLISH packet with topic as its topic name and
// its properties (Topic Alias included) unchanged: it sets the alias at the
// receiver.
func (pub publish) withTopic(first byte, topic []byte) []byte {
	b := appendString(nil, topic)
	if pub.qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pub.id)
	}
	b = appendVBI(b, len(pub.props))
	b = append(b, pub.props...)
	b = append(b, pub.payload...)
	return frame(first, b)
}

// subscription is one topic filter of a SUBSCRIBE with its options byte.
type subscription struct {
	filter  []byte
	options byte
}

// subscribe is a decoded SUBSCRIBE.
type subscribe struct {
	id    uint16
	props []byte // v5, raw
	subs  []subscription
}

func parseSubscribe(body []byte, version byte) (subscribe, error) {
	r := reader{b: body}
	s := subscribe{id: r.uint16()}
	if version == 5 {
		s.props = r.props()
	}
	for len(r.b) > 0 && r.err == nil {
		f := r.bytes()
		o := r.byte()
		s.subs = append(s.subs, subscription{filter: f, options: o})
	}
	if r.err != nil {
		return s, r.err
	}
	if len(s.subs) == 0 {
		return s, fmt.Errorf("%w: SUBSCRIBE without a topic filter", ErrMalformed) // [MQTT-3.8.3-2]
	}
	return s, nil
}

// encode returns the SUBSCRIBE with only the given subscriptions.
func (s subscribe) encode(version byte, subs []subscription) []byte {
	b := binary.BigEndian.AppendUint16(nil, s.id)
	if version == 5 {
		b = appendVBI(b, len(s.props))
		b = append(b, s.props...)
	}
	for _, sub := range subs {
		b = appendString(b, sub.filter)
		b = append(b, sub.options)
	}
	return frame(packets.SUBSCRIBE<<4|2, b)
}

// suback is a decoded SUBACK.
type suback struct {
	id    uint16
	props []byte
	codes []byte
}

func parseSuback(body []byte, version byte) (suback, error) {
	r := reader{b: body}
	s := suback{id: r.uint16()}
	if version == 5 {
		s.props = r.props()
	}
	if r.err != nil {
		return s, r.err
	}
	s.codes = r.b
	return s, nil
}

func (s suback) encode(version byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, s.id)
	if version == 5 {
		b = appendVBI(b, len(s.props))
		b = append(b, s.props...)
	}
	b = append(b, s.codes...)
	return frame(packets.SUBACK<<4, b)
}

// ack returns a PUBACK, PUBREC or PUBCOMP (typ) for id; v5 carries code.
func ack(typ byte, id uint16, code byte, version byte) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 3), id)
	if version == 5 && code != 0 {
		b = append(b, code)
	}
	return frame(typ<<4, b)
}

// packetID reads the Packet Identifier that begins a body.
func packetID(body []byte) (uint16, bool) {
	if len(body) < 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(body), true
}

// packetBuffered reports whether r holds a whole packet, so that reading it
// will not block.
func packetBuffered(r *bufio.Reader) bool {
	n := r.Buffered()
	if n < 2 {
		return false
	}
	hdr, _ := r.Peek(min(n, 5))
	length, mult := 0, 1
	for i := 1; i < len(hdr); i++ {
		length += int(hdr[i]&0x7F) * mult
		mult *= 128
		if hdr[i]&0x80 == 0 {
			return n >= i+1+length
		}
	}
	return false
}

// brokerConnect writes cp to the broker on nc and returns the CONNACK
// that read gives: the broker leg's opening, for a client's leg and the
// coordination connection alike.
func brokerConnect(nc net.Conn, cp *packets.Connect, read func() (packet, error)) (connack, error) {
	if _, err := nc.Write(encodeConnect(cp)); err != nil {
		return connack{}, err
	}
	p, err := read()
	if err != nil {
		return connack{}, err
	}
	if p.typ() != packets.CONNACK {
		return connack{}, fmt.Errorf("%w: first packet from the broker is not CONNACK", ErrMalformed)
	}
	return parseConnack(p.body, cp.ProtocolVersion)
}

// batch collects packets for one leg and writes them with one writev when
// the reading side has no whole packet left to relay, or when it is full.
// It holds the packets' own slices: no copy, no buffer of its own.
type batch struct {
	bufs net.Buffers
	size int
}

// batchLimit bounds a batch, in packets and bytes.
const (
	batchPackets = 64
	batchBytes   = 64 << 10
)

func (b *batch) add(p []byte) { b.bufs = append(b.bufs, p); b.size += len(p) }

func (b *batch) full() bool { return len(b.bufs) >= batchPackets || b.size >= batchBytes }

// flush writes the batch to w (after setting its write deadline): to a
// TCP connection with one writev; to any other connection (a *tls.Conn,
// which has no writev: net.Buffers would call its Write once per packet,
// one TLS record and one system call each) joined into one buffer, one
// Write.
func (b *batch) flush(w net.Conn, timeout time.Duration) error {
	if len(b.bufs) == 0 {
		return nil
	}
	_ = w.SetWriteDeadline(time.Now().Add(timeout))
	keep := b.bufs[:0]
	var err error
	if _, tcp := w.(*net.TCPConn); tcp || len(b.bufs) == 1 {
		bufs := b.bufs
		_, err = bufs.WriteTo(w)
	} else {
		jp := joinPool.Get().(*[]byte)
		joined := (*jp)[:0]
		for _, p := range b.bufs {
			joined = append(joined, p...)
		}
		_, err = w.Write(joined)
		if cap(joined) <= batchBytes+maxJoinedPacket {
			*jp = joined[:0]
			joinPool.Put(jp)
		}
	}
	clear(keep[:cap(keep)])
	b.bufs, b.size = keep, 0
	return err
}

// joinPool holds the buffers flush joins a batch into: at most one per
// leg that is writing, returned at once.
var joinPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxJoinedPacket bounds what a pooled join buffer may exceed batchBytes
// by (a batch is full after the packet that crosses batchBytes): a larger
// buffer is left to the garbage collector rather than kept in the pool.
const maxJoinedPacket = 64 << 10
