package conformance

import (
	"bufio"
	"bytes"
	"testing"
)

func TestFrameRemainingLength(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x00}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
	} {
		got := frame(0x30, make([]byte, tc.n))
		if got[0] != 0x30 || !bytes.Equal(got[1:1+len(tc.want)], tc.want) || len(got) != 1+len(tc.want)+tc.n {
			t.Errorf("frame of %d bytes: header % x, want 30 % x", tc.n, got[:min(len(got), 4)], tc.want)
		}
		p, err := readPacket(bufio.NewReader(bytes.NewReader(got)))
		if err != nil || p.Type != 3 || len(p.Body) != tc.n {
			t.Errorf("reading back %d bytes: %v, %v", tc.n, p, err)
		}
	}
}

// TestV311Connect checks the hand encoding against MQTT 3.1.1 3.1: the
// variable header, the flags and the payload order.
func TestV311Connect(t *testing.T) {
	got := v311Connect("c", "u", "p", &will{Topic: "w", QoS: 1, Retain: true})
	want := []byte{
		0x10, 26, // CONNECT, Remaining Length
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name and level
		0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02, // user, password, will retain, will QoS 1, will, clean session
		0, 60,                                   // keep alive
		0, 1, 'c', // client identifier
		0, 1, 'w', // will topic
		0, 9, 'w', 'i', 'l', 'l', ' ', 'o', 'f', ' ', 'c', // will message
		0, 1, 'u', 0, 1, 'p', // user name, password
	}
	want[1] = byte(len(want) - 2)
	if !bytes.Equal(got, want) {
		t.Fatalf("v311Connect:\n got % x\nwant % x", got, want)
	}
	if plain := v311Connect("c", "", "", nil); plain[9] != 0x02 {
		t.Fatalf("flags %#x without user and Will, want 0x02", plain[9])
	}
}
