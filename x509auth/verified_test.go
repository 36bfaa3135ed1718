package x509auth_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// TestChainsByContent: a presented chain that verified is remembered by
// its content, so the same certificates parsed anew (a new handshake, a
// resumed TLS session) are not verified by signature again; the trust set
// and the clock still judge them on every connection: a CRL that revokes
// the leaf, the removal of the CA and expiry refuse them, and a chain
// presented differently is verified from scratch.
func TestChainsByContent(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, t0)
	parse := func(c *x509.Certificate) *x509.Certificate {
		p, err := x509.ParseCertificate(c.Raw)
		require.NoError(t, err)
		return p
	}
	// presented is the thermostat's chain as a new handshake parses it.
	presented := func() []*x509.Certificate {
		return []*x509.Certificate{parse(pki.Thermostat.Cert), parse(pki.FabrikamIntermediate.Cert)}
	}
	trusting := func(crls ...*x509.RevocationList) *truststore.Set {
		s, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, crls)
		require.NoError(t, err)
		return s
	}
	store := truststore.NewMemory(trusting())
	clock := authtest.NewClock(t0)
	a := newAuthenticator(t, store, clock)
	connect := func(chain []*x509.Certificate) auth.Result {
		return a.Authenticate(context.Background(), request(chain...))
	}

	r := connect(presented())
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	require.Equal(t, int64(1), x509auth.Verifications(a))
	for range 3 {
		r = connect(presented())
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
		require.Equal(t, "thermostat", r.Principal.Username())
		require.Equal(t, map[string]string{"group": "thermostat_group"}, attrs(r.Principal))
	}
	require.Equal(t, int64(1), x509auth.Verifications(a), "the same chain is not verified by signature again")
	require.Equal(t, 1, x509auth.ChainsByContent(a))

	// The leaf alone is another presented chain: verified from scratch,
	// and it does not verify (the intermediate is missing).
	r = connect(presented()[:1])
	require.Equal(t, auth.Fail, r.Outcome)
	require.ErrorIs(t, r.Err, x509auth.ErrUntrusted)
	require.Equal(t, int64(2), x509auth.Verifications(a))

	// A CRL revokes the leaf: the remembered chain is re-checked.
	crl, err := x509.ParseRevocationList(pki.FabrikamIntermediate.CRL(t, 1, t0, t0.Add(time.Hour), pki.Thermostat.Cert))
	require.NoError(t, err)
	store.Replace(trusting(crl))
	r = connect(presented())
	require.Equal(t, auth.Fail, r.Outcome)
	require.ErrorIs(t, r.Err, x509auth.ErrRevoked)

	// Trusted again, then the CA goes.
	store.Replace(trusting())
	r = connect(presented())
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	other, err := truststore.NewSet([]*x509.Certificate{pki.ContosoRoot.Cert}, nil)
	require.NoError(t, err)
	store.Replace(other)
	r = connect(presented())
	require.Equal(t, auth.Fail, r.Outcome)
	require.ErrorIs(t, r.Err, x509auth.ErrUntrusted)

	// Trusted again, then the leaf expires.
	store.Replace(trusting())
	r = connect(presented())
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	clock.Set(pki.Thermostat.Cert.NotAfter.Add(time.Second))
	r = connect(presented())
	require.Equal(t, auth.Fail, r.Outcome)
	require.ErrorIs(t, r.Err, x509auth.ErrExpired)
}

// TestChainsByContentBounded: the cache by content keeps at most
// Config.ChainCacheSize chains, and a negative size turns it off.
func TestChainsByContentBounded(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "Bound Root CA")
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	require.NoError(t, err)
	leaves := make([]*authtest.Leaf, 5)
	for i := range leaves {
		leaves[i] = root.Leaf(t, "device")
	}
	connect := func(a *x509auth.Authenticator, l *authtest.Leaf) {
		c, err := x509.ParseCertificate(l.Cert.Raw)
		require.NoError(t, err)
		r := a.Authenticate(context.Background(), request(c))
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	}

	a := newAuthenticator(t, set, authtest.NewClock(t0), func(c *x509auth.Config) { c.ChainCacheSize = 2 })
	for _, l := range leaves {
		connect(a, l)
		require.LessOrEqual(t, x509auth.ChainsByContent(a), 2)
	}
	require.Equal(t, 2, x509auth.ChainsByContent(a))

	off := newAuthenticator(t, set, authtest.NewClock(t0), func(c *x509auth.Config) { c.ChainCacheSize = -1 })
	for range 3 {
		connect(off, leaves[0])
	}
	require.Equal(t, int64(3), x509auth.Verifications(off))
	require.Zero(t, x509auth.ChainsByContent(off))
}
