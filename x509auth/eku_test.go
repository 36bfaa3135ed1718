package x509auth_test

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// TestExtendedKeyUsage: by default a certificate without an extended key
// usage extension is accepted (RFC 5280 4.2.1.12: no extension, any
// usage; crypto/x509, OpenSSL and mosquitto agree); RequireClientAuthEKU
// refuses it. A certificate whose extension lacks clientAuth is refused
// in both modes, at CONNECT and in the TLS handshake check.
func TestExtendedKeyUsage(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "EKU Root CA")
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	require.NoError(t, err)
	for _, tc := range []struct {
		name            string
		leaf            *authtest.Leaf
		lenient, strict error
	}{
		{"no_extension", root.Leaf(t, "plain", authtest.WithExtKeyUsage()), nil, x509auth.ErrUsage},
		{"client_auth", root.Leaf(t, "client", authtest.WithExtKeyUsage(x509.ExtKeyUsageClientAuth)), nil, nil},
		{"client_and_server_auth", root.Leaf(t, "both", authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)), nil, nil},
		{"any_usage", root.Leaf(t, "any", authtest.WithExtKeyUsage(x509.ExtKeyUsageAny)), nil, nil},
		{"server_auth_only", root.Leaf(t, "server", authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth)), x509auth.ErrUsage, x509auth.ErrUsage},
		{"code_signing_only", root.Leaf(t, "signer", authtest.WithExtKeyUsage(x509.ExtKeyUsageCodeSigning)), x509auth.ErrUsage, x509auth.ErrUsage},
	} {
		for _, mode := range []struct {
			name    string
			require bool
			want    error
		}{{"default", false, tc.lenient}, {"require_client_auth_eku", true, tc.strict}} {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				a := newAuthenticator(t, set, authtest.NewClock(t0), func(c *x509auth.Config) { c.RequireClientAuthEKU = mode.require })
				res := a.Authenticate(context.Background(), request(tc.leaf.Chain...))
				handshake := a.ServerTLSConfig(nil).VerifyConnection
				if mode.want == nil {
					require.Equal(t, auth.Pass, res.Outcome, "%v", res.Err)
					require.NoError(t, handshake(*request(tc.leaf.Chain...).TLS))
					return
				}
				require.Equal(t, auth.Fail, res.Outcome)
				require.Equal(t, auth.NotAuthorized, res.Code)
				require.ErrorIs(t, res.Err, mode.want)
				require.ErrorIs(t, handshake(*request(tc.leaf.Chain...).TLS), mode.want)
			})
		}
	}
}
