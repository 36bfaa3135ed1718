package aioconfig

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/satauth"
)

// ReadyCheck is the readiness of one source the Broker built that depends
// on the world outside the configuration: today each ServiceAccountToken
// method (can the broker's identity review tokens and read and watch
// service accounts and pods?).
type ReadyCheck struct {
	// Name names the source, e.g. "serviceAccountToken (BrokerAuthentication
	// authn method 1)".
	Name string
	// Startup runs the source's start-up check (for satauth,
	// SelfSubjectAccessReviews), logs its one line (what is missing and
	// the ClusterRole rules to add, or that it is ready) and returns its
	// outcome. [Broker.CheckReady] runs every Startup.
	Startup func(ctx context.Context) error
	// Ready returns the last outcome, cheaply, for a readiness probe: nil
	// when ready. While not ready it runs Startup again at most every
	// 30 s, so that a fixed ClusterRole binding makes the broker ready
	// without a restart (and logs at that pace, not at the probe's).
	Ready func(ctx context.Context) error
}

// readyRetry is how often Ready runs a failed start-up check again.
const readyRetry = 30 * time.Second

// ReadyChecks returns the readiness checks of the sources the Broker built,
// in the order they were built, for a readiness endpoint (/readyz): the
// broker is ready when every Ready returns nil.
func (b *Broker) ReadyChecks() []ReadyCheck { return append([]ReadyCheck(nil), b.ready...) }

// CheckReady runs the start-up check of every source (see [ReadyCheck]),
// each logging its one line, and returns their failures joined; nil when
// every source is ready. Call it before the listeners open. A failure is
// not fatal by design: the other methods of a chain still work, and a
// ServiceAccountToken method that may not ask the API answers Unavailable
// (the chain tries the next method) until the missing permission is
// granted; a readiness probe on [Broker.ReadyChecks] keeps the broker out
// of service meanwhile.
func (b *Broker) CheckReady(ctx context.Context) error {
	var errs []error
	for _, c := range b.ready {
		if err := c.Startup(ctx); err != nil {
			errs = append(errs, fmt.Errorf("aioconfig: %s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// satReady is the ReadyCheck of a ServiceAccountToken method.
func satReady(name string, a *satauth.Authenticator) ReadyCheck {
	var (
		mu   sync.Mutex
		last time.Time
	)
	startup := func(ctx context.Context) error {
		mu.Lock()
		last = time.Now()
		mu.Unlock()
		return a.CheckReady(ctx)
	}
	return ReadyCheck{
		Name:    name,
		Startup: startup,
		Ready: func(ctx context.Context) error {
			err := a.Ready()
			if err == nil {
				return nil
			}
			mu.Lock()
			due := time.Since(last) >= readyRetry
			if due {
				last = time.Now() // one retry at a time
			}
			mu.Unlock()
			if !due {
				return err
			}
			return a.CheckReady(ctx)
		},
	}
}
