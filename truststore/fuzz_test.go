package truststore_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
)

func FuzzParseCertificates(f *testing.F) {
	root := authtest.NewRootCAAt(f, t0, "Root")
	f.Add(authtest.CertsPEM(root.Cert))
	f.Add(authtest.CertsPEM(root.Cert)[:200])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add(root.Cert.Raw)
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := truststore.ParseCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		if err == nil {
			// Whatever parsed must be usable to build a set or be refused.
			_, _ = truststore.NewSet(certs, nil)
		}
	})
}

func FuzzParseCRLs(f *testing.F) {
	root := authtest.NewRootCAAt(f, t0, "Root")
	leaf := root.Leaf(f, "x")
	der := root.CRL(f, 1, t0, t0.Add(time.Hour), leaf.Cert)
	f.Add(der)
	f.Add(authtest.CRLPEM(der))
	f.Add(authtest.CRLPEM(der)[:50])
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := truststore.ParseCRLs(data)
		if err != nil {
			return
		}
		set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, crls)
		if err != nil {
			return
		}
		_, _ = set.Verify(leaf.Chain, truststore.VerifyOptions{Now: t0})
		_ = set.IsRevoked(leaf.Cert)
	})
}
