package revocationtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

// Status is a certificate's revocation status as the Responder reports
// it.
type Status uint8

// The statuses. Certificates never set are Good.
const (
	Good Status = iota
	Revoked
	Unknown
)

// Fault makes the Responder misbehave.
type Fault uint8

// The faults.
const (
	// NoFault answers correctly.
	NoFault Fault = iota
	// Stale answers with a nextUpdate that has passed.
	Stale
	// WrongKey signs with a key that is not the issuer's.
	WrongKey
	// BadSignature corrupts the signature (an unsigned answer).
	BadSignature
	// Malformed answers bytes that are no OCSP response or CRL.
	Malformed
	// Down answers HTTP 503.
	Down
)

// Responder is an OCSP responder (POST to OCSPURL) and a CRL server (GET
// CRLURL) for one CA. It is safe for concurrent use.
type Responder struct {
	// URL is the base URL of the server.
	URL string

	ca       *authtest.CA
	other    crypto.Signer
	mu       sync.Mutex
	status   map[string]revoked // serial (hex) -> status
	fault    Fault
	delay    time.Duration
	now      func() time.Time
	validity time.Duration
	delegate *authtest.Leaf
	number   int64

	ocspRequests, crlRequests atomic.Int64
}

type revoked struct {
	serial *big.Int
	status Status
}

// NewResponder starts a Responder for ca and stops it when the test ends.
// Its answers are valid for an hour from the current time.
func NewResponder(tb testing.TB, ca *authtest.CA) *Responder {
	tb.Helper()
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("revocationtest: %v", err)
	}
	r := &Responder{ca: ca, other: other, status: make(map[string]revoked), now: time.Now, validity: time.Hour}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ocsp", r.serveOCSP)
	mux.HandleFunc("GET /crl", r.serveCRL)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// OCSPURL is the responder's URL, for authtest.WithOCSPServer.
func (r *Responder) OCSPURL() string { return r.URL + "/ocsp" }

// CRLURL is the CRL's URL, for authtest.WithCRLDistributionPoints.
func (r *Responder) CRLURL() string { return r.URL + "/crl" }

// Set sets the status of cert.
func (r *Responder) Set(cert *x509.Certificate, s Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status[cert.SerialNumber.Text(16)] = revoked{serial: cert.SerialNumber, status: s}
	r.number++
}

// SetFault makes the Responder misbehave, or behave again with NoFault.
func (r *Responder) SetFault(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = f
}

// SetDelay makes every answer wait d (a slow responder); a request whose
// client gives up ends early.
func (r *Responder) SetDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// SetNow sets the Responder's clock, for tests with a fake clock.
func (r *Responder) SetNow(now func() time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = now
}

// SetValidity sets the span from thisUpdate to nextUpdate of the answers;
// zero leaves nextUpdate out.
func (r *Responder) SetValidity(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.validity = d
}

// Delegate signs OCSP answers with l's key and embeds l's certificate: a
// delegated responder, which must be issued by the CA and name
// id-kp-OCSPSigning (authtest.WithExtKeyUsage(x509.ExtKeyUsageOCSPSigning)).
// nil signs with the CA's key again.
func (r *Responder) Delegate(l *authtest.Leaf) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delegate = l
}

// OCSPRequests returns how many OCSP requests arrived.
func (r *Responder) OCSPRequests() int { return int(r.ocspRequests.Load()) }

// CRLRequests returns how many CRL requests arrived.
func (r *Responder) CRLRequests() int { return int(r.crlRequests.Load()) }

// begin delays the answer as told, answers the Down and Malformed faults
// itself (ok false), and otherwise returns the fault and the times of an
// answer made now.
func (r *Responder) begin(w http.ResponseWriter, req *http.Request) (f Fault, thisUpdate, nextUpdate time.Time, ok bool) {
	r.mu.Lock()
	f, delay, now, validity := r.fault, r.delay, r.now(), r.validity
	r.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-req.Context().Done():
			return f, thisUpdate, nextUpdate, false
		}
	}
	switch f {
	case Down:
		http.Error(w, "down", http.StatusServiceUnavailable)
		return f, thisUpdate, nextUpdate, false
	case Malformed:
		w.Write([]byte("not a response"))
		return f, thisUpdate, nextUpdate, false
	}
	thisUpdate = now.Add(-time.Minute).Truncate(time.Second)
	if validity > 0 {
		nextUpdate = thisUpdate.Add(validity)
	}
	if f == Stale {
		thisUpdate, nextUpdate = now.Add(-2*time.Hour).Truncate(time.Second), now.Add(-time.Hour).Truncate(time.Second)
	}
	return f, thisUpdate, nextUpdate, true
}

func (r *Responder) serveOCSP(w http.ResponseWriter, req *http.Request) {
	r.ocspRequests.Add(1)
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<16))
	if err != nil {
		return
	}
	q, err := ocsp.ParseRequest(body)
	if err != nil {
		w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	f, thisUpdate, nextUpdate, ok := r.begin(w, req)
	if !ok {
		return
	}
	r.mu.Lock()
	st := r.status[q.SerialNumber.Text(16)].status
	delegate := r.delegate
	r.mu.Unlock()
	tmpl := ocsp.Response{SerialNumber: q.SerialNumber, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	switch st {
	case Good:
		tmpl.Status = ocsp.Good
	case Revoked:
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, thisUpdate, ocsp.KeyCompromise
	case Unknown:
		tmpl.Status = ocsp.Unknown
	}
	responder, key := r.ca.Cert, r.ca.Key
	if delegate != nil {
		responder, key = delegate.Cert, delegate.Key
		tmpl.Certificate = delegate.Cert
	}
	if f == WrongKey {
		key = r.other
	}
	der, err := ocsp.CreateResponse(r.ca.Cert, responder, tmpl, key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if f == BadSignature {
		der = corruptSignature(der, delegate != nil)
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(der)
}

func (r *Responder) serveCRL(w http.ResponseWriter, req *http.Request) {
	r.crlRequests.Add(1)
	f, thisUpdate, nextUpdate, ok := r.begin(w, req)
	if !ok {
		return
	}
	r.mu.Lock()
	var list []*x509.Certificate
	for _, s := range r.status {
		if s.status == Revoked {
			list = append(list, &x509.Certificate{SerialNumber: s.serial})
		}
	}
	number := r.number + 1
	r.mu.Unlock()
	key := r.ca.Key
	if f == WrongKey {
		key = r.other
	}
	tb := &tbRecorder{}
	der := authtest.CRLSignedBy(tb, r.ca.Cert, key, number, thisUpdate, nextUpdate, list...)
	if tb.err != "" {
		http.Error(w, tb.err, http.StatusInternalServerError)
		return
	}
	if f == BadSignature {
		der = corruptSignature(der, false)
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Write(der)
}

// corruptSignature flips a bit of the signature, which ends the DER of an
// OCSP response without embedded certificate and of a CRL; with an
// embedded certificate, the signature is followed by it and the bit
// flipped is in the response's signature all the same (the last bytes of
// the BIT STRING before the certificates).
func corruptSignature(der []byte, embedded bool) []byte {
	out := append([]byte(nil), der...)
	if !embedded {
		out[len(out)-1] ^= 0x01
		return out
	}
	// Find the certificates' [0] tag from the end is fiddly; flipping a
	// bit inside the signed data breaks the signature just as well.
	out[len(out)/3] ^= 0x01
	return out
}

// tbRecorder lets the handler call authtest helpers that take a
// testing.TB outside the test's goroutine: it records a failure instead of
// stopping the goroutine.
type tbRecorder struct {
	testing.TB
	err string
}

func (t *tbRecorder) Helper() {}

func (t *tbRecorder) Fatalf(format string, args ...any) {
	t.err = "revocationtest: CRL: " + format
}
