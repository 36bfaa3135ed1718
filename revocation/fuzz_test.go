package revocation

import (
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

// FuzzParseOCSP: whatever the responder sends, parseOCSP does not panic,
// and what it accepts is an answer for the serial asked about, signed by
// the issuer, with a sane validity.
func FuzzParseOCSP(f *testing.F) {
	now := time.Now()
	ca := authtest.NewRootCAAt(f, now, "Fuzz CA")
	other := authtest.NewRootCAAt(f, now, "Other CA")
	serial := big.NewInt(4242)
	for _, st := range []int{ocsp.Good, ocsp.Revoked, ocsp.Unknown} {
		der, err := ocsp.CreateResponse(ca.Cert, ca.Cert, ocsp.Response{Status: st, SerialNumber: serial,
			ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), RevokedAt: now.Add(-time.Hour)}, ca.Key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	bad, _ := ocsp.CreateResponse(ca.Cert, other.Cert, ocsp.Response{Status: ocsp.Good, SerialNumber: serial,
		ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, other.Key)
	f.Add(bad)
	f.Add(ocsp.TryLaterErrorResponse)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		a, err := parseOCSP(der, serial, ca.Cert, now, time.Hour)
		if err != nil {
			return
		}
		if a.status != ocsp.Good && a.status != ocsp.Revoked && a.status != ocsp.Unknown {
			t.Fatalf("status %d accepted", a.status)
		}
		if a.expires.Before(a.thisUpdate) || a.thisUpdate.After(now.Add(clockSkew)) {
			t.Fatalf("times accepted: %v %v", a.thisUpdate, a.expires)
		}
		resp, err := ocsp.ParseResponse(der, nil)
		if err != nil || resp.SerialNumber.Cmp(serial) != 0 {
			t.Fatalf("accepted a response for another serial: %v", err)
		}
		if resp.Certificate == nil {
			if err := resp.CheckSignatureFrom(ca.Cert); err != nil {
				t.Fatalf("accepted a response not signed by the issuer: %v", err)
			}
		}
	})
}

// FuzzParseCRL: parseCRL does not panic, and accepts only CRLs signed by
// the issuer.
func FuzzParseCRL(f *testing.F) {
	now := time.Now()
	ca := authtest.NewRootCAAt(f, now, "Fuzz CA")
	other := authtest.NewRootCAAt(f, now, "Other CA")
	leaf := ca.Leaf(f, "leaf")
	f.Add(ca.CRL(f, 1, now.Add(-time.Minute), now.Add(time.Hour), leaf.Cert))
	f.Add(authtest.CRLPEM(ca.CRL(f, 2, now.Add(-time.Minute), now.Add(time.Minute))))
	f.Add(authtest.CRLSignedBy(f, ca.Cert, other.Key, 3, now, now.Add(time.Hour), leaf.Cert))
	f.Add([]byte("-----BEGIN X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, der []byte) {
		a, err := parseCRL(der, ca.Cert, now, time.Hour)
		if err != nil {
			return
		}
		if a.expires.Before(a.thisUpdate) {
			t.Fatal("nextUpdate before thisUpdate accepted")
		}
		crl, err := x509.ParseRevocationList(pemCRL(der))
		if err != nil || crl.CheckSignatureFrom(ca.Cert) != nil {
			t.Fatalf("accepted a CRL not signed by the issuer: %v", err)
		}
	})
}
