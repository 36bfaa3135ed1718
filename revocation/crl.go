package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/internal/certid"
)

// crlEntry is the cached CRL of one distribution point URL. It is
// verified against the issuer of the first certificate that named the URL
// and used only for certificates of that issuer (indirect CRLs are not
// supported).
type crlEntry struct {
	url    string
	issuer atomic.Pointer[x509.Certificate]
	used   atomic.Int64
	state  atomic.Pointer[crlState]

	mu   sync.Mutex
	done <-chan struct{}
}

func (e *crlEntry) lastUsed() int64 { return e.used.Load() }

type crlState struct {
	crl     *crlAnswer
	err     error
	nextTry time.Time
}

// crlAnswer is a verified CRL reduced to what judging needs.
type crlAnswer struct {
	rawIssuer  []byte
	issuerKey  []byte            // RawSubjectPublicKeyInfo of the key that verified it
	revoked    map[string]revInf // by serialKey
	thisUpdate time.Time
	expires    time.Time
}

type revInf struct {
	at     time.Time
	reason int
}

func (e *crlEntry) verdict(cert, issuer *x509.Certificate, now time.Time) (verdict, error) {
	st := e.state.Load()
	if st == nil || st.crl == nil {
		return none, nil
	}
	a := st.crl
	if !bytes.Equal(a.rawIssuer, cert.RawIssuer) || !bytes.Equal(a.issuerKey, issuer.RawSubjectPublicKeyInfo) {
		return none, nil
	}
	var buf [64]byte
	if r, ok := a.revoked[string(serialKey(buf[:0], cert.SerialNumber))]; ok {
		return revoked, fmt.Errorf("%w: %q (serial %s) by the CRL at %s, revoked at %s, reason %d", errRevoked,
			cert.Subject.String(), certid.Serial(cert), e.url, r.at.UTC().Format(time.RFC3339), r.reason)
	}
	if !now.Before(a.expires) {
		return none, nil
	}
	return good, nil
}

func (e *crlEntry) due(now time.Time) bool {
	st := e.state.Load()
	return st == nil || !now.Before(st.nextTry)
}

func (e *crlEntry) waitable() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.done
}

func (c *Checker) crlEntryFor(url string, issuer *x509.Certificate, now time.Time, create bool) *crlEntry {
	e := c.crls.get(url)
	if e == nil {
		if !create {
			return nil
		}
		e = c.crls.add(url, func() *crlEntry {
			e := &crlEntry{url: url}
			e.issuer.Store(issuer)
			return e
		})
	}
	if !now.IsZero() {
		e.used.Store(now.UnixNano())
	}
	return e
}

func (c *Checker) startCRL(e *crlEntry) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done != nil {
		return e.done
	}
	e.done = c.run("crl\x00"+e.url, func(ctx context.Context) { c.fetchCRL(ctx, e) }, func() {
		e.mu.Lock()
		e.done = nil
		e.mu.Unlock()
	})
	return e.done
}

func (c *Checker) fetchCRL(ctx context.Context, e *crlEntry) {
	c.stats.crlFetches.Add(1)
	issuer := e.issuer.Load()
	ans, err := c.downloadCRL(ctx, e.url, issuer)
	now := c.now()
	prev := e.state.Load()
	st := &crlState{crl: ans, err: err}
	if err != nil {
		c.stats.crlFailures.Add(1)
		if prev != nil {
			st.crl = prev.crl
		}
		st.nextTry = now.Add(c.retry)
		c.log.LogAttrs(ctx, slog.LevelWarn, "revocation: CRL fetch failed",
			slog.String("url", e.url), slog.String("issuer", issuer.Subject.String()), slog.String("err", err.Error()))
	} else {
		st.nextTry = c.refreshAt(ans.thisUpdate, ans.expires, now)
		if !now.Before(ans.expires) {
			c.stats.crlFailures.Add(1)
			st.err = fmt.Errorf("%w: stale CRL: nextUpdate %s has passed", ErrResponse, ans.expires.UTC().Format(time.RFC3339))
		}
	}
	e.state.Store(st)
	if ans != nil && newlyRevoked(prev, ans) {
		c.log.LogAttrs(ctx, slog.LevelInfo, "revocation: CRL revokes new certificates",
			slog.String("url", e.url), slog.String("issuer", issuer.Subject.String()))
		c.notifyRevoked()
	}
}

// newlyRevoked reports whether ans revokes a serial that prev's CRL did
// not.
func newlyRevoked(prev *crlState, ans *crlAnswer) bool {
	if prev == nil || prev.crl == nil {
		return len(ans.revoked) > 0
	}
	for k := range ans.revoked {
		if _, ok := prev.crl.revoked[k]; !ok {
			return true
		}
	}
	return false
}

func (c *Checker) downloadCRL(ctx context.Context, url string, issuer *x509.Certificate) (*crlAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	body, err := c.get(req, c.maxCRLBytes)
	if err != nil {
		return nil, err
	}
	return parseCRL(body, issuer, c.now(), c.maxAge)
}

// parseCRL parses a DER CRL (PEM is accepted too) and verifies it against
// issuer: issuer's name and signature. thisUpdate may not be in the
// future; a CRL without nextUpdate expires maxAge after thisUpdate.
func parseCRL(der []byte, issuer *x509.Certificate, now time.Time, maxAge time.Duration) (*crlAnswer, error) {
	if bytes.HasPrefix(bytes.TrimSpace(der), []byte("-----BEGIN")) {
		der = pemCRL(der)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrResponse, err)
	}
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("%w: CRL issued by %q, not %q", ErrResponse, crl.Issuer.String(), issuer.Subject.String())
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%w: CRL not signed by %q: %w", ErrResponse, issuer.Subject.String(), err)
	}
	if crl.ThisUpdate.IsZero() || crl.ThisUpdate.After(now.Add(clockSkew)) {
		return nil, fmt.Errorf("%w: CRL thisUpdate %s is in the future", ErrResponse, crl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	a := &crlAnswer{rawIssuer: crl.RawIssuer, issuerKey: issuer.RawSubjectPublicKeyInfo,
		revoked: make(map[string]revInf, len(crl.RevokedCertificateEntries)), thisUpdate: crl.ThisUpdate, expires: crl.NextUpdate}
	if a.expires.IsZero() {
		a.expires = a.thisUpdate.Add(maxAge)
	} else if a.expires.Before(a.thisUpdate) {
		return nil, fmt.Errorf("%w: CRL nextUpdate before thisUpdate", ErrResponse)
	}
	for _, r := range crl.RevokedCertificateEntries {
		if r.SerialNumber != nil {
			a.revoked[string(serialKey(nil, r.SerialNumber))] = revInf{at: r.RevocationTime, reason: r.ReasonCode}
		}
	}
	return a, nil
}

func pemCRL(data []byte) []byte {
	if b, _ := pem.Decode(data); b != nil && b.Type == "X509 CRL" {
		return b.Bytes
	}
	return data
}
