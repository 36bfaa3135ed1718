package customauth_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

// Ask a custom authentication server, with X.509 (or any method) behind it
// for when the server is unreachable.
func Example() {
	t := &testing.T{} // the test PKI wants a testing.TB; a real program loads its certificates
	ca := authtest.NewRootCA(t, "Auth Server CA")
	srvCert := ca.Leaf(t, "authserver", authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	srv, err := authserver.Start("127.0.0.1:0", authtest.ServerTLSConfig(t, srvCert), authserver.NewHandler(authserver.Config{
		Users: map[string]authserver.User{"thermostat": {Password: "s3cret", Attributes: map[string]string{"group": "sensors"}}},
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	custom, err := customauth.New(customauth.Config{
		Endpoint: srv.URL(),
		RootCAs:  ca.Pool(),
		Timeout:  2 * time.Second,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer custom.CloseIdleConnections()
	chain := auth.Chain{custom /*, satAuthn, x509Authn */}

	for _, pw := range []string{"s3cret", "guess"} {
		r := chain.Authenticate(context.Background(), &auth.Request{
			ClientID: "t-1", Username: "thermostat", HasUsername: true, Password: []byte(pw), HasPassword: true,
		})
		switch r.Outcome {
		case auth.Pass:
			group, _ := r.Principal.Attribute("group")
			fmt.Println(r.Outcome, r.Principal.Username(), group)
		default:
			fmt.Println(r.Outcome, r.Code)
		}
	}
	// Output:
	// Pass thermostat sensors
	// Fail Bad User Name or Password (0x86)
}
