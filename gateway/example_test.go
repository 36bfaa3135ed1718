package gateway_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/gateway"
)

// A gateway in front of a mosquitto bound to loopback: clients
// authenticate with the chain (here a toy one) and reach mosquitto under
// their identity. With x509auth, set Config.TLS to
// authenticator.ServerTLSConfig(&tls.Config{Certificates: serverCerts}).
func Example() {
	authn := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.Username == "demo" && string(req.Password) == "demo" {
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "password", Username: "device-demo"}))
		}
		return auth.Result{} // not relevant: refused
	})
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{authn}, Authorizer: auth.AllowAuthenticated})
	if err != nil {
		log.Fatal(err)
	}
	g, err := gateway.New(gateway.Config{Manager: m, Upstream: "127.0.0.1:1883"})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	// ... until shutdown:
	_ = g.Close()
}

// The readiness check of the broker leg, for the admin listener's /readyz:
// not ready while the broker cannot be reached.
func ExampleNewUpstreamCheck() {
	check := gateway.NewUpstreamCheck(gateway.Config{Upstream: "127.0.0.1:1883"})
	if err := check.Check(context.Background()); err != nil {
		fmt.Println("not ready:", err)
	}
}
