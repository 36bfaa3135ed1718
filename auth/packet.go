package auth

// PacketType is the kind of packet a [Session] asks the adapter to send.
type PacketType uint8

// The packets a Session sends. None means nothing is sent.
const (
	None PacketType = iota
	AUTH
	CONNACK
	DISCONNECT
)

// String returns the packet type's MQTT name.
func (t PacketType) String() string {
	switch t {
	case None:
		return "none"
	case AUTH:
		return "AUTH"
	case CONNACK:
		return "CONNACK"
	case DISCONNECT:
		return "DISCONNECT"
	}
	return "PacketType(invalid)"
}

// Packet is an MQTT packet in the authentication flow, reduced to the fields
// authentication uses. A Session returns the Packets the server sends; an
// adapter hands the client's AUTH packets to [Session.Auth] in the same form.
type Packet struct {
	Type PacketType
	// Code is the reason code (the Connect Reason Code of a CONNACK).
	Code ReasonCode
	// Method is the Authentication Method property (0x15); empty means the
	// property is absent.
	Method string
	// Data is the Authentication Data property (0x16); nil means absent.
	Data []byte
	// Reason is the Reason String property (0x1F); empty means absent. It
	// never holds secrets.
	Reason string
}

// Response is what a [Session] tells the adapter to do after an input: send
// Packet (unless its Type is None), then close the network connection if
// Close is set. Close is always set after a CONNACK or DISCONNECT with a
// failure code [MQTT-4.13.2-1].
type Response struct {
	Packet Packet
	Close  bool
	// Err explains a failure, for the adapter's logs. It never holds
	// secrets. It is nil on success.
	Err error
}

// Conn is what an adapter gives a [Session] so it can end the connection on
// its own: when the credential expires, when a re-check revokes access, or
// when the client leaves a challenge unanswered.
//
// Close sends final (unless its Type is None, a silent close) and then closes
// the network connection. It must be safe to call from any goroutine and must
// not call back into the Session. The Session calls it at most once.
type Conn interface {
	Close(final Packet)
}

// ConnFunc adapts a function to a [Conn].
type ConnFunc func(final Packet)

// Close calls f(final).
func (f ConnFunc) Close(final Packet) { f(final) }
