package x509auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// The tutorial's devices get their attributes from the first matching
// certificate of their chain, leaf first.
func ExampleAuthenticator_Authenticate() {
	pki := authtest.NewTutorialPKI(&testing.T{}, time.Now())
	set, _ := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	a, err := x509auth.New(x509auth.Config{
		Trust: set,
		Mappings: []x509auth.Mapping{
			{Name: "thermostat", Subject: "CN = thermostat", Attributes: map[string]string{"group": "thermostat_group"}},
			{Name: "intermediate", Subject: "CN = Fabrikam Intermediate CA 1", Attributes: map[string]string{"manufacturer": "fabrikam"}},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, leaf := range []*authtest.Leaf{pki.Thermostat, pki.Heater} {
		// An adapter passes the connection's tls.ConnectionState.
		res := a.Authenticate(context.Background(), &auth.Request{TLS: &tls.ConnectionState{PeerCertificates: leaf.Chain}})
		fmt.Println(res.Outcome, res.Principal.Username(), maps.Collect(res.Principal.Attributes()))
	}
	// Output:
	// Pass thermostat map[group:thermostat_group]
	// Pass heater map[manufacturer:fabrikam]
}

// A listener that requires client certificates verified against a
// reloading truststore, and sessions re-checked when it changes.
func ExampleAuthenticator_ServerTLSConfig() {
	tb := &testing.T{}
	pki := authtest.NewTutorialPKI(tb, time.Now())
	set, _ := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	store := truststore.NewMemory(set) // or truststore.New to watch files
	a, _ := x509auth.New(x509auth.Config{Trust: store, Logger: slog.New(slog.DiscardHandler)})
	m, _ := auth.NewManager(auth.Config{
		Authenticator: a, Authorizer: auth.AllowAuthenticated,
		Watches: []auth.Watch{a.Watch(store)}, // the Manager re-checks on every change
	})
	defer m.Close()

	cfg := a.ServerTLSConfig(&tls.Config{Certificates: []tls.Certificate{pki.Server.TLSCertificate()}})
	fmt.Println(cfg.ClientAuth == tls.RequireAnyClientCert, cfg.VerifyConnection != nil)
	// Output: true true
}

// Subjects are compared as parsed names.
func ExampleParseSubject() {
	a, _ := x509auth.ParseSubject("CN = Contoso Root CA Cert, OU = Engineering, C = US")
	b, _ := x509auth.ParseSubject("C=US,OU=Engineering,CN=Contoso Root CA Cert")
	fmt.Println(a == b)
	// Output: true
}
