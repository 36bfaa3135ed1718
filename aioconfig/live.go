package aioconfig

import (
	"context"
	"sync/atomic"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// livePolicy is a BrokerAuthorization read from the Kubernetes API: a
// compiled policy swapped whole when the resource changes, with the change
// signal of every reloadable source (auth.Notifier), so that the Manager
// re-checks the live sessions of the ports that use it.
type livePolicy struct {
	cur atomic.Pointer[abac.Policy]
	sig auth.Signal
}

var (
	_ auth.Authorizer        = (*livePolicy)(nil)
	_ auth.SessionAuthorizer = (*livePolicy)(nil)
	_ auth.Notifier          = (*livePolicy)(nil)
	_ abac.Source            = (*livePolicy)(nil)
)

func newLivePolicy(p *abac.Policy) *livePolicy {
	lp := &livePolicy{}
	lp.cur.Store(p)
	return lp
}

// Current is the policy in force.
func (lp *livePolicy) Current() *abac.Policy { return lp.cur.Load() }

// Authorize asks the policy in force.
func (lp *livePolicy) Authorize(ctx context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	return lp.cur.Load().Authorize(ctx, p, a)
}

// NewSessionAuthorizer is a per-session cache of the policy in force,
// dropped when the policy is swapped.
func (lp *livePolicy) NewSessionAuthorizer() auth.Authorizer { return abac.NewCache(lp, 0) }

// Notify implements auth.Notifier.
func (lp *livePolicy) Notify(fn func()) (cancel func()) { return lp.sig.Notify(fn) }

// set puts p in force and signals the change.
func (lp *livePolicy) set(p *abac.Policy) {
	lp.cur.Store(p)
	lp.sig.Fire()
}

// Grants are the topic filters the policy in force grants p for kind
// ([abac.Policy.Grants]).
func (lp *livePolicy) Grants(p *auth.Principal, kind auth.ActionKind) []abac.Grant {
	return lp.cur.Load().Grants(p, kind)
}
