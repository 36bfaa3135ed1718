package mqttconn

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/mqttauth/mqttauth/auth"
)

// Connect is a CONNECT packet as an adapter decoded it, reduced to what the
// layer judges. Password and AuthData may alias the adapter's packet: the
// layer clears them once they have been judged, which scrubs the packet.
type Connect struct {
	// ProtocolVersion is 4 (MQTT 3.1.1) or 5.
	ProtocolVersion byte
	ClientID        string
	Username        string
	HasUsername     bool
	Password        []byte
	HasPassword     bool
	// AuthMethod and AuthData are the Authentication Method and Data
	// properties (MQTT 5 only).
	AuthMethod string
	AuthData   []byte
	// Will is the Will Message, nil when the Will Flag is 0.
	Will *Will
}

// Will is the Will Message of a CONNECT, as far as authorization needs it.
type Will struct {
	Topic  string
	QoS    byte
	Retain bool
}

// Validate reports, wrapping ErrMalformed, what in c MQTT makes a
// malformed packet: a string that is not well-formed UTF-8 or holds U+0000
// [MQTT-1.5.4-1, 1.5.4-2] (client identifier, user name, Authentication
// Method, Will topic), and a Will topic that is empty or holds a wildcard
// [MQTT-3.1.3-11, 4.7.0-1]. A broker's decoder may have caught some of
// these already; the layer checks them for every path.
func (c *Connect) Validate() error {
	for _, f := range [...]struct{ name, v string }{
		{"client identifier", c.ClientID},
		{"user name", c.Username},
		{"authentication method", c.AuthMethod},
	} {
		if err := checkString(f.v); err != nil {
			return fmt.Errorf("%w: CONNECT %s: %w", ErrMalformed, f.name, err)
		}
	}
	if c.Will != nil {
		if err := CheckTopicName(c.Will.Topic); err != nil {
			return fmt.Errorf("CONNECT Will topic: %w", err)
		}
		if c.Will.QoS > 2 {
			return fmt.Errorf("%w: CONNECT Will QoS %d", ErrMalformed, c.Will.QoS)
		}
	}
	return nil
}

// errString is why a string is not a valid MQTT UTF-8 string.
type errString string

func (e errString) Error() string { return string(e) }

func checkString(s string) error {
	if !utf8.ValidString(s) {
		return errString("not well-formed UTF-8 [MQTT-1.5.4-1]")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errString("contains U+0000 [MQTT-1.5.4-2]")
	}
	return nil
}

// CheckTopicName reports, wrapping ErrMalformed, a PUBLISH or Will topic
// name that MQTT forbids: empty (unless a topic alias stands for it: check
// the resolved name), not well-formed UTF-8, holding U+0000, or holding a
// wildcard character [MQTT-3.3.2-2, 4.7.0-1].
func CheckTopicName(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty topic name [MQTT-4.7.3-1]", ErrMalformed)
	}
	if err := checkString(topic); err != nil {
		return fmt.Errorf("%w: topic name: %w", ErrMalformed, err)
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("%w: wildcard in topic name %q [MQTT-3.3.2-2]", ErrMalformed, topic)
	}
	return nil
}

// CheckTopicFilter reports, wrapping ErrMalformed, a SUBSCRIBE topic filter
// that MQTT forbids: empty, not well-formed UTF-8, holding U+0000, or with
// a wildcard that does not fill a whole level ('#' last) [MQTT-4.7.1-1,
// 4.7.1-2, 4.7.3-1].
func CheckTopicFilter(filter string) error {
	if filter == "" {
		return fmt.Errorf("%w: empty topic filter [MQTT-4.7.3-1]", ErrMalformed)
	}
	if err := checkString(filter); err != nil {
		return fmt.Errorf("%w: topic filter: %w", ErrMalformed, err)
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1, l != "#" && strings.Contains(l, "#"):
			return fmt.Errorf("%w: '#' not alone in the last level of %q [MQTT-4.7.1-1]", ErrMalformed, filter)
		case l != "+" && strings.Contains(l, "+"):
			return fmt.Errorf("%w: '+' not alone in a level of %q [MQTT-4.7.1-2]", ErrMalformed, filter)
		}
	}
	return nil
}

// Request returns the auth.Request for c on a connection from remote with
// TLS state tlsState (nil without TLS) on listener. Its Password and
// AuthData alias c's: [Client.Connect] clears them once judged.
func (c *Connect) Request(remote net.Addr, tlsState *tls.ConnectionState, listener string) auth.Request {
	return auth.Request{
		ClientID:        c.ClientID,
		Username:        c.Username,
		HasUsername:     c.HasUsername,
		Password:        c.Password,
		HasPassword:     c.HasPassword,
		AuthMethod:      c.AuthMethod,
		AuthData:        c.AuthData,
		RemoteAddr:      remote,
		TLS:             tlsState,
		Listener:        listener,
		ProtocolVersion: c.ProtocolVersion,
	}
}

// scrub clears the credentials of c in place.
func (c *Connect) scrub() {
	clear(c.Password)
	clear(c.AuthData)
}

// ConnState returns the TLS connection state of nc when it is a *tls.Conn
// (its handshake is complete once the CONNECT has been read), else nil.
func ConnState(nc net.Conn) *tls.ConnectionState {
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return &cs
	}
	return nil
}
