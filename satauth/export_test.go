package satauth

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
	oldT, oldC := inClusterTokenFile, inClusterCAFile
	inClusterTokenFile, inClusterCAFile = token, ca
	return func() { inClusterTokenFile, inClusterCAFile = oldT, oldC }
}
