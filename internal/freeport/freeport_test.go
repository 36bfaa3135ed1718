package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestLoopbackIsFreeAndBelowEphemeral(t *testing.T) {
	lo := ephemeralLow()
	for range 50 {
		port, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if lo > base+1000 && (port < base || port >= lo) {
			t.Fatalf("port %d outside [%d, %d)", port, base, lo)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", port, err)
		}
		l.Close()
	}
}
