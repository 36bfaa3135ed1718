package satauth

import (
	"time"

	"github.com/mqttauth/mqttauth/internal/kubeapi"
)

// Hooks for the tests of package satauth_test.

// Stats returns how many TokenReviews, ServiceAccount reads and key
// fetches the authenticator made.
func (a *Authenticator) Stats() (reviews, accountGets, keyFetches int64) {
	return a.stats.reviews.Load(), a.stats.accountGets.Load(), a.stats.keyFetches.Load()
}

// CacheLen returns the number of cached tokens.
func (a *Authenticator) CacheLen() int { return a.tokens.len() }

// SetInClusterPaths points the in-cluster defaults elsewhere and returns a
// function that restores them.
func SetInClusterPaths(token, ca string) func() {
	oldT, oldC := kubeapi.InClusterTokenFile, kubeapi.InClusterCAFile
	kubeapi.InClusterTokenFile, kubeapi.InClusterCAFile = token, ca
	return func() { kubeapi.InClusterTokenFile, kubeapi.InClusterCAFile = oldT, oldC }
}

// SetWatchTimings shortens the sweep interval and the watch backoff and
// returns a function that restores them.
func SetWatchTimings(sweep, backoffMax time.Duration) func() {
	oldS, oldB := sweepInterval, watchBackoffMax
	sweepInterval, watchBackoffMax = sweep, backoffMax
	return func() { sweepInterval, watchBackoffMax = oldS, oldB }
}

// Watched returns the namespaces being watched and the number of session
// bindings kept.
func (a *Authenticator) Watched() ([]string, int) {
	if a.follow == nil {
		return nil, 0
	}
	return a.follow.watched()
}

// AccountCacheLen returns the number of cached ServiceAccount reads.
func (a *Authenticator) AccountCacheLen() int { return a.accounts.len() }

// Sweep runs one tick of the follower's sweep, as its ticker does: with
// a sweep interval no test reaches, the test decides when sweeps happen.
func (a *Authenticator) Sweep() {
	if a.follow != nil && a.follow.sweep() {
		a.follow.sig.Fire()
	}
}
