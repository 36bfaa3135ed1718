package gateway_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// tlsConnect dials addr over TLS, sends a v5 CONNECT as id and reads the
// CONNACK, then sends DISCONNECT and closes. It returns the TLS state as
// the client saw it when its handshake ended (in TLS 1.3 the server
// judges the client's certificate, or the resumed session, after that:
// a refusal then arrives as an alert on the first read), the CONNACK, and
// the first error.
func tlsConnect(addr string, cfg *tls.Config, id string) (tls.ConnectionState, *packets.Connack, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, nil, err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.KeepAlive, c.CleanStart = id, 30, true
	if _, err := cp.WriteTo(conn); err != nil {
		// The server refused and closed before the CONNECT arrived: its
		// alert may still be there to read.
		if _, rerr := conn.Read(make([]byte, 1)); rerr != nil && strings.Contains(rerr.Error(), "remote error") {
			return cs, nil, rerr
		}
		return cs, nil, err
	}
	p, err := packets.ReadPacket(conn)
	if err != nil {
		return cs, nil, err
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok {
		return cs, nil, fmt.Errorf("first packet is not CONNACK: %v", p)
	}
	if ca.ReasonCode == 0 {
		_, _ = (&packets.Disconnect{Properties: &packets.Properties{}}).WriteTo(conn)
	}
	return cs, ca, nil
}
