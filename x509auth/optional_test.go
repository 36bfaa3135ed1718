package x509auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// handshake runs a TLS handshake over a pipe and returns the server's error.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	done := make(chan error, 1)
	go func() {
		c := tls.Client(cc, client)
		err := c.Handshake()
		if err == nil {
			// TLS 1.3 reports the server's verdict on the client
			// certificate only on the first read.
			_, err = c.Read(make([]byte, 1))
		}
		done <- err
		cc.Close()
	}()
	err := tls.Server(sc, server).Handshake()
	sc.Close()
	<-done
	return err
}

// With ClientCertOptional a client without a certificate completes the
// handshake (another method will authenticate it), while a certificate
// that is presented must still verify.
func TestClientCertOptional(t *testing.T) {
	serverCA := authtest.NewRootCA(t, "Server CA")
	serverLeaf := serverCA.Leaf(t, "broker", authtest.WithDNSNames("broker"), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	clientCA := authtest.NewRootCA(t, "Client CA")
	good := clientCA.Leaf(t, "device")
	bad := authtest.NewRootCA(t, "Intruder CA").Leaf(t, "intruder")
	set, err := truststore.NewSet([]*x509.Certificate{clientCA.Cert}, nil)
	require.NoError(t, err)

	for _, optional := range []bool{false, true} {
		a, err := x509auth.New(x509auth.Config{Trust: set, ClientCertOptional: optional, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		server := a.ServerTLSConfig(authtest.ServerTLSConfig(t, serverLeaf))
		client := func(l *authtest.Leaf) *tls.Config { return authtest.ClientTLSConfig(t, serverCA, "broker", l) }

		require.NoError(t, handshake(t, server, client(good)), "optional=%v: a trusted certificate", optional)
		require.Error(t, handshake(t, server, client(bad)), "optional=%v: an untrusted certificate fails", optional)
		err = handshake(t, server, client(nil))
		if optional {
			require.NoError(t, err, "no certificate is fine when optional")
		} else {
			require.ErrorContains(t, err, "certificate", "no certificate fails when required")
		}
	}
}
