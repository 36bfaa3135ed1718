package x509auth

import (
	"crypto/x509"
	"runtime"
	"sync"
	"weak"
)

// cache remembers, per parsed leaf certificate, the chain that verified it
// and what it maps to. The leaf is held weakly: an entry disappears when
// crypto/tls and the session let go of the certificate, so the cache never
// outgrows the live connections. Handshake verification (VerifyConnection)
// fills it; Authenticate and Check then cost map lookups instead of
// signature checks.
type cache struct {
	m sync.Map // weak.Pointer[x509.Certificate] -> *entry
}

func (c *cache) get(leaf *x509.Certificate) *entry {
	v, ok := c.m.Load(weak.Make(leaf))
	if !ok {
		return nil
	}
	return v.(*entry)
}

func (c *cache) put(leaf *x509.Certificate, e *entry) {
	k := weak.Make(leaf)
	if _, loaded := c.m.Swap(k, e); !loaded {
		runtime.AddCleanup(leaf, func(k weak.Pointer[x509.Certificate]) { c.m.Delete(k) }, k)
	}
}

// len counts the entries.
func (c *cache) len() int {
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	return n
}
