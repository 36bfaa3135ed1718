package aioconfig

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/mqttauth/mqttauth/satauth"
)

// startupCheck is the start-up check of a source that depends on the world
// outside the configuration.
type startupCheck struct {
	name string
	run  func(ctx context.Context) error
}

// CheckReady runs the start-up check of every source that depends on the
// world outside the configuration (today each ServiceAccountToken method:
// satauth's SelfSubjectAccessReviews of the broker identity's RBAC), each
// logging its one line (what is missing and the ClusterRole rules to add,
// or that it is ready), and returns their failures joined; nil when every
// source is ready. Call it before the listeners open.
//
// A failure is not fatal by design: the other methods of a chain still
// work, and a ServiceAccountToken method that may not ask the API answers
// Unavailable (the chain tries the next method) until the permission is
// granted. Its check in [Broker.ReadyChecks], named
// "serviceAccountToken (BrokerAuthentication NAME method N)", keeps /readyz
// failing meanwhile; satauth checks again in the background every 5 s
// (satauth.DefaultReadyRetry) and logs "satauth: ready" when the check
// passes, so a fixed ClusterRole binding makes the broker ready within
// seconds, without a restart and whether or not a probe asks.
func (b *Broker) CheckReady(ctx context.Context) error {
	var errs []error
	checks := slices.Clone(b.startup)
	for _, r := range b.gen.Load().resources() {
		checks = append(checks, r.startup...)
	}
	for _, c := range checks {
		if err := c.run(ctx); err != nil {
			errs = append(errs, fmt.Errorf("aioconfig: %s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// satReady returns the start-up check and the readiness check of a
// ServiceAccountToken method. The readiness check is the outcome of the
// last check (satauth's Ready, which its background retry keeps current);
// a probe before the start-up check runs it.
func satReady(name string, a *satauth.Authenticator) (startupCheck, ReadyCheck) {
	var ran atomic.Bool
	startup := startupCheck{name: name, run: func(ctx context.Context) error {
		ran.Store(true)
		return a.CheckReady(ctx)
	}}
	return startup, ReadyCheck{Name: name, Check: func(ctx context.Context) error {
		if !ran.Swap(true) {
			return a.CheckReady(ctx)
		}
		return a.Ready()
	}}
}
