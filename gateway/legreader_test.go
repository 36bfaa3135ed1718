package gateway

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLegReader reads packets of every size class (inside the 64-byte
// wait read, across it, above the pooled buffer) written whole, byte by
// byte and several at once, and checks that a drained leg holds no buffer.
func TestLegReader(t *testing.T) {
	pub := func(n int) []byte { // a QoS 0 PUBLISH of n payload bytes on topic "t"
		return frame(0x30, append([]byte{0, 1, 't'}, bytes.Repeat([]byte{'x'}, n)...))
	}
	pkts := [][]byte{{0x40, 2, 0, 1}, pub(10), pub(61), pub(62), pub(200), pub(3000), {0xC0, 0}}
	var all []byte
	for _, p := range pkts {
		all = append(all, p...)
	}
	for _, tc := range []struct {
		name   string
		chunks func() [][]byte
	}{
		{"one_write_per_packet", func() [][]byte { return pkts }},
		{"byte_by_byte", func() [][]byte {
			var cs [][]byte
			for i := range all {
				cs = append(cs, all[i:i+1])
			}
			return cs
		}},
		{"all_at_once", func() [][]byte { return [][]byte{all} }},
		{"chunks_of_50", func() [][]byte {
			var cs [][]byte
			for b := all; len(b) > 0; b = b[min(50, len(b)):] {
				cs = append(cs, b[:min(50, len(b))])
			}
			return cs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			go func() {
				for _, c := range tc.chunks() {
					if _, err := client.Write(c); err != nil {
						return
					}
				}
			}()
			l := newLegReader(server)
			defer server.Close()
			for i, want := range pkts {
				p, err := l.readPacket(1 << 20)
				require.NoError(t, err, "packet %d", i)
				require.Equal(t, want, p.raw, "packet %d", i)
			}
			require.True(t, l.idle(), "a drained leg holds no buffer")
			require.Nil(t, l.br)
			_ = client.Close()
			_, err := l.readPacket(1 << 20)
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

// TestLegReaderBuffered: buffered reports a whole packet read and not yet
// consumed, so that the relay writes once nothing whole is left.
func TestLegReaderBuffered(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	two := append([]byte{0x40, 2, 0, 1}, 0x40, 2, 0, 2)
	go func() { _, _ = client.Write(two) }()
	l := newLegReader(server)
	p, err := l.readPacket(1024)
	require.NoError(t, err)
	require.Equal(t, two[:4], p.raw)
	require.True(t, l.buffered(), "the second PUBACK was read with the first")
	p, err = l.readPacket(1024)
	require.NoError(t, err)
	require.Equal(t, two[4:], p.raw)
	require.False(t, l.buffered())
	require.True(t, l.idle())
}
