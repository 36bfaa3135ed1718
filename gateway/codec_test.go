package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"
)

func TestReadPacketRefusesLargeLengthBeforeAllocating(t *testing.T) {
	// PUBLISH declaring 268435455 bytes (the maximum), none of which follow.
	hdr := []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		_, err := readPacket(bufio.NewReaderSize(bytes.NewReader(hdr), 16), 1024)
		require.ErrorIs(t, err, ErrPacketTooLarge)
	}
	runtime.ReadMemStats(&after)
	// A few small objects per call (the reader, the error), never the
	// declared 256 MiB.
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(100*4096))
}

func TestReadPacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"pingreq", []byte{0xC0, 0}, 16, nil},
		{"exactly_max", append([]byte{0x30, 4}, 0, 1, 'a', 'x'), 6, nil},
		{"one_over_max", append([]byte{0x30, 5}, 0, 1, 'a', 'x', 'y'), 6, ErrPacketTooLarge},
		{"five_byte_length_malformed", []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, 1 << 30, ErrMalformed},
		{"truncated_body", []byte{0x30, 4, 0, 1}, 16, nil /* io.ErrUnexpectedEOF */},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := readPacket(bufio.NewReader(bytes.NewReader(tc.in)), tc.max)
			switch {
			case tc.name == "truncated_body":
				require.Error(t, err)
			case tc.want != nil:
				require.ErrorIs(t, err, tc.want)
			default:
				require.NoError(t, err)
				require.Equal(t, tc.in, p.raw)
			}
		})
	}
}

// MQTT 3.1.1 CONNECT has no properties; paho decodes only v5, so the
// gateway decodes and encodes 3.1.1 itself.
func TestConnectV311RoundTrip(t *testing.T) {
	c := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 4, ClientID: "dev-1", KeepAlive: 42,
		CleanStart: true, UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p"),
		WillFlag: true, WillTopic: "w/t", WillMessage: []byte("bye"), WillQOS: 1, WillRetain: true,
		Properties: &packets.Properties{}}
	raw := encodeConnect(c)
	// The 3.1.1 wire form as the spec shows it (3.1.2): no property lengths.
	want := []byte{0x10, 0, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xEE, 0, 42, 0, 5, 'd', 'e', 'v', '-', '1',
		0, 3, 'w', '/', 't', 0, 3, 'b', 'y', 'e', 0, 1, 'u', 0, 1, 'p'}
	want[1] = byte(len(want) - 2)
	require.Equal(t, want, raw)
	p, err := readPacket(bufio.NewReader(bytes.NewReader(raw)), 1024)
	require.NoError(t, err)
	got, err := parseConnect(p.body)
	require.NoError(t, err)
	got.WillProperties = c.WillProperties
	require.Equal(t, c, got)
}

func TestParseConnectRejects(t *testing.T) {
	for name, body := range map[string][]byte{
		"mqtt_3.1":          {0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 10, 0, 1, 'c'},
		"reserved_flag_311": {0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 10, 0, 1, 'c'},
		"truncated":         {0, 4, 'M', 'Q'},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseConnect(body)
			require.Error(t, err)
		})
	}
}

func TestSubscribeV311(t *testing.T) {
	body := []byte{0, 7, 0, 3, 'a', '/', 'b', 1, 0, 1, 'c', 0}
	s, err := parseSubscribe(body, 4)
	require.NoError(t, err)
	require.Equal(t, uint16(7), s.id)
	require.Len(t, s.subs, 2)
	out := s.encode(4, s.subs[1:])
	require.Equal(t, []byte{0x82, 6, 0, 7, 0, 1, 'c', 0}, out)
}

func TestProxyHeaderIPv6(t *testing.T) {
	// Families other than IPv4 use the 36-byte IPv6 block.
	h := proxyHeader(tcpAddr("[::1]:1000"), tcpAddr("[::1]:2000"))
	require.Equal(t, byte(0x21), h[13])
	require.Len(t, h, 16+36)
}

// FuzzReadAndParse feeds arbitrary bytes through the framing and every
// decoder the gateway applies to a client's packets: none may panic, and
// none may read past the declared length.
func FuzzReadAndParse(f *testing.F) {
	f.Add([]byte{0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 10, 0, 0, 1, 'c', 0, 0})
	f.Add([]byte{0x32, 7, 0, 1, 'a', 0, 1, 3, 0x23, 0, 1})
	f.Add([]byte{0x82, 6, 0, 1, 0, 0, 1, 'x', 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := readPacket(bufio.NewReader(bytes.NewReader(in)), 4096)
		if err != nil {
			return
		}
		for _, v := range []byte{4, 5} {
			switch p.typ() {
			case packets.CONNECT:
				_, _ = parseConnect(p.body)
			case packets.PUBLISH:
				if pub, err := parsePublish(p, v); err == nil && pub.hasAlias {
					_, _ = pub.withoutAlias(p.raw[0], []byte("t"))
				}
			case packets.SUBSCRIBE:
				if s, err := parseSubscribe(p.body, v); err == nil {
					_ = s.encode(v, s.subs)
				}
			case packets.SUBACK:
				if s, err := parseSuback(p.body, v); err == nil {
					_ = s.encode(v)
				}
			case packets.CONNACK:
				_, _ = parseConnack(p.body, v)
			}
		}
	})
}

func tcpAddr(s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

// writesConn records each Write: a net.Conn without writev, as *tls.Conn.
type writesConn struct {
	net.Conn // nil: only Write and SetWriteDeadline are called
	writes   [][]byte
}

func (w *writesConn) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *writesConn) SetWriteDeadline(time.Time) error { return nil }

// A batch flushed to a connection without writev (the TLS client leg) is
// one Write, so one TLS record and one system call, not one per packet;
// the batch is empty and reusable afterwards.
func TestBatchFlushJoinsForConnWithoutWritev(t *testing.T) {
	w := &writesConn{}
	var b batch
	pkts := [][]byte{{0x40, 0x02, 0x00, 0x01}, {0x40, 0x02, 0x00, 0x02}, {0x30, 0x03, 0x00, 0x01, 'x'}}
	for _, p := range pkts {
		b.add(p)
	}
	require.NoError(t, b.flush(w, time.Second))
	require.Equal(t, [][]byte{bytes.Join(pkts, nil)}, w.writes)
	require.Empty(t, b.bufs)
	require.Zero(t, b.size)

	// One packet is written as it is; an empty batch writes nothing.
	b.add(pkts[0])
	require.NoError(t, b.flush(w, time.Second))
	require.NoError(t, b.flush(w, time.Second))
	require.Equal(t, [][]byte{bytes.Join(pkts, nil), pkts[0]}, w.writes)
}

// To a TCP connection the batch goes out through net.Buffers (writev):
// every packet, in order.
func TestBatchFlushTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	var b batch
	b.add([]byte{0x40, 0x02, 0x00, 0x01})
	b.add([]byte{0x40, 0x02, 0x00, 0x02})
	require.NoError(t, b.flush(c, time.Second))
	got := make([]byte, 8)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(s, got)
	require.NoError(t, err)
	require.Equal(t, []byte{0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02}, got)
}
