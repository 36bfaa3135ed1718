package customauth_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var discard = slog.New(slog.DiscardHandler)

// pki is the server side PKI of the tests: a CA and a server certificate
// for 127.0.0.1.
type pki struct {
	ca     *authtest.CA
	server *authtest.Leaf
}

func newPKI(t testing.TB) pki {
	t.Helper()
	ca := authtest.NewRootCA(t, "Auth Server CA")
	return pki{ca: ca, server: ca.Leaf(t, "authserver", authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))}
}

// startServer starts the reference server over TLS on loopback.
func startServer(t testing.TB, p pki, cfg authserver.Config) *authserver.Server {
	t.Helper()
	srv, err := authserver.Start("127.0.0.1:0", authtest.ServerTLSConfig(t, p.server), authserver.NewHandler(cfg))
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// handlerServer serves h over TLS with httptest, for answers the reference
// server does not give.
func handlerServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, customauth.Config) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv, customauth.Config{Endpoint: srv.URL, Transport: srv.Client().Transport, Logger: discard}
}

func newAuthn(t *testing.T, cfg customauth.Config) *customauth.Authenticator {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	a, err := customauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(a.CloseIdleConnections)
	return a
}

func connectReq(user, pass string) *auth.Request {
	return &auth.Request{ClientID: user + "-client", Username: user, HasUsername: true, Password: []byte(pass), HasPassword: true, ProtocolVersion: 5}
}

func authenticate(a auth.Authenticator, req *auth.Request) auth.Result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return a.Authenticate(ctx, req)
}
