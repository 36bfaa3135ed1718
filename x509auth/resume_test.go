package x509auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// TestBaseVerifyPeerCertificateOnResumption: a VerifyPeerCertificate of
// the base configuration (a deny list, a pin) also judges resumed
// sessions. crypto/tls calls VerifyPeerCertificate on full handshakes
// only; ServerTLSConfig calls it on resumption itself, from
// VerifyConnection, so that a certificate the base refuses cannot come
// back with a session ticket issued before.
func TestBaseVerifyPeerCertificateOnResumption(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	a, err := x509auth.New(x509auth.Config{Trust: set, Mappings: tutorialMappings, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a}, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	var denied atomic.Bool
	var calls atomic.Int32
	errDenied := errors.New("denied by the base configuration")
	base := authtest.ServerTLSConfig(t, pki.Server)
	base.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		calls.Add(1)
		if len(raw) == 0 {
			return errors.New("no certificate")
		}
		if denied.Load() {
			return errDenied
		}
		return nil
	}
	srv := startBroker(t, a.ServerTLSConfig(base), m)
	addr := srv.ln.Addr().String()
	cfg := authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	code, resumed, err := dial(t, addr, cfg)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	require.False(t, resumed)
	require.Equal(t, int32(1), calls.Load())
	code, resumed, err = dial(t, addr, cfg)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	require.True(t, resumed, "the client should resume")
	require.Equal(t, int32(2), calls.Load(), "called on the resumed handshake too")

	denied.Store(true)
	_, _, err = dial(t, addr, cfg)
	require.Error(t, err)
	require.ErrorIs(t, <-srv.errs, errDenied)
}
