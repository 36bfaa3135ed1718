package auth

import (
	"context"
	"fmt"
)

// authorizeConnectLocked asks the Manager's Authorizer whether p may
// connect (at CONNECT, at re-authentication and at [Session.Update]) and
// reports the decision exactly as [Session.Authorize] reports a Publish or
// a Subscribe: to the Observer (authorization_total{action="Connect"}) and,
// for a deny or a sampled allow, as an audit record naming the method, the
// user name, the listener, the policy and the rule or why nothing allowed
// it. s.mu is held.
func (s *Session) authorizeConnectLocked(ctx context.Context, p *Principal) Decision {
	a := Action{Kind: Connect}
	d := s.m.authz.Authorize(ctx, p, a)
	if d.Allowed && s.m.quietAllows {
		return d
	}
	r := AuthzAllow
	if !d.Allowed {
		r = AuthzDeny
	}
	s.m.obs.Authorized(AuthzEvent{Kind: Connect, Result: r})
	if d.Allowed && !s.m.audit.sampleAllow() {
		return d
	}
	s.logAuthzLocked(ctx, p, a, d)
	return d
}

// policyRecheckDenied is CheckConnect's error for a session the policy
// no longer lets connect: the disconnect record says which policy and why.
func policyRecheckDenied(d Decision) error {
	if d.Policy == "" && d.Rule == "" {
		return errPolicyRecheck
	}
	why := whyNoRule
	if d.Rule != "" {
		why = "denied by " + d.Rule
	}
	if d.Policy != "" {
		return fmt.Errorf("%w: %s: %s", errPolicyRecheck, d.Policy, why)
	}
	return fmt.Errorf("%w: %s", errPolicyRecheck, why)
}

// connectDenied is the error of a first CONNECT whose principal the policy
// does not allow to connect: it says which policy and why.
func connectDenied(d Decision) error {
	why := whyNoRule
	if d.Rule != "" {
		why = "denied by " + d.Rule
	}
	if d.Policy != "" {
		return fmt.Errorf("%w: Connect denied by %s: %s", ErrNotAuthorized, d.Policy, why)
	}
	return fmt.Errorf("%w: Connect denied by policy: %s", ErrNotAuthorized, why)
}
