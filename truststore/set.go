package truststore

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/internal/certid"
)

// Source gives the current set of trusted client CAs. A [Set] is a Source
// that never changes; a [Store] is one that reloads in place.
type Source interface {
	// Current returns the set in force now. It is never nil.
	Current() *Set
}

// Set is an immutable snapshot of trusted client CAs (roots or
// intermediates: each is a trust anchor) and of the CRLs that revoke
// certificates below them. It is safe for concurrent use and cheap to read:
// a [Store] swaps whole Sets behind an atomic pointer.
type Set struct {
	gen     uint64
	cas     []*x509.Certificate
	pool    *x509.CertPool
	byPtr   map[*x509.Certificate]struct{}
	byFP    map[[32]byte]*x509.Certificate
	revoked map[string]struct{} // issuer DN (DER) + serial (hex)
	crls    map[string]*crlInfo // by issuer DN (DER)
	digest  [32]byte            // of the CAs and CRLs, to see whether a reload changed anything
}

type crlInfo struct {
	crl    *x509.RevocationList
	issuer *x509.Certificate // a CA of the set that signed it; nil until a chain shows the issuer
	warned atomic.Bool       // stale state logged
	mu     sync.Mutex
	good   [][]byte // DER of presented issuers the CRL verified against (at most maxGood)
}

const maxGood = 16

// verifiedBy checks the CRL's signature against parent, the certificate
// above the one being checked in a verified chain.
func (ci *crlInfo) verifiedBy(parent *x509.Certificate) error {
	if ci.issuer != nil {
		if parent == nil || parent == ci.issuer || bytes.Equal(parent.Raw, ci.issuer.Raw) {
			return nil
		}
	}
	if parent == nil {
		return fmt.Errorf("%w: CRL of %q: issuer not in the chain", ErrCRLSignature, ci.crl.Issuer.String())
	}
	ci.mu.Lock()
	for _, raw := range ci.good {
		if bytes.Equal(raw, parent.Raw) {
			ci.mu.Unlock()
			return nil
		}
	}
	ci.mu.Unlock()
	if err := ci.crl.CheckSignatureFrom(parent); err != nil {
		return fmt.Errorf("%w: CRL of %q does not verify with the key of %q: %w", ErrCRLSignature, ci.crl.Issuer.String(), parent.Subject.String(), err)
	}
	ci.mu.Lock()
	if len(ci.good) < maxGood {
		ci.good = append(ci.good, parent.Raw)
	}
	ci.mu.Unlock()
	return nil
}

// NewSet returns a Set trusting cas and enforcing crls. Every CA must be a
// CA certificate (BasicConstraints CA:TRUE), else the error wraps
// [ErrNotCA]. A CRL whose issuer is a CA of the set must be signed by it,
// else the error wraps [ErrCRLSignature]; a CRL of another issuer is kept
// and checked against that issuer when a chain presents it. When several CRLs name
// the same issuer, the one with the highest CRL number (then the latest
// thisUpdate) is enforced. Duplicate CAs are kept once. An empty set is
// valid and refuses every certificate.
func NewSet(cas []*x509.Certificate, crls []*x509.RevocationList) (*Set, error) {
	return newSet(cas, crls, nil)
}

// newSet builds a Set, reusing the certificate objects of prev for CAs it
// already held, so that chains verified under prev stay recognisable by
// pointer.
func newSet(cas []*x509.Certificate, crls []*x509.RevocationList, prev *Set) (*Set, error) {
	s := &Set{
		pool:    x509.NewCertPool(),
		byPtr:   make(map[*x509.Certificate]struct{}, len(cas)),
		byFP:    make(map[[32]byte]*x509.Certificate, len(cas)),
		revoked: make(map[string]struct{}),
		crls:    make(map[string]*crlInfo),
	}
	fps := make([][32]byte, 0, len(cas))
	for _, c := range cas {
		if c == nil {
			continue
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("%w: %q", ErrNotCA, c.Subject.String())
		}
		fp := sha256.Sum256(c.Raw)
		if _, dup := s.byFP[fp]; dup {
			continue
		}
		if prev != nil {
			if old, ok := prev.byFP[fp]; ok {
				c = old
			}
		}
		s.byFP[fp] = c
		s.byPtr[c] = struct{}{}
		s.cas = append(s.cas, c)
		s.pool.AddCert(c)
		fps = append(fps, fp)
	}
	for _, crl := range crls {
		if crl == nil {
			continue
		}
		var issuer *x509.Certificate
		named := false
		for _, ca := range s.cas {
			if !bytes.Equal(ca.RawSubject, crl.RawIssuer) {
				continue
			}
			named = true
			if crl.CheckSignatureFrom(ca) == nil {
				issuer = ca
				break
			}
		}
		if named && issuer == nil {
			return nil, fmt.Errorf("%w: CRL of %q (number %v)", ErrCRLSignature, crl.Issuer.String(), crl.Number)
		}
		// A CRL of an issuer that is not in the set (an intermediate
		// that clients present) is kept and checked against that
		// intermediate when a chain passes through it.
		key := string(crl.RawIssuer)
		if cur, ok := s.crls[key]; ok && !newerCRL(crl, cur.crl) {
			continue
		}
		s.crls[key] = &crlInfo{crl: crl, issuer: issuer}
	}
	h := sha256.New()
	slices.SortFunc(fps, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	for _, fp := range fps {
		h.Write(fp[:])
	}
	crlFPs := make([][32]byte, 0, len(s.crls))
	for key, ci := range s.crls {
		for _, e := range ci.crl.RevokedCertificateEntries {
			if e.SerialNumber != nil {
				s.revoked[revocationKey(nil, []byte(key), e.SerialNumber)] = struct{}{}
			}
		}
		crlFPs = append(crlFPs, sha256.Sum256(ci.crl.Raw))
	}
	slices.SortFunc(crlFPs, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	h.Write([]byte{0})
	for _, fp := range crlFPs {
		h.Write(fp[:])
	}
	h.Sum(s.digest[:0])
	return s, nil
}

func newerCRL(a, b *x509.RevocationList) bool {
	if a.Number != nil && b.Number != nil {
		if c := a.Number.Cmp(b.Number); c != 0 {
			return c > 0
		}
	}
	return a.ThisUpdate.After(b.ThisUpdate)
}

// revocationKey appends the map key of (issuer, serial) to buf.
func revocationKey(buf, rawIssuer []byte, serial *big.Int) string {
	buf = append(buf, rawIssuer...)
	buf = append(buf, 0)
	buf = serial.Append(buf, 16)
	return string(buf)
}

// Current returns s: a Set is a Source that never changes.
func (s *Set) Current() *Set { return s }

// Generation returns the number a [Store] gave the set when it published
// it; 0 for a Set made by NewSet.
func (s *Set) Generation() uint64 { return s.gen }

// Len returns the number of trusted CAs.
func (s *Set) Len() int { return len(s.cas) }

// Certificates returns the trusted CAs. The slice is a copy; the
// certificates are shared and must not be modified.
func (s *Set) Certificates() []*x509.Certificate { return slices.Clone(s.cas) }

// CRLs returns the CRLs in force, one per issuer. The slice is a copy; the
// lists are shared and must not be modified.
func (s *Set) CRLs() []*x509.RevocationList {
	out := make([]*x509.RevocationList, 0, len(s.crls))
	for _, ci := range s.crls {
		out = append(out, ci.crl)
	}
	slices.SortFunc(out, func(a, b *x509.RevocationList) int { return cmp.Compare(a.Issuer.String(), b.Issuer.String()) })
	return out
}

// Contains reports whether c is one of the trusted CAs.
func (s *Set) Contains(c *x509.Certificate) bool {
	if _, ok := s.byPtr[c]; ok {
		return true
	}
	_, ok := s.byFP[sha256.Sum256(c.Raw)]
	return ok
}

// IsRevoked reports whether c is on the CRL of its issuer, as far as the
// set can tell without a chain: the CRL of an issuer that is not one of the
// set's CAs is applied by Verify once the chain shows its issuer.
func (s *Set) IsRevoked(c *x509.Certificate) bool {
	if len(s.revoked) == 0 {
		return false
	}
	if ci, ok := s.crls[string(c.RawIssuer)]; !ok || ci.issuer == nil {
		return false
	}
	var buf [256]byte
	_, ok := s.revoked[revocationKey(buf[:0], c.RawIssuer, c.SerialNumber)]
	return ok
}

// sameContent reports whether s and t trust the same CAs and enforce the
// same CRLs.
func (s *Set) sameContent(t *Set) bool { return t != nil && s.digest == t.digest }

// StaleCRLPolicy says what verification does when a CRL's nextUpdate has
// passed and no newer CRL has arrived.
type StaleCRLPolicy uint8

const (
	// EnforceStaleCRL keeps enforcing the last CRL and logs a warning once
	// per CRL. It is the default: a late CRL publisher does not lock every
	// client out, and revoked certificates stay revoked.
	EnforceStaleCRL StaleCRLPolicy = iota
	// RefuseStaleCRL refuses every certificate issued by a CA whose CRL is
	// stale, failing closed until a fresh CRL is loaded.
	RefuseStaleCRL
)

// VerifyOptions tune [Set.Verify] and [Set.CheckVerified].
type VerifyOptions struct {
	// Now is the verification time; zero means time.Now().
	Now time.Time
	// StaleCRL says what to do with a CRL past its nextUpdate.
	StaleCRL StaleCRLPolicy
	// RequireClientAuthEKU refuses a leaf that has no extended key usage
	// extension. By default such a leaf is accepted: RFC 5280 (4.2.1.12)
	// reads a missing extension as "any usage", and crypto/x509, OpenSSL
	// and mosquitto accept it (`openssl x509 -req` without an extension
	// file makes such certificates). A leaf whose extension exists and
	// names neither clientAuth nor anyExtendedKeyUsage is refused in
	// both modes.
	RequireClientAuthEKU bool
	// Logger receives the warning about a stale CRL; nil means
	// slog.Default().
	Logger *slog.Logger
}

var clientAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}

// Verify verifies a client certificate chain as presented in TLS: peer[0]
// is the leaf, the rest are untrusted intermediates. It returns the chains
// from the leaf to a trusted CA in which nothing is revoked, the preferred
// one first (crypto/x509's order). Errors wrap [ErrEmpty], [ErrCALeaf],
// [ErrUntrusted], [ErrExpired], [ErrUsage], [ErrRevoked] or [ErrStaleCRL],
// and name the certificate at fault.
func (s *Set) Verify(peer []*x509.Certificate, opts VerifyOptions) ([][]*x509.Certificate, error) {
	if len(peer) == 0 || peer[0] == nil {
		return nil, fmt.Errorf("%w: no client certificate", ErrUntrusted)
	}
	leaf := peer[0]
	if err := s.precheck(leaf, opts); err != nil {
		return nil, err
	}
	var inter *x509.CertPool
	if len(peer) > 1 {
		inter = x509.NewCertPool()
		for _, c := range peer[1:] {
			if c != nil {
				inter.AddCert(c)
			}
		}
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     clientAuth,
	})
	if err != nil {
		return nil, classify(peer, s.cas, now, err)
	}
	var firstErr error
	good := chains[:0]
	for _, ch := range chains {
		if err := s.checkChain(ch[0], ch[1:], now, opts); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		good = append(good, ch)
	}
	if len(good) == 0 {
		return nil, firstErr
	}
	return good, nil
}

// CheckVerified re-checks a chain that Verify of this or an earlier Set
// returned, split as its leaf and the certificates above it, against s. It
// checks only what a change of trust or time can alter: the last
// certificate is still a trusted CA, nothing in the chain is revoked or
// outside its validity period, and the stale-CRL policy. Signatures are not
// checked again. An error means the chain is no longer valid under s; a
// caller with the presented certificates can then try [Set.Verify], which
// may find another chain.
func (s *Set) CheckVerified(leaf *x509.Certificate, issuers []*x509.Certificate, opts VerifyOptions) error {
	if len(issuers) == 0 {
		return fmt.Errorf("%w: chain without issuers", ErrUntrusted)
	}
	if err := s.precheck(leaf, opts); err != nil {
		return err
	}
	anchor := issuers[len(issuers)-1]
	if !s.Contains(anchor) {
		return fmt.Errorf("%w: %q is no longer a trusted CA", ErrUntrusted, anchor.Subject.String())
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	return s.checkChain(leaf, issuers, now, opts)
}

func (s *Set) precheck(leaf *x509.Certificate, opts VerifyOptions) error {
	if len(s.cas) == 0 {
		return fmt.Errorf("%w: refusing %q", ErrEmpty, leaf.Subject.String())
	}
	if leaf.BasicConstraintsValid && leaf.IsCA {
		return fmt.Errorf("%w: %q", ErrCALeaf, leaf.Subject.String())
	}
	if err := checkUsage(leaf, opts.RequireClientAuthEKU); err != nil {
		return err
	}
	return nil
}

// checkUsage checks the leaf's extended key usage for client
// authentication: clientAuth or anyExtendedKeyUsage, or no extension at all
// unless requireEKU.
func checkUsage(leaf *x509.Certificate, requireEKU bool) error {
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		if requireEKU {
			return fmt.Errorf("%w: %q has no extended key usage extension, and clientAuth is required", ErrUsage, leaf.Subject.String())
		}
		return nil // RFC 5280: no extension, any usage
	}
	if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil
	}
	return fmt.Errorf("%w: %q has no clientAuth extended key usage", ErrUsage, leaf.Subject.String())
}

// checkChain checks validity periods, revocation and CRL staleness of a
// chain whose signatures were verified.
func (s *Set) checkChain(leaf *x509.Certificate, issuers []*x509.Certificate, now time.Time, opts VerifyOptions) error {
	var buf [256]byte
	for i := -1; i < len(issuers); i++ {
		c := leaf
		if i >= 0 {
			c = issuers[i]
		}
		if now.Before(c.NotBefore) {
			return fmt.Errorf("%w: %q is not valid before %s", ErrExpired, c.Subject.String(), c.NotBefore.UTC().Format(time.RFC3339))
		}
		if now.After(c.NotAfter) {
			return fmt.Errorf("%w: %q expired at %s", ErrExpired, c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339))
		}
		if len(s.crls) == 0 {
			continue
		}
		ci, ok := s.crls[string(c.RawIssuer)]
		if !ok {
			continue
		}
		var parent *x509.Certificate
		if i+1 < len(issuers) {
			parent = issuers[i+1]
		}
		if ci.issuer == nil || parent != nil {
			// The CRL must be the chain's issuer's: fail closed when a
			// CRL for this issuer name does not verify with its key.
			if err := ci.verifiedBy(parent); err != nil {
				if ci.issuer == nil && parent == nil {
					continue // an anchor's issuer outside the set: nothing to check against
				}
				return err
			}
		}
		if _, revoked := s.revoked[revocationKey(buf[:0], c.RawIssuer, c.SerialNumber)]; revoked {
			return fmt.Errorf("%w: %q (serial=%s fingerprint_sha256=%s) by the CRL of %q", ErrRevoked, c.Subject.String(),
				certid.Serial(c), certid.Fingerprint(c), ci.crl.Issuer.String())
		}
		if !ci.crl.NextUpdate.IsZero() && now.After(ci.crl.NextUpdate) {
			if opts.StaleCRL == RefuseStaleCRL {
				return fmt.Errorf("%w: CRL of %q expected an update at %s", ErrStaleCRL, ci.crl.Issuer.String(), ci.crl.NextUpdate.UTC().Format(time.RFC3339))
			}
			if ci.warned.CompareAndSwap(false, true) {
				log := opts.Logger
				if log == nil {
					log = slog.Default()
				}
				log.Warn("truststore: CRL is past its nextUpdate; still enforcing it",
					slog.String("issuer", ci.crl.Issuer.String()),
					slog.Time("next_update", ci.crl.NextUpdate))
			}
		}
	}
	return nil
}

// classify wraps a crypto/x509 verification error with a sentinel.
func classify(peer, cas []*x509.Certificate, now time.Time, err error) error {
	leaf := peer[0]
	var (
		invalid x509.CertificateInvalidError
		unknown x509.UnknownAuthorityError
	)
	switch {
	case errors.As(err, &invalid):
		switch invalid.Reason {
		case x509.Expired:
			if c := invalid.Cert; c != nil {
				return fmt.Errorf("%w: %q is valid from %s to %s: %w", ErrExpired, c.Subject.String(),
					c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), err)
			}
			return fmt.Errorf("%w: %w", ErrExpired, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %q: %w", ErrUsage, leaf.Subject.String(), err)
		}
	case errors.As(err, &unknown):
		// crypto/x509 reports an expired intermediate or CA as an unknown
		// authority; name the expired certificate instead.
		for _, c := range append(peer[1:len(peer):len(peer)], cas...) {
			if c != nil && (now.Before(c.NotBefore) || now.After(c.NotAfter)) && bytes.Equal(c.RawSubject, leafOrIssuer(peer, c)) {
				return fmt.Errorf("%w: issuer %q is valid from %s to %s: %w", ErrExpired, c.Subject.String(),
					c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), err)
			}
		}
		return fmt.Errorf("%w: %q issued by %q: %w", ErrUntrusted, leaf.Subject.String(), leaf.Issuer.String(), err)
	}
	return fmt.Errorf("%w: %q: %w", ErrUntrusted, leaf.Subject.String(), err)
}

// leafOrIssuer returns the RawSubject c must have to be on the path of the
// presented chain: the issuer of some presented certificate, or c's own
// subject when nothing presented names it (so that the check is skipped).
func leafOrIssuer(peer []*x509.Certificate, c *x509.Certificate) []byte {
	for _, p := range peer {
		if p != nil && bytes.Equal(p.RawIssuer, c.RawSubject) {
			return c.RawSubject
		}
	}
	return nil
}
