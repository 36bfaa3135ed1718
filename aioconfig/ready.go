package aioconfig

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/satauth"
)

// startupCheck is the start-up check of a source that depends on the world
// outside the configuration.
type startupCheck struct {
	name string
	run  func(ctx context.Context) error
}

// readyRetry is how often the readiness check of a ServiceAccountToken
// method runs its failed start-up check again.
const readyRetry = 30 * time.Second

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
// failing meanwhile; it runs the start-up check again at most every 30 s,
// so a fixed ClusterRole binding makes the broker ready without a restart.
func (b *Broker) CheckReady(ctx context.Context) error {
	var errs []error
	for _, c := range b.startup {
		if err := c.run(ctx); err != nil {
			errs = append(errs, fmt.Errorf("aioconfig: %s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// satReady returns the start-up check and the readiness check of a
// ServiceAccountToken method. The readiness check is the outcome of the
// last start-up check (satauth's Ready); while that failed, or before it
// ran, it runs it again at most every readyRetry, so that it logs at that
// pace and not at the probe's.
func satReady(name string, a *satauth.Authenticator) (startupCheck, ReadyCheck) {
	var (
		mu   sync.Mutex
		last time.Time
	)
	startup := startupCheck{name: name, run: func(ctx context.Context) error {
		mu.Lock()
		last = time.Now()
		mu.Unlock()
		return a.CheckReady(ctx)
	}}
	return startup, ReadyCheck{Name: name, Check: func(ctx context.Context) error {
		err := a.Ready()
		if err == nil {
			return nil
		}
		mu.Lock()
		due := time.Since(last) >= readyRetry
		if due {
			last = time.Now()
		}
		mu.Unlock()
		if !due {
			return err
		}
		return a.CheckReady(ctx)
	}}
}
