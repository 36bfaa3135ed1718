package truststore_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// A Store loads the trusted client CAs from a directory (a ConfigMap
// volume) and a CRL, and verifies a client's chain.
func ExampleNew() {
	tb := &testing.T{}
	now := time.Now()
	root := authtest.NewRootCAAt(tb, now, "Fabrikam Root CA")
	inter := root.Intermediate(tb, "Fabrikam Intermediate CA 1")
	thermostat, heater := inter.Leaf(tb, "thermostat"), inter.Leaf(tb, "heater")

	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "client_ca.pem"), authtest.CertsPEM(root.Cert), 0o644)
	crl := filepath.Join(dir, "crl.pem")
	os.WriteFile(crl, authtest.CRLPEM(inter.CRL(tb, 1, now, now.Add(time.Hour), heater.Cert)), 0o644)

	store, err := truststore.New(truststore.Config{
		CAPaths:  []string{filepath.Join(dir, "client_ca.pem")},
		CRLPaths: []string{crl},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	set := store.Current()
	fmt.Println("generation", set.Generation(), "CAs", set.Len())
	chains, err := set.Verify(thermostat.Chain, truststore.VerifyOptions{})
	fmt.Println("thermostat:", len(chains[0]), "certificates,", err)
	_, err = set.Verify(heater.Chain, truststore.VerifyOptions{})
	fmt.Println("heater revoked:", err != nil && errorsIs(err, truststore.ErrRevoked))
	// Output:
	// generation 1 CAs 1
	// thermostat: 3 certificates, <nil>
	// heater revoked: true
}

// A Set is an in-memory Source.
func ExampleNewSet() {
	tb := &testing.T{}
	root := authtest.NewRootCA(tb, "Root")
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	fmt.Println(set.Len(), err)
	// Output: 1 <nil>
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
