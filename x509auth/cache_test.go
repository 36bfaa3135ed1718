package x509auth_test

import (
	"context"
	"crypto/x509"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// TestCacheDrainsWhenCertificatesAreDropped: the verified-chain cache holds
// each parsed leaf weakly, so once nothing else refers to a certificate
// (its connection closed) and the garbage collector ran, its entry is gone;
// the certificates still referenced keep theirs. Every handshake parses the
// client's chain anew, as crypto/tls does.
func TestCacheDrainsWhenCertificatesAreDropped(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "Drain Root CA")
	inter := root.Intermediate(t, "Drain Intermediate CA")
	leafDER := inter.Leaf(t, "device").Cert.Raw
	interDER := inter.Cert.Raw
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	require.NoError(t, err)
	a := newAuthenticator(t, set, authtest.NewClock(t0))

	parse := func(der []byte) *x509.Certificate {
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	connect := func() *x509.Certificate {
		leaf := parse(leafDER)
		r := a.Authenticate(context.Background(), request(leaf, parse(interDER)))
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
		return leaf
	}

	const dropped, held = 300, 3
	live := make([]*x509.Certificate, 0, held)
	for range held {
		live = append(live, connect())
	}
	for range dropped {
		connect()
	}
	require.GreaterOrEqual(t, a.CachedChains(), held, "a collection may already have run")

	require.Eventually(t, func() bool {
		runtime.GC()
		return a.CachedChains() == held
	}, 10*time.Second, 10*time.Millisecond, "the cache drains to the certificates still referenced")

	runtime.KeepAlive(live) // from here on live is dead: its certificates go too
	require.Eventually(t, func() bool {
		runtime.GC()
		return a.CachedChains() == 0
	}, 10*time.Second, 10*time.Millisecond, "the cache drains to zero")
}
