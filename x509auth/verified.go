package x509auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
)

// DefaultChainCacheSize is the number of presented chains whose
// verification an Authenticator remembers by content when
// Config.ChainCacheSize is zero.
const DefaultChainCacheSize = 4096

// verified remembers, by content, which presented chains verified and
// how: for the SHA-256 of the presented certificates' DER (leaf first, in
// the order presented), where each certificate above the leaf in the
// chain that verified came from (its place in the presented chain, or the
// trusted CA). Signatures are a function of those bytes alone, so a
// client presenting the same chain again (a new handshake, or a resumed
// TLS session whose certificates crypto/tls parsed anew) need not have
// them checked again; everything a change of trust or time can alter (the
// CA still trusted, CRLs, validity periods, usage) is checked on every
// use by truststore.Set.CheckVerified, as for the per-certificate cache.
// It is bounded: when full, an arbitrary entry makes room. An entry holds
// no presented certificate, only indices and the trusted CA.
type verified struct {
	mu  sync.Mutex
	max int
	m   map[[sha256.Size]byte][]link
}

// link is one certificate above the leaf in a verified chain.
type link struct {
	peer int               // its index in the presented chain, or -1
	ca   *x509.Certificate // the trusted CA, when peer is -1
}

func newVerified(max int) *verified {
	return &verified{max: max, m: make(map[[sha256.Size]byte][]link)}
}

// presentedKey is the cache key of a presented chain.
func presentedKey(peer []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for _, c := range peer {
		var raw []byte
		if c != nil {
			raw = c.Raw
		}
		binary.BigEndian.PutUint32(n[:], uint32(len(raw)))
		h.Write(n[:])
		h.Write(raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// get returns the chain remembered for the presented chain peer whose key
// is k (the leaf first), or nil.
func (v *verified) get(k [sha256.Size]byte, peer []*x509.Certificate) []*x509.Certificate {
	v.mu.Lock()
	links, ok := v.m[k]
	v.mu.Unlock()
	if !ok {
		return nil
	}
	chain := make([]*x509.Certificate, 0, 1+len(links))
	chain = append(chain, peer[0])
	for _, l := range links {
		c := l.ca
		if l.peer >= 0 {
			if l.peer >= len(peer) || peer[l.peer] == nil {
				return nil
			}
			c = peer[l.peer]
		}
		chain = append(chain, c)
	}
	return chain
}

// put remembers that the presented chain peer, whose key is k, verified
// as chain (the leaf first).
func (v *verified) put(k [sha256.Size]byte, peer, chain []*x509.Certificate) {
	links := make([]link, len(chain)-1)
	for i, c := range chain[1:] {
		links[i] = link{peer: -1, ca: c}
		for j := 1; j < len(peer); j++ {
			if peer[j] == c {
				links[i] = link{peer: j}
				break
			}
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.m[k]; !ok && len(v.m) >= v.max {
		for old := range v.m {
			delete(v.m, old)
			break
		}
	}
	v.m[k] = links
}

// len counts the entries.
func (v *verified) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.m)
}
