package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// rawConn is a client connection driven packet by packet, for what paho
// cannot send: MQTT 3.1.1, malformed packets, a connection dropped without
// DISCONNECT, an exchange answered late.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

// dialRaw connects to addr and closes the connection at cleanup.
func dialRaw(tb testing.TB, addr string) *rawConn {
	tb.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		tb.Fatalf("conformance: dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = nc.Close() })
	return &rawConn{Conn: nc, r: bufio.NewReader(nc)}
}

// send writes b within Timeout.
func (c *rawConn) send(tb testing.TB, b []byte) {
	tb.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := c.Write(b); err != nil {
		tb.Fatalf("conformance: write: %v", err)
	}
}

// sendPacket writes a paho.golang (MQTT 5) packet.
func (c *rawConn) sendPacket(tb testing.TB, p interface {
	WriteTo(io.Writer) (int64, error)
}) {
	tb.Helper()
	var b bytes.Buffer
	if _, err := p.WriteTo(&b); err != nil {
		tb.Fatalf("conformance: encode %T: %v", p, err)
	}
	c.send(tb, b.Bytes())
}

// rawPacket is one packet as read from the wire.
type rawPacket struct {
	Type  byte // the MQTT control packet type, the high nibble of the first byte
	Flags byte
	Body  []byte // after the Remaining Length
}

func (p rawPacket) String() string {
	return fmt.Sprintf("packet type %d (% x)", p.Type, p.Body)
}

// frame returns a packet with the first byte first and body after the
// Remaining Length.
func frame(first byte, body []byte) []byte {
	b := []byte{first}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

// decode decodes p as an MQTT 5 packet.
func (p rawPacket) decode() (*packets.ControlPacket, error) {
	return packets.ReadPacket(bytes.NewReader(frame(p.Type<<4|p.Flags, p.Body)))
}

// next reads the next packet within d. The error is a timeout (the
// connection stayed open and silent), io.EOF or another read error (the
// server closed it).
func (c *rawConn) next(d time.Duration) (rawPacket, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	return readPacket(c.r)
}

// readPacket reads one packet from r.
func readPacket(r *bufio.Reader) (rawPacket, error) {
	first, err := r.ReadByte()
	if err != nil {
		return rawPacket{}, err
	}
	var n, shift int
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return rawPacket{}, err
		}
		n |= int(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return rawPacket{}, errors.New("conformance: malformed Remaining Length from the server")
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return rawPacket{}, err
	}
	return rawPacket{Type: first >> 4, Flags: first & 0x0f, Body: body}, nil
}

// isTimeout reports whether err is a read deadline, not a closed
// connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// expectPacket reads the next packet within d and fails the test when the
// connection closes or stays silent.
func (c *rawConn) expectPacket(tb testing.TB, d time.Duration, what string) rawPacket {
	tb.Helper()
	p, err := c.next(d)
	switch {
	case isTimeout(err):
		tb.Fatalf("no %s within %v", what, d)
	case err != nil:
		tb.Fatalf("connection closed (%v); want %s", err, what)
	}
	return p
}

// expectV5 reads the next packet and decodes it as an MQTT 5 packet of
// type typ.
func (c *rawConn) expectV5(tb testing.TB, d time.Duration, typ byte, what string) *packets.ControlPacket {
	tb.Helper()
	p := c.expectPacket(tb, d, what)
	if p.Type != typ {
		tb.Fatalf("got %v; want %s", p, what)
	}
	cp, err := p.decode()
	if err != nil {
		tb.Fatalf("decoding %s: %v", what, err)
	}
	return cp
}

// expectClosed reads until the server closes the connection, within d.
// allowed says which packets may come first; any other fails the test, as
// does a connection still open at d.
func (c *rawConn) expectClosed(tb testing.TB, d time.Duration, why string, allowed func(rawPacket) bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		p, err := c.next(time.Until(deadline))
		switch {
		case isTimeout(err):
			tb.Fatalf("the connection is still open %v later; %s", d, why)
		case err != nil:
			return
		case allowed == nil || !allowed(p):
			tb.Fatalf("the server sent %v; %s", p, why)
		}
	}
}

// isDisconnect reports whether p is an MQTT 5 DISCONNECT with code.
func isDisconnect(p rawPacket, code byte) bool {
	return p.Type == packets.DISCONNECT && len(p.Body) > 0 && p.Body[0] == code
}

// isConnack reports whether p is an MQTT 5 CONNACK with code.
func isConnack(p rawPacket, code byte) bool {
	return p.Type == packets.CONNACK && len(p.Body) >= 2 && p.Body[1] == code
}

// will is the Will of a raw CONNECT.
type will struct {
	Topic  string
	QoS    byte
	Retain bool
}

// v5Connect returns an MQTT 5 CONNECT (clean start, keep alive 60 s).
func v5Connect(id string) *packets.Connect {
	return &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: id, CleanStart: true,
		KeepAlive: 60, Properties: &packets.Properties{}, WillProperties: &packets.Properties{}}
}

// withPassword sets user and password on cp.
func withPassword(cp *packets.Connect, user, password string) *packets.Connect {
	cp.Username, cp.UsernameFlag = user, true
	cp.Password, cp.PasswordFlag = []byte(password), true
	return cp
}

// withWill sets w on cp; its payload is the topic.
func withWill(cp *packets.Connect, w will) *packets.Connect {
	cp.WillFlag, cp.WillTopic, cp.WillQOS, cp.WillRetain = true, w.Topic, w.QoS, w.Retain
	cp.WillMessage = []byte("will of " + cp.ClientID)
	return cp
}

// v311Connect encodes an MQTT 3.1.1 CONNECT (clean session, keep alive
// 60 s) by hand: paho.golang's packets are MQTT 5 only.
func v311Connect(id, user, password string, w *will) []byte {
	str := func(b *bytes.Buffer, s string) {
		b.WriteByte(byte(len(s) >> 8))
		b.WriteByte(byte(len(s)))
		b.WriteString(s)
	}
	var body bytes.Buffer
	str(&body, "MQTT")
	body.WriteByte(4)
	flags := byte(0x02) // clean session
	if w != nil {
		flags |= 0x04 | w.QoS<<3
		if w.Retain {
			flags |= 0x20
		}
	}
	if user != "" {
		flags |= 0x80 | 0x40
	}
	body.WriteByte(flags)
	body.Write([]byte{0, 60})
	str(&body, id)
	if w != nil {
		str(&body, w.Topic)
		str(&body, "will of "+id)
	}
	if user != "" {
		str(&body, user)
		str(&body, password)
	}
	return frame(packets.CONNECT<<4, body.Bytes())
}

// connectV311 sends a 3.1.1 CONNECT and returns the return code of the
// CONNACK, or -1 when the server closed the connection without one.
func (c *rawConn) connectV311(tb testing.TB, id, user, password string, w *will) int {
	tb.Helper()
	c.send(tb, v311Connect(id, user, password, w))
	p, err := c.next(Timeout)
	switch {
	case isTimeout(err):
		tb.Fatalf("MQTT 3.1.1 CONNECT: neither a CONNACK nor a close within %v", Timeout)
	case err != nil:
		return -1
	case p.Type != packets.CONNACK || len(p.Body) != 2:
		tb.Fatalf("MQTT 3.1.1 CONNECT answered with %v; want a CONNACK of 2 bytes", p)
	}
	return int(p.Body[1])
}

// connectV5 sends cp and returns the CONNACK, failing the test when the
// server closed the connection or answered otherwise.
func (c *rawConn) connectV5(tb testing.TB, cp *packets.Connect) *packets.Connack {
	tb.Helper()
	c.sendPacket(tb, cp)
	return c.expectV5(tb, Timeout, packets.CONNACK, "CONNACK").Content.(*packets.Connack)
}
