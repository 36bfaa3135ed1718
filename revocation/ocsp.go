package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mqttauth/mqttauth/internal/certid"
)

// clockSkew is how far in the future a thisUpdate may be.
const clockSkew = 5 * time.Minute

// ocspEntry is the cached OCSP status of one certificate: its issuer and
// serial (not the certificate itself, which may be large and is held
// weakly elsewhere), and the last answer.
type ocspEntry struct {
	key     string
	serial  *big.Int
	subject string
	issuer  *x509.Certificate
	url     string
	req     []byte // the DER OCSP request, made once
	used    atomic.Int64
	state   atomic.Pointer[ocspState]

	mu   sync.Mutex
	done <-chan struct{} // of the fetch in flight, or nil
}

func (e *ocspEntry) lastUsed() int64 { return e.used.Load() }

// ocspState is an immutable snapshot of an entry: the last valid answer
// (kept across failed refreshes while it is fresh), the last failure, and
// when to fetch next.
type ocspState struct {
	ans     *ocspAnswer
	err     error
	nextTry time.Time
}

// ocspAnswer is a verified OCSP single response.
type ocspAnswer struct {
	status     int // ocsp.Good, ocsp.Revoked, ocsp.Unknown
	thisUpdate time.Time
	expires    time.Time // nextUpdate, or thisUpdate+MaxAge without one
	revokedAt  time.Time
	reason     int
}

func (e *ocspEntry) verdict(now time.Time) (verdict, error) {
	st := e.state.Load()
	if st == nil || st.ans == nil {
		return none, nil
	}
	a := st.ans
	if a.status == ocsp.Revoked {
		return revoked, fmt.Errorf("%w: %q (serial %s) by OCSP at %s, reason %d", errRevoked,
			e.subject, certid.SerialNumber(e.serial), a.revokedAt.UTC().Format(time.RFC3339), a.reason)
	}
	if !now.Before(a.expires) {
		return none, nil
	}
	if a.status == ocsp.Good {
		return good, nil
	}
	return unknown, nil
}

// due reports whether a fetch should start: never fetched, or the refresh
// or retry time has come. A revoked answer is final.
func (e *ocspEntry) due(now time.Time) bool {
	st := e.state.Load()
	return st == nil || !now.Before(st.nextTry)
}

func (e *ocspEntry) waitable() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.done
}

// certKey appends the cache key of cert (issuer DN and serial) to buf.
func certKey(buf []byte, cert *x509.Certificate) []byte {
	buf = append(buf, cert.RawIssuer...)
	buf = append(buf, 0)
	return serialKey(buf, cert.SerialNumber)
}

// serialKey appends a serial's sign and magnitude to buf without
// allocating (big.Int.Append and Bytes allocate).
func serialKey(buf []byte, serial *big.Int) []byte {
	buf = append(buf, byte(serial.Sign()+1))
	n := (serial.BitLen() + 7) / 8
	buf = slices.Grow(buf, n)
	serial.FillBytes(buf[len(buf) : len(buf)+n])
	return buf[:len(buf)+n]
}

// ocspEntryFor returns the entry of cert, creating it when create is set.
// An entry made for another issuer key or responder is not used.
func (c *Checker) ocspEntryFor(cert, issuer *x509.Certificate, url string, now time.Time, create bool) *ocspEntry {
	var buf [384]byte
	key := certKey(buf[:0], cert)
	e := c.certs.getBytes(key)
	if e == nil {
		if !create {
			return nil
		}
		req, err := ocsp.CreateRequest(cert, issuer, nil)
		if err != nil {
			return nil
		}
		e = c.certs.add(string(key), func() *ocspEntry {
			return &ocspEntry{key: string(key), serial: cert.SerialNumber, subject: cert.Subject.String(),
				issuer: issuer, url: url, req: req}
		})
	}
	if e.url != url || (e.issuer != issuer && !bytes.Equal(e.issuer.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo)) {
		return nil
	}
	if !now.IsZero() {
		e.used.Store(now.UnixNano())
	}
	return e
}

// startOCSP starts a fetch for e unless one is in flight, and returns the
// channel closed when it ends (nil after Close).
func (c *Checker) startOCSP(e *ocspEntry) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done != nil {
		return e.done
	}
	e.done = c.run("ocsp\x00"+e.key, func(ctx context.Context) { c.fetchOCSP(ctx, e) }, func() {
		e.mu.Lock()
		e.done = nil
		e.mu.Unlock()
	})
	return e.done
}

// fetchOCSP asks e's responder and stores the outcome.
func (c *Checker) fetchOCSP(ctx context.Context, e *ocspEntry) {
	c.stats.ocspFetches.Add(1)
	ans, err := c.askOCSP(ctx, e)
	now := c.now()
	prev := e.state.Load()
	st := &ocspState{ans: ans, err: err}
	switch {
	case err != nil:
		c.stats.ocspFailures.Add(1)
		if prev != nil {
			st.ans = prev.ans
		}
		st.nextTry = now.Add(c.retry)
		c.log.LogAttrs(ctx, slog.LevelWarn, "revocation: OCSP fetch failed",
			slog.String("subject", e.subject), slog.String("serial", certid.SerialNumber(e.serial)),
			slog.String("url", e.url), slog.String("err", err.Error()))
	case ans.status == ocsp.Revoked:
		st.nextTry = now.Add(100 * 365 * 24 * time.Hour) // final
	default:
		st.nextTry = c.refreshAt(ans.thisUpdate, ans.expires, now)
		if !now.Before(ans.expires) {
			c.stats.ocspFailures.Add(1)
			st.err = fmt.Errorf("%w: stale OCSP response: nextUpdate %s has passed", ErrResponse, ans.expires.UTC().Format(time.RFC3339))
		}
	}
	e.state.Store(st)
	if ans != nil && ans.status == ocsp.Revoked && (prev == nil || prev.ans == nil || prev.ans.status != ocsp.Revoked) {
		c.log.LogAttrs(ctx, slog.LevelWarn, "revocation: certificate revoked (OCSP)",
			slog.String("subject", e.subject), slog.String("serial", certid.SerialNumber(e.serial)),
			slog.Time("revoked_at", ans.revokedAt), slog.Int("revocation_reason", ans.reason))
		c.notifyRevoked()
	}
}

// refreshAt is when to fetch again an answer valid from thisUpdate until
// expires: RefreshBefore (default a quarter of the span) before it
// expires, and not sooner than RetryInterval from now.
func (c *Checker) refreshAt(thisUpdate, expires, now time.Time) time.Time {
	before := c.refreshBefore
	if before == 0 {
		before = expires.Sub(thisUpdate) / 4
	}
	t := expires.Add(-before)
	if earliest := now.Add(c.retry); t.Before(earliest) {
		t = earliest
	}
	return t
}

func (c *Checker) askOCSP(ctx context.Context, e *ocspEntry) (*ocspAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(e.req))
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	body, err := c.get(req, c.maxOCSPBytes)
	if err != nil {
		return nil, err
	}
	return parseOCSP(body, e.serial, e.issuer, c.now(), c.maxAge)
}

// get does req and returns the body of a 200 response, at most max bytes.
func (c *Checker) get(req *http.Request, max int64) ([]byte, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("revocation: %s: HTTP status %s", req.URL.Redacted(), resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("revocation: %s: %w", req.URL.Redacted(), err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("%w: %s: response larger than %d bytes", ErrResponse, req.URL.Redacted(), max)
	}
	return body, nil
}

// parseOCSP parses and verifies an OCSP response for the certificate with
// serial issued by issuer: it must be signed by the issuer, or by a
// delegated responder whose certificate the issuer signed, that names
// id-kp-OCSPSigning and is valid now (RFC 6960 section 4.2.2.2). Its
// thisUpdate may not be in the future (beyond a few minutes' skew). An
// answer without nextUpdate expires maxAge after thisUpdate. A stale answer
// is returned (revoked stays revoked); the caller judges freshness. No
// nonce is sent or required (RFC 5019).
func parseOCSP(der []byte, serial *big.Int, issuer *x509.Certificate, now time.Time, maxAge time.Duration) (*ocspAnswer, error) {
	// x/crypto/ocsp checks a delegated responder's certificate against the
	// issuer but not its extended key usage, and cannot verify a response
	// that embeds the issuer's own certificate: verify here instead.
	resp, err := ocsp.ParseResponseForCert(der, &x509.Certificate{SerialNumber: serial}, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrResponse, err)
	}
	signer := resp.Certificate
	if signer == nil || bytes.Equal(signer.Raw, issuer.Raw) {
		if err := resp.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("%w: not signed by the issuer %q: %w", ErrResponse, issuer.Subject.String(), err)
		}
	} else {
		// ParseResponseForCert checked the response's signature with
		// signer's key; now check signer.
		if err := signer.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("%w: responder %q not issued by %q: %w", ErrResponse, signer.Subject.String(), issuer.Subject.String(), err)
		}
		if !slices.Contains(signer.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return nil, fmt.Errorf("%w: responder %q lacks the OCSPSigning extended key usage", ErrResponse, signer.Subject.String())
		}
		if now.Before(signer.NotBefore) || now.After(signer.NotAfter) {
			return nil, fmt.Errorf("%w: responder certificate %q is not valid now", ErrResponse, signer.Subject.String())
		}
	}
	if resp.SerialNumber == nil || resp.SerialNumber.Cmp(serial) != 0 {
		return nil, fmt.Errorf("%w: response for another serial", ErrResponse)
	}
	if resp.ThisUpdate.IsZero() || resp.ThisUpdate.After(now.Add(clockSkew)) {
		return nil, fmt.Errorf("%w: thisUpdate %s is in the future", ErrResponse, resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	a := &ocspAnswer{status: resp.Status, thisUpdate: resp.ThisUpdate, expires: resp.NextUpdate,
		revokedAt: resp.RevokedAt, reason: resp.RevocationReason}
	if a.expires.IsZero() {
		a.expires = a.thisUpdate.Add(maxAge)
	} else if a.expires.Before(a.thisUpdate) {
		return nil, fmt.Errorf("%w: nextUpdate before thisUpdate", ErrResponse)
	}
	switch a.status {
	case ocsp.Good, ocsp.Revoked, ocsp.Unknown:
	default:
		return nil, fmt.Errorf("%w: status %d", ErrResponse, a.status)
	}
	return a, nil
}
