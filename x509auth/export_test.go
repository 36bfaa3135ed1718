package x509auth

// DisableCache makes a verify every chain from scratch, for benchmarks.
func DisableCache(a *Authenticator) { a.noCache = true }
