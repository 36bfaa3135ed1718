package auth

import (
	"cmp"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"
)

// Principal is a verified identity: the method that verified it, the user
// name and client identifier it is known by, its attributes for
// authorization, and when it stops being valid.
//
// A Principal is immutable once built, so it can be shared between goroutines
// and read on the hot path without locks. Re-authentication replaces it as a
// whole; it never changes in place.
type Principal struct {
	method   string
	username string
	clientID string
	listener string
	expiry   time.Time
	attrs    []attribute // sorted by name; a few entries, so a slice beats a map
}

type attribute struct{ name, value string }

// PrincipalInfo describes a Principal to build with [NewPrincipal].
type PrincipalInfo struct {
	// Method names the authentication method that verified the identity:
	// the MQTT Authentication Method ("K8S-SAT", "SCRAM-SHA-256") or a name
	// of the authenticator's own ("X.509", "Custom") when the client named
	// none.
	Method string
	// Username is the verified user name. It comes from the credential (the
	// certificate's subject, the token's subject), never from the CONNECT
	// packet unless the authenticator verified it (a password check).
	Username string
	// ClientID is the MQTT client identifier. A Session fills it in from the
	// CONNECT packet when it is empty.
	ClientID string
	// Listener names the listener the client connected to. An
	// authenticator leaves it empty: a Session always sets it from
	// Request.Listener, whatever the authenticator said, so that an
	// authorizer can decide per listener and no method can move a client
	// to another listener's policy. Set it when building a principal
	// outside a session, for instance to test an authorizer that decides
	// per listener (aioconfig's Broker).
	Listener string
	// Attributes are the principal's authorization attributes. They are
	// copied.
	Attributes map[string]string
	// Expiry is when the credential stops being valid; zero means it does
	// not expire. A Session disconnects the client when it passes.
	Expiry time.Time
}

// NewPrincipal returns a Principal described by info. The attribute map is
// copied, so later changes to it do not reach the Principal.
func NewPrincipal(info PrincipalInfo) *Principal {
	p := &Principal{
		method:   info.Method,
		username: info.Username,
		clientID: info.ClientID,
		listener: info.Listener,
		expiry:   info.Expiry,
	}
	if len(info.Attributes) > 0 {
		p.attrs = make([]attribute, 0, len(info.Attributes))
		for k, v := range info.Attributes {
			p.attrs = append(p.attrs, attribute{k, v})
		}
		slices.SortFunc(p.attrs, func(a, b attribute) int { return cmp.Compare(a.name, b.name) })
	}
	return p
}

// Method returns the authentication method that verified the principal.
func (p *Principal) Method() string { return p.method }

// Username returns the verified user name.
func (p *Principal) Username() string { return p.username }

// ClientID returns the MQTT client identifier.
func (p *Principal) ClientID() string { return p.clientID }

// Listener returns the name of the listener the principal connected
// through (Request.Listener), or "" when the broker names none.
func (p *Principal) Listener() string { return p.listener }

// Expiry returns when the credential stops being valid; the zero time means
// never.
func (p *Principal) Expiry() time.Time { return p.expiry }

// Attribute returns the value of the named attribute and whether the
// principal has it.
func (p *Principal) Attribute(name string) (string, bool) {
	if len(p.attrs) <= 8 {
		for i := range p.attrs {
			if p.attrs[i].name == name {
				return p.attrs[i].value, true
			}
		}
		return "", false
	}
	i, ok := slices.BinarySearchFunc(p.attrs, name, func(a attribute, n string) int {
		return strings.Compare(a.name, n)
	})
	if !ok {
		return "", false
	}
	return p.attrs[i].value, true
}

// NumAttributes returns how many attributes the principal has.
func (p *Principal) NumAttributes() int { return len(p.attrs) }

// Attributes returns the principal's attributes in name order.
func (p *Principal) Attributes() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, a := range p.attrs {
			if !yield(a.name, a.value) {
				return
			}
		}
	}
}

// Info returns a description of p, with a copy of its attributes, from which
// a changed Principal can be built.
func (p *Principal) Info() PrincipalInfo {
	return PrincipalInfo{
		Method:     p.method,
		Username:   p.username,
		ClientID:   p.clientID,
		Listener:   p.listener,
		Attributes: maps.Collect(p.Attributes()),
		Expiry:     p.expiry,
	}
}

// withDefaults returns p, or a copy of p whose empty method and client
// identifier are filled in and whose listener is set. The attribute slice
// is shared, which is safe because neither Principal ever changes it.
func (p *Principal) withDefaults(method, clientID, listener string) *Principal {
	if (p.method != "" || method == "") && (p.clientID != "" || clientID == "") && p.listener == listener {
		return p
	}
	q := *p
	q.listener = listener
	if q.method == "" {
		q.method = method
	}
	if q.clientID == "" {
		q.clientID = clientID
	}
	return &q
}

// expired reports whether the principal's credential has expired at now.
func (p *Principal) expired(now time.Time) bool {
	return !p.expiry.IsZero() && !now.Before(p.expiry)
}
