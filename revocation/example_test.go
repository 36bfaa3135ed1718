package revocation_test

import (
	"crypto/tls"
	"log"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// A broker that checks its clients' certificates with OCSP and their CRL
// distribution points, refusing certificates without a fresh answer
// (hard-fail), and disconnects clients revoked while connected.
func ExampleNew() {
	store, err := truststore.New(truststore.Config{CAPaths: []string{"/etc/mqtt/client-ca"}})
	if err != nil {
		log.Fatal(err)
	}
	rc, err := revocation.New(revocation.Config{
		Mode:                  revocation.HardFail,
		OCSP:                  true,
		CRLDistributionPoints: true,
		Timeout:               5 * time.Second,
		Wait:                  2 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	a, err := x509auth.New(x509auth.Config{Trust: store, Revocation: rc})
	if err != nil {
		log.Fatal(err)
	}
	// The Manager re-checks its live sessions each time the checker
	// finds a certificate newly revoked.
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a}, Authorizer: auth.AllowAuthenticated,
		Watches: []auth.Watch{rc.Watch(a.Check, 0)}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ln, err := tls.Listen("tcp", ":8883", a.ServerTLSConfig(&tls.Config{ /* server certificate */ }))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	// Hand each connection to a broker adapter with m.
}
