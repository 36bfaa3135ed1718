package aioconfig

import (
	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// Grants returns the topic filters that the policy of the principal's port
// grants it for kind ([abac.Policy.Grants]), for brokers whose permissions
// are subject lists fixed at connect (adapters/nats). A port without a
// policy that lists its grants (no authorizationRef: auth.AllowAuthenticated)
// and an unknown listener grant nothing: "every topic" is not a list.
func (b *Broker) Grants(p *auth.Principal, kind auth.ActionKind) []abac.Grant {
	if p == nil {
		return nil
	}
	port := b.Port(p.Listener())
	if port == nil {
		return nil
	}
	if g, ok := port.Authorizer.(interface {
		Grants(*auth.Principal, auth.ActionKind) []abac.Grant
	}); ok {
		return g.Grants(p, kind)
	}
	return nil
}
