package revocation_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// BenchmarkAuthenticate compares a CONNECT's X.509 authentication without
// revocation checking and with an OCSP answer (and a CRL) already cached.
// Each iteration parses the presented chain, as a new connection does, so
// x509auth's verified-chain cache misses: the uncached cost. Run the two
// side by side:
//
//	go test -run '^$' -bench 'Authenticate' -benchmem -count 10 ./revocation/ > b.txt
//	benchstat -col /revocation b.txt
func BenchmarkAuthenticate(b *testing.B) {
	f := newFixture(b, true, true)
	set, err := truststore.NewSet([]*x509.Certificate{f.ca.Cert}, nil)
	if err != nil {
		b.Fatal(err)
	}
	c := f.checker(b, revocation.Config{OCSP: true, CRLDistributionPoints: true})
	ctx := context.Background()
	if err := c.Check(ctx, f.chain); err != nil { // fills the cache
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rc   x509auth.RevocationChecker
	}{
		{"revocation=none", nil},
		{"revocation=cached", c},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a, err := x509auth.New(x509auth.Config{Trust: set, Revocation: tc.rc, Now: f.clock.Now, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			raw := f.leaf.Cert.Raw
			b.ReportAllocs()
			for b.Loop() {
				leaf, err := x509.ParseCertificate(raw)
				if err != nil {
					b.Fatal(err)
				}
				req := &auth.Request{ClientID: "c1", TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}}
				if res := a.Authenticate(ctx, req); res.Outcome != auth.Pass {
					b.Fatal(res.Err)
				}
			}
		})
	}
	b.Run("Check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Check(ctx, f.chain); err != nil {
				b.Fatal(err)
			}
		}
	})
}
