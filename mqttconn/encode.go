package mqttconn

import (
	"bytes"
	"io"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttauth/mqttauth/auth"
)

// Protocol versions (the CONNECT Protocol Level).
const (
	V311 byte = 4 // MQTT 3.1.1
	V5   byte = 5 // MQTT 5.0
)

// Encode returns p, a packet of the authentication flow, encoded for a
// client of the given protocol version, and false when that version has no
// such packet, in which case nothing may be sent and, for a refusal, the
// connection is closed without a packet:
//
//   - MQTT 5: AUTH, CONNACK and DISCONNECT with their reason code, the
//     Authentication Method and Data, and the Reason String.
//   - MQTT 3.1.1: a CONNACK with the return code of
//     [auth.ReasonCode.ConnackV311] (1 to 5), or none when 3.1.1 has no
//     return code for the refusal (0x80, 0x81, 0x82, 0x83, 0x95, ...): a
//     refused 3.1.1 client is never sent return code 0. MQTT 3.1.1 has no
//     AUTH and no server DISCONNECT: none.
//
// This is the one encoding of refusals and server-initiated packets for
// every adapter.
func Encode(version byte, p auth.Packet) ([]byte, bool) {
	return encodePacket(version, p, "")
}

func encodePacket(version byte, p auth.Packet, serverRef string) ([]byte, bool) {
	if version != V5 {
		if p.Type != auth.CONNACK {
			return nil, false
		}
		if p.Code == auth.Success {
			return []byte{packets.CONNACK << 4, 2, 0, 0}, true
		}
		rc, ok := p.Code.ConnackV311()
		if !ok || rc == 0 {
			return nil, false
		}
		return []byte{packets.CONNACK << 4, 2, 0, rc}, true
	}
	switch p.Type {
	case auth.AUTH:
		return encode(&packets.Auth{ReasonCode: byte(p.Code), Properties: &packets.Properties{
			AuthMethod: p.Method, AuthData: p.Data, ReasonString: p.Reason}}), true
	case auth.CONNACK:
		return encode(&packets.Connack{ReasonCode: byte(p.Code), Properties: &packets.Properties{
			AuthMethod: p.Method, AuthData: p.Data, ReasonString: p.Reason, ServerReference: serverRef}}), true
	case auth.DISCONNECT:
		// Always with the reason code byte: paho.golang cannot parse a
		// DISCONNECT without one (FACTS).
		return encode(&packets.Disconnect{ReasonCode: byte(p.Code), Properties: &packets.Properties{
			ReasonString: p.Reason, ServerReference: serverRef}}), true
	}
	return nil, false
}

func encode(p interface {
	WriteTo(io.Writer) (int64, error)
}) []byte {
	var b bytes.Buffer
	_, _ = p.WriteTo(&b)
	return b.Bytes()
}
