package x509auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// tutorialMappings are the authorizationAttributes of the Azure IoT
// Operations tutorial, as its x509-auth policy writes them.
var tutorialMappings = []x509auth.Mapping{
	{Name: "thermostat", Subject: "CN = thermostat", Attributes: map[string]string{"group": "thermostat_group"}},
	{Name: "hygrometer", Subject: "CN = hygrometer", Attributes: map[string]string{"group": "hygrometer_group"}},
	{Name: "intermediate", Subject: "CN = Fabrikam Intermediate CA 1", Attributes: map[string]string{"manufacturer": "fabrikam"}},
}

func newAuthenticator(t testing.TB, src truststore.Source, clock *authtest.Clock, mod ...func(*x509auth.Config)) *x509auth.Authenticator {
	t.Helper()
	cfg := x509auth.Config{Trust: src, Mappings: tutorialMappings, Now: clock.Now, Logger: slog.New(slog.DiscardHandler)}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := x509auth.New(cfg)
	require.NoError(t, err)
	return a
}

func request(chain ...*x509.Certificate) *auth.Request {
	return &auth.Request{ClientID: "c1", TLS: &tls.ConnectionState{PeerCertificates: chain}}
}

func attrs(p *auth.Principal) map[string]string { return maps.Collect(p.Attributes()) }

// TestTutorial: every client of the tutorial gets exactly the attributes the
// tutorial says, with its CN as user name.
func TestTutorial(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, t0)
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	clock := authtest.NewClock(t0)
	a := newAuthenticator(t, set, clock)
	for _, tc := range []struct {
		leaf *authtest.Leaf
		want map[string]string
	}{
		{pki.Thermostat, map[string]string{"group": "thermostat_group"}},
		{pki.Hygrometer, map[string]string{"group": "hygrometer_group"}},
		{pki.Heater, map[string]string{"manufacturer": "fabrikam"}},
		{pki.Lightbulb, map[string]string{"manufacturer": "fabrikam"}},
	} {
		t.Run(tc.leaf.Cert.Subject.CommonName, func(t *testing.T) {
			res := a.Authenticate(context.Background(), request(tc.leaf.Chain...))
			require.Equal(t, auth.Pass, res.Outcome, "%v", res.Err)
			p := res.Principal
			require.Equal(t, tc.leaf.Cert.Subject.CommonName, p.Username())
			require.Equal(t, x509auth.Method, p.Method())
			require.Equal(t, tc.want, attrs(p))
			require.Equal(t, tc.leaf.Cert.NotAfter, p.Expiry()) // the leaf expires first
		})
	}
	// The broker's own server certificate is from Contoso: not a client.
	res := a.Authenticate(context.Background(), request(pki.Server.Chain...))
	require.Equal(t, auth.Fail, res.Outcome)
	require.ErrorIs(t, res.Err, x509auth.ErrUntrusted)
}

func TestAuthenticate(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "Contoso Root CA Cert", authtest.WithSubject(pkix.Name{
		Country: []string{"US"}, OrganizationalUnit: []string{"Engineering"}}))
	inter := root.Intermediate(t, "Contoso Intermediate CA")
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	require.NoError(t, err)
	clock := authtest.NewClock(t0)
	ctx := context.Background()

	t.Run("not_relevant", func(t *testing.T) {
		a := newAuthenticator(t, set, clock)
		require.Equal(t, auth.NotRelevant, a.Authenticate(ctx, &auth.Request{}).Outcome)
		require.Equal(t, auth.NotRelevant, a.Authenticate(ctx, &auth.Request{TLS: &tls.ConnectionState{}}).Outcome)
	})
	t.Run("root_mapping_order_tolerant", func(t *testing.T) {
		a := newAuthenticator(t, set, clock, func(c *x509auth.Config) {
			c.Mappings = []x509auth.Mapping{
				{Name: "root", Subject: "C=us,   cn = Contoso  Root CA Cert ,OU=Engineering", Attributes: map[string]string{"org": "contoso"}},
				{Name: "not-a-subset", Subject: "CN = Contoso Root CA Cert", Attributes: map[string]string{"wrong": "yes"}},
			}
		})
		res := a.Authenticate(ctx, request(inter.Leaf(t, "dev").Chain...))
		require.Equal(t, auth.Pass, res.Outcome, "%v", res.Err)
		require.Equal(t, map[string]string{"org": "contoso"}, attrs(res.Principal))
	})
	t.Run("expiry_earliest_in_chain", func(t *testing.T) {
		short := root.Intermediate(t, "Short", authtest.WithValidity(t0.Add(-time.Hour), t0.Add(2*time.Hour)))
		leaf := short.Leaf(t, "dev", authtest.WithValidity(t0.Add(-time.Hour), t0.Add(5*time.Hour)))
		res := newAuthenticator(t, set, clock).Authenticate(ctx, request(leaf.Chain...))
		require.Equal(t, auth.Pass, res.Outcome, "%v", res.Err)
		require.Equal(t, short.Cert.NotAfter, res.Principal.Expiry())
	})
	for _, tc := range []struct {
		name     string
		identity x509auth.Identity
		opts     []authtest.CertOption
		want     string
	}{
		{"cn", x509auth.CommonName, nil, "dev"},
		{"subject", x509auth.Subject, []authtest.CertOption{authtest.WithSubject(pkix.Name{Organization: []string{"Fabrikam"}})}, "CN=dev,O=Fabrikam"},
		{"spiffe", x509auth.URISAN, []authtest.CertOption{authtest.WithURIs("spiffe://example.org/ns/default/sa/dev")}, "spiffe://example.org/ns/default/sa/dev"},
		{"dns", x509auth.DNSSAN, []authtest.CertOption{authtest.WithDNSNames("dev.example.org", "b.example.org")}, "dev.example.org"},
		{"email", x509auth.EmailSAN, []authtest.CertOption{authtest.WithEmails("dev@example.org")}, "dev@example.org"},
	} {
		t.Run("identity_"+tc.name, func(t *testing.T) {
			a := newAuthenticator(t, set, clock, func(c *x509auth.Config) { c.Identity = tc.identity })
			res := a.Authenticate(ctx, request(inter.Leaf(t, "dev", tc.opts...).Chain...))
			require.Equal(t, auth.Pass, res.Outcome, "%v", res.Err)
			require.Equal(t, tc.want, res.Principal.Username())
			// Without the field: a clear failure.
			res = a.Authenticate(ctx, request(inter.Leaf(t, "", authtest.WithURIs("spiffe://a/b", "spiffe://a/c")).Chain...))
			require.Equal(t, auth.Fail, res.Outcome)
			require.ErrorIs(t, res.Err, x509auth.ErrNoIdentity)
		})
	}
	t.Run("verified_chains_from_other_pool", func(t *testing.T) {
		// A listener that let crypto/tls verify against a stale pool: the
		// chain is still checked against the current set.
		other := authtest.NewRootCAAt(t, t0, "Other")
		leaf := other.Leaf(t, "dev")
		req := request(leaf.Chain...)
		req.TLS.VerifiedChains = [][]*x509.Certificate{{leaf.Cert, other.Cert}}
		res := newAuthenticator(t, set, clock).Authenticate(ctx, req)
		require.Equal(t, auth.Fail, res.Outcome)
		require.ErrorIs(t, res.Err, x509auth.ErrUntrusted)
	})
	t.Run("clock_expiry", func(t *testing.T) {
		c := authtest.NewClock(t0)
		a := newAuthenticator(t, set, c)
		leaf := inter.Leaf(t, "dev")
		require.Equal(t, auth.Pass, a.Authenticate(ctx, request(leaf.Chain...)).Outcome)
		c.Advance(25 * time.Hour) // cached, but time is re-checked
		res := a.Authenticate(ctx, request(leaf.Chain...))
		require.Equal(t, auth.Fail, res.Outcome)
		require.ErrorIs(t, res.Err, x509auth.ErrExpired)
	})
}

// TestBadInputs: each bad certificate is refused with 0x87 and an error
// that says why.
func TestBadInputs(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "Root")
	inter := root.Intermediate(t, "Intermediate")
	revoked := inter.Leaf(t, "revoked")
	crl, err := x509.ParseRevocationList(inter.CRL(t, 1, t0, t0.Add(time.Hour), revoked.Cert))
	require.NoError(t, err)
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert, inter.Cert}, []*x509.RevocationList{crl})
	require.NoError(t, err)
	rootOnly, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	require.NoError(t, err)
	empty, err := truststore.NewSet(nil, nil)
	require.NoError(t, err)
	past, future := authtest.WithValidity(t0.Add(-48*time.Hour), t0.Add(-time.Hour)), authtest.WithValidity(t0.Add(time.Hour), t0.Add(48*time.Hour))
	for _, tc := range []struct {
		name  string
		set   *truststore.Set
		chain []*x509.Certificate
		want  error
	}{
		{"expired_leaf", set, inter.Leaf(t, "x", past).Chain, x509auth.ErrExpired},
		{"not_yet_valid_leaf", set, inter.Leaf(t, "x", future).Chain, x509auth.ErrExpired},
		{"expired_intermediate", rootOnly, root.Intermediate(t, "I2", past).Leaf(t, "x").Chain, x509auth.ErrExpired},
		{"not_yet_valid_intermediate", rootOnly, root.Intermediate(t, "I3", future).Leaf(t, "x").Chain, x509auth.ErrExpired},
		{"unknown_ca", set, authtest.NewRootCAAt(t, t0, "Stranger").Leaf(t, "x").Chain, x509auth.ErrUntrusted},
		{"missing_intermediate", rootOnly, inter.Leaf(t, "x").Chain[:1], x509auth.ErrUntrusted},
		{"server_auth_only", set, inter.Leaf(t, "x", authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth)).Chain, x509auth.ErrUsage},
		{"ca_as_leaf", set, inter.Leaf(t, "x", authtest.WithIsCA()).Chain, x509auth.ErrCALeaf},
		{"revoked", set, revoked.Chain, x509auth.ErrRevoked},
		{"empty_truststore", empty, inter.Leaf(t, "x").Chain, x509auth.ErrEmpty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			a := newAuthenticator(t, tc.set, authtest.NewClock(t0), func(c *x509auth.Config) {
				c.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			res := a.Authenticate(context.Background(), request(tc.chain...))
			require.Equal(t, auth.Fail, res.Outcome)
			require.Equal(t, auth.NotAuthorized, res.Code)
			require.ErrorIs(t, res.Err, tc.want)
			require.Contains(t, logs.String(), "client certificate refused")
			if tc.want == x509auth.ErrEmpty {
				require.Contains(t, logs.String(), "level=ERROR")
			}
			require.NotContains(t, logs.String(), "PRIVATE")
		})
	}
}

func TestConfig(t *testing.T) {
	set, _ := truststore.NewSet(nil, nil)
	for name, cfg := range map[string]x509auth.Config{
		"no_trust":     {},
		"bad_subject":  {Trust: set, Mappings: []x509auth.Mapping{{Name: "x", Subject: "CN"}}},
		"unknown_attr": {Trust: set, Mappings: []x509auth.Mapping{{Name: "x", Subject: "XX = y"}}},
		"duplicate":    {Trust: set, Mappings: []x509auth.Mapping{{Name: "a", Subject: "CN=x, O=y"}, {Name: "b", Subject: "O = Y, CN = X"}}},
		"identity":     {Trust: set, Identity: 99},
		"code":         {Trust: set, RevokedCode: auth.BadUserNameOrPassword},
	} {
		_, err := x509auth.New(cfg)
		require.Error(t, err, name)
	}
}

func TestParseSubject(t *testing.T) {
	same := [][]string{
		{"CN = Contoso Root CA Cert, OU = Engineering, C = US", "C=US,OU=Engineering,CN=Contoso Root CA Cert", "/C=US/OU=Engineering/CN=Contoso Root CA Cert", "cn=contoso  root ca cert;ou=ENGINEERING+c=us", "2.5.4.3=Contoso Root CA Cert, 2.5.4.11=Engineering, 2.5.4.6=US"},
		{`CN = "Smith, John"`, `CN=Smith\, John`, `CN=Smith\2C John`},
	}
	for _, group := range same {
		want, err := x509auth.ParseSubject(group[0])
		require.NoError(t, err)
		for _, s := range group[1:] {
			got, err := x509auth.ParseSubject(s)
			require.NoError(t, err, s)
			require.Equal(t, want, got, s)
		}
	}
	a, _ := x509auth.ParseSubject("CN=x, OU=a, OU=b")
	b, _ := x509auth.ParseSubject("CN=x, OU=a")
	require.NotEqual(t, a, b)
	require.Equal(t, a, x509auth.CanonicalName(pkix.Name{Names: []pkix.AttributeTypeAndValue{
		{Type: []int{2, 5, 4, 11}, Value: "b"}, {Type: []int{2, 5, 4, 3}, Value: "X"}, {Type: []int{2, 5, 4, 11}, Value: "A"}}}))
	for _, bad := range []string{"", "CN", "CN=", "CN=x,", "FOO=x", "CN=\"x", "CN=x\\", "CN=\"x\" y", "1.a=b", "=x"} {
		_, err := x509auth.ParseSubject(bad)
		require.ErrorIs(t, err, x509auth.ErrSubject, bad)
	}
}

// TestNamedMethodNotRelevant: a client that names an Authentication Method
// is not authenticated by its certificate, whatever the method: X.509 does
// not implement it and must not stand in for it [MQTT-4.12.0-1].
func TestNamedMethodNotRelevant(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, t0)
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	a := newAuthenticator(t, set, authtest.NewClock(t0))
	for _, method := range []string{"SCRAM-SHA-256", "K8S-SAT", "MADE-UP", "X.509"} {
		req := request(pki.Thermostat.Chain...)
		req.AuthMethod, req.AuthData = method, []byte("data")
		res := a.Authenticate(context.Background(), req)
		require.Equal(t, auth.NotRelevant, res.Outcome, "method %q", method)
		require.Nil(t, res.Principal)
	}
	// Without a method the same certificate passes.
	require.Equal(t, auth.Pass, a.Authenticate(context.Background(), request(pki.Thermostat.Chain...)).Outcome)
}
