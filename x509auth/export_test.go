package x509auth

// DisableCache makes a verify every chain from scratch, for benchmarks.
func DisableCache(a *Authenticator) { a.noCache = true }

// Verifications returns the number of chains a verified by signature.
func Verifications(a *Authenticator) int64 { return a.verifies.Load() }

// ChainsByContent returns the number of presented chains a remembers by
// content.
func ChainsByContent(a *Authenticator) int {
	if a.verified == nil {
		return 0
	}
	return a.verified.len()
}
