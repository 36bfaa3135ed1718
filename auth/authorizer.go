package auth

import "context"

// ActionKind is what a client asks to do.
type ActionKind uint8

// The actions that are authorized.
const (
	Connect ActionKind = iota + 1
	Publish
	Subscribe
)

// String returns "Connect", "Publish" or "Subscribe", the method names of
// the BrokerAuthorization resource.
func (k ActionKind) String() string {
	switch k {
	case Connect:
		return "Connect"
	case Publish:
		return "Publish"
	case Subscribe:
		return "Subscribe"
	}
	return "ActionKind(invalid)"
}

// Action is one request to authorize: a connection, a publish to a topic
// name, or a subscription to a topic filter.
type Action struct {
	Kind ActionKind
	// Topic is the topic name for Publish and the topic filter (possibly
	// with a $share prefix) for Subscribe; empty for Connect.
	Topic string
}

// Decision is an [Authorizer]'s answer.
type Decision struct {
	// Allowed is true when the action is allowed.
	Allowed bool
	// Rule identifies the rule that allowed the action, for logs and
	// tooling ("rules[3].brokerResources[0]"). A deny has no rule: nothing
	// allowed it.
	Rule string
	// Policy names the policy that decided, allow or deny, for logs
	// ("BrokerAuthorization abac-authz"): the audit record of a deny
	// names it, since a deny has no rule. Empty when the Authorizer names
	// none.
	Policy string
}

// Allow returns a Decision that allows, citing rule.
func Allow(rule string) Decision { return Decision{Allowed: true, Rule: rule} }

// Deny is the Decision that denies: no rule allowed the action.
var Deny = Decision{}

// Code returns the reason code for the decision: 0x00 when allowed, 0x87
// (Not authorized) when denied.
func (d Decision) Code() ReasonCode {
	if d.Allowed {
		return Success
	}
	return NotAuthorized
}

// Authorizer decides whether a principal may perform an action.
//
// Implementations must be safe for concurrent use and fast: a broker may ask
// on every message it delivers. A nil principal is always denied.
type Authorizer interface {
	Authorize(ctx context.Context, p *Principal, a Action) Decision
}

// AuthorizerFunc adapts a function to an [Authorizer].
type AuthorizerFunc func(ctx context.Context, p *Principal, a Action) Decision

// Authorize calls f(ctx, p, a).
func (f AuthorizerFunc) Authorize(ctx context.Context, p *Principal, a Action) Decision {
	return f(ctx, p, a)
}

// SessionAuthorizer is an optional interface of the [Authorizer] in
// [Config]: an authorizer that keeps state for one connection, such as a
// cache of its decisions, gives each [Session] its own Authorizer.
// [Manager.NewSession] calls NewSessionAuthorizer once per session and
// [Session.Authorize] asks that Authorizer; authorizers without this method
// are shared by every session.
//
// The per-session Authorizer must answer exactly as its parent would for the
// same principal, action and policy. When it also has a Reset method, the
// Session calls it after a successful re-authentication and after each
// re-check ([Manager.Recheck]) that leaves the session connected, so that no
// decision remembered for the earlier principal or trust outlives them.
type SessionAuthorizer interface {
	Authorizer
	NewSessionAuthorizer() Authorizer
}
