package auth

import "strconv"

// ReasonCode is an MQTT v5 reason code (MQTT 5.0, section 2.4).
//
// Only the codes that authentication and authorization produce or receive are
// named here. Any code at or above 0x80 is a failure, and after sending one in
// a CONNACK or DISCONNECT the server closes the connection [MQTT-4.13.2-1].
type ReasonCode byte

// Reason codes used by authentication and authorization, with their MQTT names.
const (
	Success                     ReasonCode = 0x00 // Success (AUTH from the server, CONNACK)
	ContinueAuthentication      ReasonCode = 0x18 // Continue authentication (AUTH, either side)
	ReAuthenticate              ReasonCode = 0x19 // Re-authenticate (AUTH, client only)
	UnspecifiedError            ReasonCode = 0x80 // Unspecified error
	MalformedPacket             ReasonCode = 0x81 // Malformed Packet
	ProtocolError               ReasonCode = 0x82 // Protocol Error
	ImplementationSpecificError ReasonCode = 0x83 // Implementation specific error
	BadUserNameOrPassword       ReasonCode = 0x86 // Bad User Name or Password (CONNACK only)
	NotAuthorized               ReasonCode = 0x87 // Not authorized
	ServerUnavailable           ReasonCode = 0x88 // Server unavailable (CONNACK only)
	ServerBusy                  ReasonCode = 0x89 // Server busy
	Banned                      ReasonCode = 0x8A // Banned (CONNACK only)
	BadAuthenticationMethod     ReasonCode = 0x8C // Bad authentication method
	ServerShuttingDown          ReasonCode = 0x8B // Server shutting down (DISCONNECT only)
	PacketTooLarge              ReasonCode = 0x95 // Packet too large
	MessageRateTooHigh          ReasonCode = 0x96 // Message rate too high (DISCONNECT only)
	QuotaExceeded               ReasonCode = 0x97 // Quota exceeded
	UseAnotherServer            ReasonCode = 0x9C // Use another server
	ServerMoved                 ReasonCode = 0x9D // Server moved
	ConnectionRateExceeded      ReasonCode = 0x9F // Connection rate exceeded
	MaximumConnectTime          ReasonCode = 0xA0 // Maximum connect time (DISCONNECT only)
)

var reasonNames = map[ReasonCode]string{
	Success:                     "Success",
	ContinueAuthentication:      "Continue authentication",
	ReAuthenticate:              "Re-authenticate",
	UnspecifiedError:            "Unspecified error",
	MalformedPacket:             "Malformed Packet",
	ProtocolError:               "Protocol Error",
	ImplementationSpecificError: "Implementation specific error",
	BadUserNameOrPassword:       "Bad User Name or Password",
	NotAuthorized:               "Not authorized",
	ServerUnavailable:           "Server unavailable",
	ServerBusy:                  "Server busy",
	Banned:                      "Banned",
	BadAuthenticationMethod:     "Bad authentication method",
	ServerShuttingDown:          "Server shutting down",
	PacketTooLarge:              "Packet too large",
	MessageRateTooHigh:          "Message rate too high",
	QuotaExceeded:               "Quota exceeded",
	UseAnotherServer:            "Use another server",
	ServerMoved:                 "Server moved",
	ConnectionRateExceeded:      "Connection rate exceeded",
	MaximumConnectTime:          "Maximum connect time",
}

// String returns the code's name in the MQTT specification followed by its
// value, for example "Not authorized (0x87)".
func (c ReasonCode) String() string {
	hex := "0x" + strconv.FormatUint(uint64(c)|0x100, 16)[1:]
	if name, ok := reasonNames[c]; ok {
		return name + " (" + hex + ")"
	}
	return "reason code " + hex
}

// IsFailure reports whether c is a failure code (0x80 or above).
func (c ReasonCode) IsFailure() bool { return c >= 0x80 }

// connackFailures are the failure codes MQTT allows in a CONNACK.
var connackFailures = [256]bool{
	0x80: true, 0x81: true, 0x82: true, 0x83: true, 0x84: true, 0x85: true,
	0x86: true, 0x87: true, 0x88: true, 0x89: true, 0x8A: true, 0x8C: true,
	0x90: true, 0x95: true, 0x97: true, 0x99: true, 0x9A: true, 0x9B: true,
	0x9C: true, 0x9D: true, 0x9F: true,
}

// disconnectFailures are the failure codes MQTT allows in a DISCONNECT sent by
// the server. 0x8C is included: Table 2-6 lists it for DISCONNECT, which is the
// reading this package takes (the DISCONNECT table omits it).
var disconnectFailures = [256]bool{
	0x80: true, 0x81: true, 0x82: true, 0x83: true, 0x87: true, 0x89: true,
	0x8B: true, 0x8C: true, 0x8D: true, 0x8E: true, 0x8F: true, 0x90: true,
	0x93: true, 0x94: true, 0x95: true, 0x96: true, 0x97: true, 0x98: true,
	0x99: true, 0x9A: true, 0x9B: true, 0x9C: true, 0x9D: true, 0x9E: true,
	0x9F: true, 0xA0: true, 0xA1: true, 0xA2: true,
}

// ValidConnackFailure reports whether c may be sent as a failing CONNACK.
func (c ReasonCode) ValidConnackFailure() bool { return connackFailures[c] }

// ValidDisconnect reports whether c may be sent by a server in a DISCONNECT
// as a failure.
func (c ReasonCode) ValidDisconnect() bool { return disconnectFailures[c] }

// forConnack returns c if it is a valid CONNACK failure code, else 0x87.
func (c ReasonCode) forConnack() ReasonCode {
	if c.ValidConnackFailure() {
		return c
	}
	return NotAuthorized
}

// forDisconnect returns c if a server may send it in a DISCONNECT, else 0x87.
// CONNACK-only codes such as 0x86 (Bad User Name or Password) become 0x87.
func (c ReasonCode) forDisconnect() ReasonCode {
	if c.ValidDisconnect() {
		return c
	}
	return NotAuthorized
}

// ConnackV311 returns the MQTT 3.1.1 CONNACK return code that stands for the
// MQTT v5 failure code c (MQTT 3.1.1, section 3.2.2.3), and false when 3.1.1
// has none: then the server closes the connection without a CONNACK, as
// 3.1.1 asks for a malformed or otherwise invalid CONNECT [MQTT-3.1.4-1].
//
//   - 0x84 Unsupported Protocol Version: 1 (unacceptable protocol version)
//   - 0x85 Client Identifier not valid: 2 (identifier rejected)
//   - 0x88 Server unavailable, 0x89 Server busy, 0x97 Quota exceeded,
//     0x9C Use another server, 0x9D Server moved, 0x9F Connection rate
//     exceeded: 3 (server unavailable)
//   - 0x86 Bad User Name or Password: 4 (bad user name or password)
//   - 0x87 Not authorized, 0x8A Banned, 0x8C Bad authentication method:
//     5 (not authorized)
//   - anything else (0x80 to 0x83, 0x95 Packet too large, ...): none
func (c ReasonCode) ConnackV311() (byte, bool) {
	switch c {
	case 0x84:
		return 1, true
	case 0x85:
		return 2, true
	case ServerUnavailable, ServerBusy, QuotaExceeded, UseAnotherServer, ServerMoved, ConnectionRateExceeded:
		return 3, true
	case BadUserNameOrPassword:
		return 4, true
	case NotAuthorized, Banned, BadAuthenticationMethod:
		return 5, true
	}
	return 0, false
}

// FromConnackV311 returns the MQTT v5 reason code that stands for the MQTT
// 3.1.1 CONNACK return code rc, the inverse of [ReasonCode.ConnackV311]:
// 1 is 0x84 (Unsupported Protocol Version), 2 is 0x85 (Client Identifier
// not valid), 3 is 0x88 (Server unavailable), 4 is 0x86 (Bad User Name or
// Password), 5 and any other failure is 0x87 (Not authorized); 0 is
// Success. An adapter that relays a 3.1.1 broker's refusal uses it.
func FromConnackV311(rc byte) ReasonCode {
	switch rc {
	case 0:
		return Success
	case 1:
		return 0x84
	case 2:
		return 0x85
	case 3:
		return ServerUnavailable
	case 4:
		return BadUserNameOrPassword
	}
	return NotAuthorized
}
