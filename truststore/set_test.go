package truststore_test

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/internal/certid"
	"github.com/mqttauth/mqttauth/truststore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestVerify(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "Fabrikam Root CA")
	inter := root.Intermediate(t, "Fabrikam Intermediate CA 1")
	other := authtest.NewRootCAAt(t, t0, "Other Root CA")
	good := inter.Leaf(t, "thermostat")
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	require.NoError(t, err)
	opts := truststore.VerifyOptions{Now: t0}

	t.Run("valid", func(t *testing.T) {
		chains, err := set.Verify(good.Chain, opts)
		require.NoError(t, err)
		require.Len(t, chains[0], 3)
		require.Same(t, root.Cert, chains[0][2])
	})
	for _, kt := range []struct {
		name string
		k    authtest.KeyType
	}{{"rsa", authtest.RSA}, {"ed25519", authtest.Ed25519}} {
		t.Run("key_"+kt.name, func(t *testing.T) {
			l := inter.Leaf(t, "k-"+kt.name, authtest.WithKeyType(kt.k))
			_, err := set.Verify(l.Chain, opts)
			require.NoError(t, err)
		})
	}
	cases := []struct {
		name  string
		chain []*x509.Certificate
		now   time.Time
		want  error
		msg   string
	}{
		{"expired_leaf", inter.Leaf(t, "old", authtest.WithValidity(t0.Add(-48*time.Hour), t0.Add(-time.Hour))).Chain, t0, truststore.ErrExpired, "expired"},
		{"not_yet_valid_leaf", inter.Leaf(t, "young", authtest.WithValidity(t0.Add(time.Hour), t0.Add(48*time.Hour))).Chain, t0, truststore.ErrExpired, "is before"},
		{"expired_intermediate", root.Intermediate(t, "Old Intermediate", authtest.WithValidity(t0.Add(-48*time.Hour), t0.Add(-time.Hour))).Leaf(t, "x", authtest.WithValidity(t0.Add(-48*time.Hour), t0.Add(time.Hour))).Chain, t0, truststore.ErrExpired, "Old Intermediate"},
		{"not_yet_valid_intermediate", root.Intermediate(t, "Young Intermediate", authtest.WithValidity(t0.Add(time.Hour), t0.Add(48*time.Hour))).Leaf(t, "x").Chain, t0, truststore.ErrExpired, "Young Intermediate"},
		{"unknown_ca", other.Leaf(t, "stranger").Chain, t0, truststore.ErrUntrusted, "unknown authority"},
		{"missing_intermediate", good.Chain[:1], t0, truststore.ErrUntrusted, "unknown authority"},
		{"server_auth_only", inter.Leaf(t, "server", authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth)).Chain, t0, truststore.ErrUsage, "client authentication"},
		{"ca_as_leaf", inter.Leaf(t, "sneaky", authtest.WithIsCA()).Chain, t0, truststore.ErrCALeaf, "sneaky"},
		{"ca_itself", []*x509.Certificate{root.Cert}, t0, truststore.ErrCALeaf, "Fabrikam Root CA"},
		{"no_certificate", nil, t0, truststore.ErrUntrusted, "no client certificate"},
		{"later_expiry", good.Chain, t0.Add(25 * time.Hour), truststore.ErrExpired, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := set.Verify(tc.chain, truststore.VerifyOptions{Now: tc.now})
			require.ErrorIs(t, err, tc.want)
			require.ErrorContains(t, err, tc.msg)
		})
	}
	t.Run("extended_key_usage", func(t *testing.T) {
		// RFC 5280 4.2.1.12: no extension means any usage; an extension
		// restricts the certificate to what it names.
		for _, tc := range []struct {
			name    string
			leaf    *authtest.Leaf
			lenient error // default
			strict  error // RequireClientAuthEKU
		}{
			{"no_extension", inter.Leaf(t, "no-eku", authtest.WithExtKeyUsage()), nil, truststore.ErrUsage},
			{"client_auth", inter.Leaf(t, "client", authtest.WithExtKeyUsage(x509.ExtKeyUsageClientAuth)), nil, nil},
			{"any_usage", inter.Leaf(t, "any", authtest.WithExtKeyUsage(x509.ExtKeyUsageAny)), nil, nil},
			{"server_auth_only", inter.Leaf(t, "server", authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth)), truststore.ErrUsage, truststore.ErrUsage},
			{"email_only", inter.Leaf(t, "mail", authtest.WithExtKeyUsage(x509.ExtKeyUsageEmailProtection)), truststore.ErrUsage, truststore.ErrUsage},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for _, mode := range []struct {
					require bool
					want    error
				}{{false, tc.lenient}, {true, tc.strict}} {
					o := truststore.VerifyOptions{Now: t0, RequireClientAuthEKU: mode.require}
					_, err := set.Verify(tc.leaf.Chain, o)
					issuers := tc.leaf.Chain[1:]
					recheck := set.CheckVerified(tc.leaf.Cert, append(issuers[:len(issuers):len(issuers)], root.Cert), o)
					if mode.want == nil {
						require.NoError(t, err, "RequireClientAuthEKU=%v", mode.require)
						require.NoError(t, recheck, "RequireClientAuthEKU=%v", mode.require)
						continue
					}
					require.ErrorIs(t, err, mode.want, "RequireClientAuthEKU=%v", mode.require)
					require.ErrorIs(t, recheck, mode.want, "RequireClientAuthEKU=%v", mode.require)
				}
			})
		}
	})
	t.Run("intermediate_as_anchor", func(t *testing.T) {
		s, err := truststore.NewSet([]*x509.Certificate{inter.Cert}, nil)
		require.NoError(t, err)
		chains, err := s.Verify(good.Chain[:1], opts)
		require.NoError(t, err)
		require.Len(t, chains[0], 2)
	})
	t.Run("empty", func(t *testing.T) {
		s, err := truststore.NewSet(nil, nil)
		require.NoError(t, err)
		_, err = s.Verify(good.Chain, opts)
		require.ErrorIs(t, err, truststore.ErrEmpty)
	})
	t.Run("leaf_as_ca_refused", func(t *testing.T) {
		_, err := truststore.NewSet([]*x509.Certificate{good.Cert}, nil)
		require.ErrorIs(t, err, truststore.ErrNotCA)
	})
}

func TestRevocation(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "Root")
	inter := root.Intermediate(t, "Intermediate")
	a, b := inter.Leaf(t, "a"), inter.Leaf(t, "b")
	parse := func(der []byte) *x509.RevocationList {
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		return crl
	}
	opts := truststore.VerifyOptions{Now: t0}

	t.Run("revoked_leaf", func(t *testing.T) {
		crl := parse(inter.CRL(t, 1, t0, t0.Add(time.Hour), a.Cert))
		set, err := truststore.NewSet([]*x509.Certificate{root.Cert, inter.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		_, err = set.Verify(a.Chain, opts)
		require.ErrorIs(t, err, truststore.ErrRevoked)
		require.ErrorContains(t, err, `"CN=a"`)
		require.ErrorContains(t, err, "serial="+certid.Serial(a.Cert), "the serial in openssl's form")
		require.ErrorContains(t, err, "fingerprint_sha256="+certid.Fingerprint(a.Cert))
		_, err = set.Verify(b.Chain, opts)
		require.NoError(t, err)
		require.True(t, set.IsRevoked(a.Cert))
		require.False(t, set.IsRevoked(b.Cert))
	})
	t.Run("revoked_intermediate", func(t *testing.T) {
		crl := parse(root.CRL(t, 1, t0, t0.Add(time.Hour), inter.Cert))
		set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		_, err = set.Verify(b.Chain, opts)
		require.ErrorIs(t, err, truststore.ErrRevoked)
		require.ErrorContains(t, err, "Intermediate")
		require.ErrorContains(t, err, "serial="+certid.Serial(inter.Cert))
		require.ErrorContains(t, err, "fingerprint_sha256="+certid.Fingerprint(inter.Cert))
	})
	t.Run("crl_wrong_key", func(t *testing.T) {
		impostor := authtest.NewRootCAAt(t, t0, "Root") // same name, other key
		crl := parse(authtest.CRLSignedBy(t, root.Cert, impostor.Key, 1, t0, t0.Add(time.Hour), a.Cert))
		_, err := truststore.NewSet([]*x509.Certificate{root.Cert}, []*x509.RevocationList{crl})
		require.ErrorIs(t, err, truststore.ErrCRLSignature)
	})
	t.Run("crl_of_presented_intermediate", func(t *testing.T) {
		// The intermediate is not in the set: its CRL is checked against
		// the intermediate the client presents.
		crl := parse(inter.CRL(t, 1, t0, t0.Add(time.Hour), a.Cert))
		set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		_, err = set.Verify(a.Chain, opts)
		require.ErrorIs(t, err, truststore.ErrRevoked)
		_, err = set.Verify(b.Chain, opts)
		require.NoError(t, err)
		// A CRL with the intermediate's name and another key: refused.
		impostor := authtest.NewRootCAAt(t, t0, "Intermediate")
		bad := parse(authtest.CRLSignedBy(t, inter.Cert, impostor.Key, 1, t0, t0.Add(time.Hour)))
		set, err = truststore.NewSet([]*x509.Certificate{root.Cert}, []*x509.RevocationList{bad})
		require.NoError(t, err)
		_, err = set.Verify(b.Chain, opts)
		require.ErrorIs(t, err, truststore.ErrCRLSignature)
	})
	t.Run("newest_crl_wins", func(t *testing.T) {
		old := parse(inter.CRL(t, 1, t0, t0.Add(time.Hour), a.Cert))
		cur := parse(inter.CRL(t, 2, t0, t0.Add(time.Hour), b.Cert))
		set, err := truststore.NewSet([]*x509.Certificate{root.Cert, inter.Cert}, []*x509.RevocationList{cur, old})
		require.NoError(t, err)
		require.False(t, set.IsRevoked(a.Cert))
		require.True(t, set.IsRevoked(b.Cert))
	})
	t.Run("stale_crl", func(t *testing.T) {
		crl := parse(inter.CRL(t, 1, t0.Add(-2*time.Hour), t0.Add(-time.Hour), a.Cert))
		set, err := truststore.NewSet([]*x509.Certificate{root.Cert, inter.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		// Default: keep enforcing, log once.
		_, err = set.Verify(a.Chain, truststore.VerifyOptions{Now: t0, Logger: log})
		require.ErrorIs(t, err, truststore.ErrRevoked)
		_, err = set.Verify(b.Chain, truststore.VerifyOptions{Now: t0, Logger: log})
		require.NoError(t, err)
		_, err = set.Verify(b.Chain, truststore.VerifyOptions{Now: t0, Logger: log})
		require.NoError(t, err)
		require.Equal(t, 1, bytes.Count(logs.Bytes(), []byte("past its nextUpdate")), logs.String())
		// Refuse: everything below the stale issuer fails.
		_, err = set.Verify(b.Chain, truststore.VerifyOptions{Now: t0, StaleCRL: truststore.RefuseStaleCRL})
		require.ErrorIs(t, err, truststore.ErrStaleCRL)
	})
	t.Run("check_verified", func(t *testing.T) {
		set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
		require.NoError(t, err)
		chains, err := set.Verify(a.Chain, opts)
		require.NoError(t, err)
		require.NoError(t, set.CheckVerified(a.Cert, chains[0][1:], opts))

		crl := parse(inter.CRL(t, 1, t0, t0.Add(time.Hour), a.Cert))
		revoking, err := truststore.NewSet([]*x509.Certificate{root.Cert, inter.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		require.ErrorIs(t, revoking.CheckVerified(a.Cert, chains[0][1:], opts), truststore.ErrRevoked)

		other, err := truststore.NewSet([]*x509.Certificate{inter.Cert}, nil)
		require.NoError(t, err)
		require.ErrorIs(t, other.CheckVerified(a.Cert, chains[0][1:], opts), truststore.ErrUntrusted)
		require.ErrorIs(t, set.CheckVerified(a.Cert, chains[0][1:], truststore.VerifyOptions{Now: t0.Add(48 * time.Hour)}), truststore.ErrExpired)
	})
}

func TestParse(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "Root")
	good := authtest.CertsPEM(root.Cert, root.Intermediate(t, "I").Cert)
	certs, err := truststore.ParseCertificates(append([]byte("subject=CN = Root\n"), good...))
	require.NoError(t, err)
	require.Len(t, certs, 2)
	for name, data := range map[string][]byte{
		"empty":         nil,
		"garbage":       []byte("not a certificate\x00\xff"),
		"truncated":     good[:len(good)-40],
		"truncated_one": good[:100],
		"wrong_type":    authtest.KeyPEM(t, root.Key),
		"bad_der":       []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := truststore.ParseCertificates(data)
			require.ErrorIs(t, err, truststore.ErrParse)
		})
	}
	der := root.CRL(t, 1, t0, t0.Add(time.Hour))
	for name, data := range map[string][]byte{"der": der, "pem": authtest.CRLPEM(der)} {
		crls, err := truststore.ParseCRLs(data)
		require.NoError(t, err, name)
		require.Len(t, crls, 1)
	}
	for name, data := range map[string][]byte{
		"empty": nil, "garbage": []byte("garbage"), "truncated": authtest.CRLPEM(der)[:60], "cert": good,
	} {
		_, err := truststore.ParseCRLs(data)
		require.ErrorIs(t, err, truststore.ErrParse, name)
	}
}
