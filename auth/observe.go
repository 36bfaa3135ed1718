package auth

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Observer receives what the library does, for metrics: authentication
// outcomes per method, authorization decisions, session endings, re-checks,
// reloads and backend calls. An exporter (the metrics/prometheus module)
// implements it; the default is [NopObserver].
//
// The events are small values with enum fields and no strings built per
// call, so reporting them allocates nothing; an Observer must keep it that
// way on [Observer.Authorized], which runs for every message a broker
// authorizes. Implementations must be safe for concurrent use, must not
// block and must not call back into the component that reports.
type Observer interface {
	// Authenticated reports the outcome of one authentication method for
	// one packet (CONNECT, AUTH continuation or re-authentication), with
	// its latency. A [Chain] reports each method it asks, so one CONNECT
	// may report several events (NotRelevant, then Pass).
	Authenticated(AuthnEvent)
	// Authorized reports one authorization decision of a Session.
	Authorized(AuthzEvent)
	// Session reports a session's life: connected, re-authenticated,
	// refused, disconnected by the library (with the cause) and closed.
	Session(SessionEvent)
	// Component reports what a component outside a connection did: a
	// re-check run, a reload, a backend call, a breaker change.
	Component(ComponentEvent)
}

// AuthnEvent is one authentication method's outcome for one packet.
type AuthnEvent struct {
	// Method is the method's label: the name the authenticator gives
	// itself (see [MethodNamer]), else its Go type; bounded by the
	// configuration, never taken from the client.
	Method string
	// Outcome is what the method returned.
	Outcome Outcome
	// Code is the reason code of a Fail.
	Code ReasonCode
	// Reauth is true for a re-authentication, Step > 0 for a continuation.
	Reauth bool
	Step   int
	// Latency is how long the method took.
	Latency time.Duration
}

// AuthzResult is the result of an authorization, for metrics.
type AuthzResult uint8

// The authorization results. AuthzError means no decision could be made
// (the session has no principal: before authentication or after close);
// it is a deny too, as every failure is.
const (
	AuthzAllow AuthzResult = iota
	AuthzDeny
	AuthzError
)

var authzResultNames = [...]string{"allow", "deny", "error"}

// String returns "allow", "deny" or "error".
func (r AuthzResult) String() string {
	if int(r) < len(authzResultNames) {
		return authzResultNames[r]
	}
	return "invalid"
}

// AuthzEvent is one authorization decision.
type AuthzEvent struct {
	Kind   ActionKind
	Result AuthzResult
}

// SessionEventKind says what happened to a session.
type SessionEventKind uint8

// The session events.
const (
	// SessionConnected: CONNACK 0x00 was sent; the session is live.
	SessionConnected SessionEventKind = iota + 1
	// SessionRefused: the CONNECT exchange ended with a failure CONNACK
	// (or a close before CONNACK); Code is the CONNACK code.
	SessionRefused
	// SessionReauthenticated: a re-authentication passed (AUTH 0x00).
	SessionReauthenticated
	// SessionReauthFailed: a re-authentication failed and the session was
	// disconnected; Code is the DISCONNECT code.
	SessionReauthFailed
	// SessionDisconnected: the library ended a live session on its own or
	// for a protocol error; Cause and Code say why.
	SessionDisconnected
	// SessionClosed: a live session ended, for any reason (the live count
	// goes down by one).
	SessionClosed
)

var sessionEventNames = [...]string{"", "connected", "refused", "reauthenticated", "reauth_failed", "disconnected", "closed"}

// String returns the event's metric label.
func (k SessionEventKind) String() string {
	if int(k) < len(sessionEventNames) && k > 0 {
		return sessionEventNames[k]
	}
	return "invalid"
}

// Cause says why the library disconnected a session.
type Cause uint8

// The causes of a disconnect.
const (
	CauseNone       Cause = iota
	CauseExpiry           // the credential expired (0xA0, or a silent close)
	CauseRevocation       // a re-check found the credential revoked or untrusted
	CausePolicy           // a re-check found Connect no longer allowed by policy
	CauseTimeout          // the client left a challenge unanswered
	CauseProtocol         // the client broke the enhanced-authentication rules
	CauseReauth           // a re-authentication failed
	CauseRate             // the client re-authenticated faster than Config.ReauthInterval allows (0x96)
)

var causeNames = [...]string{"none", "expiry", "revocation", "policy", "timeout", "protocol", "reauth", "reauth_rate"}

// String returns the cause's metric label.
func (c Cause) String() string {
	if int(c) < len(causeNames) {
		return causeNames[c]
	}
	return "invalid"
}

// SessionEvent is one event of a session's life.
type SessionEvent struct {
	Kind SessionEventKind
	// Cause is set for SessionDisconnected.
	Cause Cause
	// Code is the reason code sent (CONNACK or DISCONNECT); zero for a
	// close without a packet.
	Code ReasonCode
}

// Component names the part of the library that reports a ComponentEvent.
type Component uint8

// The components.
const (
	ComponentManager     Component = iota + 1 // auth.Manager re-checks
	ComponentTruststore                       // truststore reloads
	ComponentPolicy                           // abac policy reloads
	ComponentUsers                            // scramauth user file reloads
	ComponentCustom                           // customauth: the custom server
	ComponentTokenReview                      // satauth: Kubernetes TokenReview
	ComponentJWKS                             // satauth: JWKS / OIDC discovery fetches
)

var componentNames = [...]string{"", "manager", "truststore", "policy", "users", "custom", "tokenreview", "jwks"}

// String returns the component's metric label.
func (c Component) String() string {
	if int(c) < len(componentNames) && c > 0 {
		return componentNames[c]
	}
	return "invalid"
}

// ComponentEventKind says what a component did.
type ComponentEventKind uint8

// The component events.
const (
	// Recheck: a Manager.Recheck ran; Count sessions were checked and
	// Disconnected of them disconnected.
	Recheck ComponentEventKind = iota + 1
	// Reload: a new version is in force.
	Reload
	// ReloadFailed: a reload was rejected; the last good version stays.
	ReloadFailed
	// Call: a backend call completed (Failed says whether it failed),
	// with its latency.
	Call
	// CallCoalesced: a call was shared with an identical one in flight.
	CallCoalesced
	// CallCached: a call was answered from a cache.
	CallCached
	// BreakerOpen, BreakerHalfOpen, BreakerClosed: a circuit breaker
	// changed state.
	BreakerOpen
	BreakerHalfOpen
	BreakerClosed
)

var componentEventNames = [...]string{"", "recheck", "reload", "reload_failed", "call", "call_coalesced", "call_cached", "breaker_open", "breaker_half_open", "breaker_closed"}

// String returns the event's metric label.
func (k ComponentEventKind) String() string {
	if int(k) < len(componentEventNames) && k > 0 {
		return componentEventNames[k]
	}
	return "invalid"
}

// ComponentEvent is one event of a component.
type ComponentEvent struct {
	Component Component
	Kind      ComponentEventKind
	// Failed is true for a failed Call.
	Failed bool
	// Count and Disconnected are the sessions checked and disconnected by
	// a Recheck.
	Count, Disconnected int
	// Latency is the duration of a Call or a Recheck.
	Latency time.Duration
}

// NopObserver is an Observer that does nothing: the default.
type NopObserver struct{}

// Authenticated does nothing.
func (NopObserver) Authenticated(AuthnEvent) {}

// Authorized does nothing.
func (NopObserver) Authorized(AuthzEvent) {}

// Session does nothing.
func (NopObserver) Session(SessionEvent) {}

// Component does nothing.
func (NopObserver) Component(ComponentEvent) {}

// MethodNamer is implemented by authenticators that name their method for
// metrics ("X.509", "K8S-SAT", "Custom", "SCRAM-SHA-256"). An authenticator
// that does not is labelled with its Go type.
type MethodNamer interface {
	MethodName() string
}

// Named returns a labelled name in metrics, for an authenticator that does
// not name itself (an AuthenticatorFunc is otherwise labelled
// "auth.AuthenticatorFunc", the same for all of them).
func Named(name string, a Authenticator) Authenticator { return namedMethod{a, name} }

type namedMethod struct {
	Authenticator
	name string
}

func (n namedMethod) MethodName() string { return n.name }

// MethodsObserver is implemented by an authenticator that dispatches to
// methods of its own, as a router of one chain per listener does:
// [ObserveMethods] asks it for a version whose methods report to o, rather
// than labelling it as one method.
type MethodsObserver interface {
	ObserveMethods(o Observer) Authenticator
}

// ObserveMethods returns a, with each method reporting its outcome and
// latency to o: a Chain becomes a Chain of observed methods (nested chains
// too), anything else one observed method. With a nil or [NopObserver] o
// it returns a unchanged. [NewManager] calls it with Config.Observer; call
// it yourself only for an authenticator that no Manager runs.
func ObserveMethods(a Authenticator, o Observer) Authenticator {
	if a == nil || o == nil {
		return a
	}
	if _, nop := o.(NopObserver); nop {
		return a
	}
	switch a := a.(type) {
	case Chain:
		c := make(Chain, len(a))
		for i, inner := range a {
			if inner != nil {
				c[i] = ObserveMethods(inner, o)
			}
		}
		return c
	case *observedMethod:
		return a
	case MethodsObserver:
		return a.ObserveMethods(o)
	}
	return &observedMethod{a: a, o: o, name: methodLabel(a)}
}

func methodLabel(a Authenticator) string {
	if n, ok := a.(MethodNamer); ok {
		if s := n.MethodName(); s != "" {
			return s
		}
	}
	return fmt.Sprintf("%T", a)
}

// observedMethod times one method and reports its outcome.
type observedMethod struct {
	a    Authenticator
	o    Observer
	name string
}

func (m *observedMethod) Authenticate(ctx context.Context, req *Request) Result {
	start := time.Now()
	r := m.a.Authenticate(ctx, req)
	m.o.Authenticated(AuthnEvent{
		Method:  m.name,
		Outcome: r.Outcome,
		Code:    r.Code,
		Reauth:  req.Reauth,
		Step:    req.Step,
		Latency: time.Since(start),
	})
	return r
}

// MethodName returns the observed method's label.
func (m *observedMethod) MethodName() string { return m.name }

// causeOf classifies the error that ended a session.
func causeOf(err error) Cause {
	switch {
	case errors.Is(err, ErrExpired):
		return CauseExpiry
	case errors.Is(err, errPolicyRecheck):
		return CausePolicy
	case errors.Is(err, ErrRevoked):
		return CauseRevocation
	case errors.Is(err, ErrTimeout):
		return CauseTimeout
	case errors.Is(err, ErrReauthRate):
		return CauseRate
	case errors.Is(err, ErrProtocol), errors.Is(err, ErrBadMethod):
		return CauseProtocol
	}
	return CauseRevocation // a re-check's own error: the credential lost trust
}
