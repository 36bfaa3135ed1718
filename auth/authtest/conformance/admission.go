package conformance

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"
)

// The limits of admission/per_source_share.
const admissionBound, admissionShare = 8, 2

// admissionPerSourceShare: one source (127.0.0.2) holding its share of the
// pending connections (Limits.MaxPendingPerSource of MaxPending) has every
// further connection closed at once, and a client from another source
// connects within a second (issue 19: a flood from one address cannot
// keep the others out).
func admissionPerSourceShare(t *testing.T, b Broker, _ *Fixture) {
	const share, bound = admissionShare, admissionBound
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	silent := make([]*rawConn, bound)
	for i := range silent {
		nc, err := (&net.Dialer{Timeout: Timeout, LocalAddr: src}).Dial("tcp", b.Addr)
		if err != nil {
			// Linux routes all of 127.0.0.0/8 to loopback; macOS needs
			// "ifconfig lo0 alias 127.0.0.2".
			t.Fatalf("conformance: connection %d from 127.0.0.2, the second source of this case: %v", i+1, err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		silent[i] = &rawConn{Conn: nc, r: bufio.NewReader(nc)}
	}
	// Connections are accepted in the order they were made: the first
	// share hold the source's slots, the rest are beyond it.
	deadline := time.Now().Add(Timeout)
	for i, c := range silent[share:] {
		if _, err := c.next(time.Until(deadline)); isTimeout(err) {
			t.Errorf("silent connection %d of 127.0.0.2 is still open %v later; the source holds its share of %d", share+i+1, Timeout, share)
		}
	}
	for i, c := range silent[:share] {
		if _, err := c.next(50 * time.Millisecond); !isTimeout(err) {
			t.Errorf("silent connection %d of 127.0.0.2, within the source's share, was closed (%v)", i+1, err)
		}
	}
	start := time.Now()
	_, ca, err := dial(t, b.Addr, password("other-source", UserAlice), nil)
	if took := time.Since(start); err != nil || took > time.Second {
		got := "no CONNACK"
		if ca != nil {
			got = fmt.Sprintf("CONNACK 0x%02x", ca.ReasonCode)
		}
		t.Fatalf("a client from 127.0.0.1 got %s (%v) after %v while 127.0.0.2 held %d silent connections; want CONNACK 0x00 within 1s",
			got, err, took.Round(time.Millisecond), bound)
	}
}
