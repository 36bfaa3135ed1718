package aioconfig_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/jwtauth/jwttest"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
	"github.com/mqttauth/mqttauth/throttle"
)

const v1 = "apiVersion: mqttbroker.iotoperations.azure.com/v1\n"

// credsDoc uses every field of the three credential extensions.
const credsDoc = v1 + `kind: BrokerAuthentication
metadata: {name: creds}
spec:
  authenticationMethods:
    - method: X509
      x509Settings:
        trustedClientCaCert: devices-ca
        revocation:
          mode: softFail
          ocsp: true
          responder: http://ocsp.example.com/
          crlDistributionPoints: true
          timeout: 3s
          wait: 0s
          refreshBefore: 10m
          retryInterval: 20s
          refreshInterval: 5s
          maxAge: 30m
          maxEntries: 500
          maxCRLs: 8
    - method: JWT
      jwtSettings:
        issuer: https://login.example.com/tenant
        discoveryUrl: https://login.example.com/tenant/.well-known/openid-configuration
        jwksUrl: https://login.example.com/tenant/keys
        audiences: [mqtt]
        algorithms: [ES256]
        leeway: 30s
        usernameClaim: email
        claimsToAttributes: {site: site}
        tokenFrom: password
        method: OAUTH2-JWT
        passwordUsername: jwt
        keyRefreshInterval: 1m
        keyMaxAge: 2h
        requestTimeout: 4s
        caCert: issuer-ca
        insecureAllowHttp: true
---
apiVersion: mqttauth.dev/v1alpha1
kind: MqttAuthSettings
spec:
  throttle:
    address: {every: 1m, burst: 5}
    identity: {every: 10s, burst: 3}
    disableIdentity: true
    ipv4Prefix: 24
    ipv6Prefix: 56
    maxEntries: 1000
`

// TestCredsLoad: x509Settings.revocation, jwtSettings and throttle load
// field by field.
func TestCredsLoad(t *testing.T) {
	c, err := aioconfig.Parse([]byte(credsDoc), "creds.yaml", "")
	require.NoError(t, err)
	ms := c.Authentications[0].Methods
	require.Equal(t, &aioconfig.RevocationSettings{
		Mode: "softFail", OCSP: true, Responder: "http://ocsp.example.com/", CRLDistributionPoints: true,
		Timeout: "3s", Wait: "0s", RefreshBefore: "10m", RetryInterval: "20s", RefreshInterval: "5s", MaxAge: "30m",
		MaxEntries: 500, MaxCRLs: 8,
	}, ms[0].X509.Revocation)
	require.Equal(t, aioconfig.MethodJWT, ms[1].Method)
	require.Equal(t, &aioconfig.JWTSettings{
		Issuer:       "https://login.example.com/tenant",
		DiscoveryURL: "https://login.example.com/tenant/.well-known/openid-configuration",
		JWKSURL:      "https://login.example.com/tenant/keys",
		Audiences:    []string{"mqtt"}, Algorithms: []string{"ES256"}, Leeway: "30s", UsernameClaim: "email",
		ClaimsToAttributes: map[string]string{"site": "site"}, TokenFrom: "password", Method: "OAUTH2-JWT",
		PasswordUsername: "jwt", KeyRefreshInterval: "1m", KeyMaxAge: "2h", RequestTimeout: "4s",
		CACert: "issuer-ca", InsecureAllowHTTP: true,
	}, ms[1].JWT)
	require.Equal(t, &aioconfig.Throttle{
		Address:         &aioconfig.ThrottleLimit{Every: "1m", Burst: 5},
		Identity:        &aioconfig.ThrottleLimit{Every: "10s", Burst: 3},
		DisableIdentity: true, IPv4Prefix: 24, IPv6Prefix: 56, MaxEntries: 1000,
	}, c.Settings.Throttle)
}

// TestCredsLoadErrors: a wrong value or field of the three extensions is
// refused with its document, field, value and the fix.
func TestCredsLoadErrors(t *testing.T) {
	x509 := func(rev string) string {
		return v1 + "kind: BrokerAuthentication\nmetadata: {name: a}\nspec: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: ca, revocation: {" + rev + "}}}]}"
	}
	jwt := func(s string) string {
		return v1 + "kind: BrokerAuthentication\nmetadata: {name: a}\nspec: {authenticationMethods: [{method: JWT, jwtSettings: {issuer: 'https://i/', audiences: [a], " + s + "}}]}"
	}
	settings := func(s string) string {
		return "apiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec: {throttle: {" + s + "}}"
	}
	const at = "spec.authenticationMethods[0]."
	for _, tc := range []struct {
		name, doc string
		is        error
		want      []string
	}{
		{"revocation_mode", x509("mode: HardFail"), aioconfig.ErrInvalidValue,
			[]string{`BrokerAuthentication "a"`, at + `x509Settings.revocation.mode "HardFail"`, "want hardFail or softFail"}},
		{"revocation_unknown_field", x509("ocspResponder: http://r/"), aioconfig.ErrUnknownField,
			[]string{at + "x509Settings.revocation.ocspResponder", "the field is responder"}},
		{"revocation_field_case", x509("crlDistributionpoints: true"), aioconfig.ErrUnknownField,
			[]string{"case-sensitive: crlDistributionPoints"}},
		{"revocation_duration", x509("ocsp: true, timeout: soon"), aioconfig.ErrInvalidValue,
			[]string{at + `x509Settings.revocation.timeout "soon"`}},
		{"revocation_negative_wait", x509("ocsp: true, wait: -1s"), aioconfig.ErrInvalidValue,
			[]string{`revocation.wait "-1s"`}},
		{"revocation_responder", x509("responder: ocsp.example.com"), aioconfig.ErrInvalidValue,
			[]string{`revocation.responder "ocsp.example.com"`, "URL"}},
		{"revocation_max_entries", x509("ocsp: true, maxEntries: -1"), aioconfig.ErrInvalidValue,
			[]string{`revocation.maxEntries "-1"`}},
		{"revocation_type", x509("ocsp: yes please"), aioconfig.ErrSyntax,
			[]string{"revocation"}},
		{"jwt_method_case", v1 + "kind: BrokerAuthentication\nspec: {authenticationMethods: [{method: jwt}]}", aioconfig.ErrInvalidValue,
			[]string{`.method "jwt"`, "case-sensitive: JWT"}},
		{"jwt_settings_of_other_method", v1 + "kind: BrokerAuthentication\nspec: {authenticationMethods: [{method: X509, jwtSettings: {issuer: x}}]}", aioconfig.ErrInvalidValue,
			[]string{"method X509 takes x509Settings"}},
		{"jwt_token_from", jwt("tokenFrom: header"), aioconfig.ErrInvalidValue,
			[]string{at + `jwtSettings.tokenFrom "header"`, "want method"}},
		{"jwt_issuer_url", v1 + "kind: BrokerAuthentication\nspec: {authenticationMethods: [{method: JWT, jwtSettings: {issuer: login.example.com, audiences: [a]}}]}", aioconfig.ErrInvalidValue,
			[]string{`jwtSettings.issuer "login.example.com"`, "https:// URL"}},
		{"jwt_leeway", jwt("leeway: -1s"), aioconfig.ErrInvalidValue,
			[]string{`jwtSettings.leeway "-1s"`}},
		{"jwt_ca_exclusive", jwt("caCert: a, caCertFile: b"), aioconfig.ErrInvalidValue,
			[]string{"jwtSettings.caCert", "exclusive"}},
		{"jwt_audience_singular", jwt("audience: a"), aioconfig.ErrUnknownField,
			[]string{"jwtSettings.audience", "audiences (a list)"}},
		{"jwt_discovery_name", jwt("jwks_uri: 'https://i/keys'"), aioconfig.ErrUnknownField,
			[]string{"jwtSettings.jwks_uri", "the field is jwksUrl"}},
		{"jwt_url_case", jwt("jwksURL: 'https://i/keys'"), aioconfig.ErrUnknownField,
			[]string{"jwtSettings.jwksURL", "case-sensitive: jwksUrl"}},
		{"throttle_every", settings("address: {every: soon}"), aioconfig.ErrInvalidValue,
			[]string{`MqttAuthSettings "default"`, `spec.throttle.address.every "soon"`, "Go duration"}},
		{"throttle_burst", settings("identity: {burst: -2}"), aioconfig.ErrInvalidValue,
			[]string{`spec.throttle.identity.burst "-2"`}},
		{"throttle_prefix", settings("ipv6Prefix: 200"), aioconfig.ErrInvalidValue,
			[]string{`spec.throttle.ipv6Prefix "200"`, "1 to 128"}},
		{"throttle_max_entries", settings("maxEntries: 10"), aioconfig.ErrInvalidValue,
			[]string{`spec.throttle.maxEntries "10"`, "at least 64"}},
		{"throttle_unknown_field", settings("burst: 5"), aioconfig.ErrUnknownField,
			[]string{"spec.throttle.burst"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := aioconfig.Parse([]byte(tc.doc), "test.yaml", "")
			require.Error(t, err)
			require.ErrorIs(t, err, tc.is)
			var e *aioconfig.Error
			require.ErrorAs(t, err, &e)
			require.Contains(t, err.Error(), "test.yaml: document 1")
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

// TestCredsValidateErrors: a JWT method needs its issuer and audiences, a
// revocation section a source.
func TestCredsValidateErrors(t *testing.T) {
	const listener = "kind: BrokerListener\nspec: {ports: [{port: 1883, authenticationRef: a, tls: {mode: Manual, manual: {secretRef: s}}}]}\n---\n"
	for _, tc := range []struct{ name, methods, want string }{
		{"jwt_issuer", "{method: JWT, jwtSettings: {audiences: [a]}}", "jwtSettings.issuer: missing (the issuer URL"},
		{"jwt_no_settings", "{method: JWT}", "jwtSettings.issuer: missing"},
		{"jwt_audiences", "{method: JWT, jwtSettings: {issuer: 'https://i/'}}", "jwtSettings.audiences: missing"},
		{"revocation_source", "{method: X509, x509Settings: {trustedClientCaCert: ca, revocation: {mode: softFail}}}", "x509Settings.revocation: missing (say where to ask"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := aioconfig.Parse([]byte(listener+v1+"kind: BrokerAuthentication\nmetadata: {name: a}\nspec: {authenticationMethods: ["+tc.methods+"]}"), "test.yaml", "")
			require.NoError(t, err)
			err = c.Validate()
			require.ErrorIs(t, err, aioconfig.ErrMissing)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// build writes doc to dir/broker.yaml, builds it and a Manager over it.
func build(t *testing.T, dir, doc string) (*aioconfig.Broker, *auth.Manager) {
	t.Helper()
	path := filepath.Join(dir, "broker.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
	c, err := aioconfig.Load(path)
	require.NoError(t, err)
	b, err := aioconfig.Build(context.Background(), c, aioconfig.Options{Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	m, err := auth.NewManager(b.AuthConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return b, m
}

func describe(t *testing.T, b *aioconfig.Broker) string {
	t.Helper()
	var out strings.Builder
	require.NoError(t, b.Describe(&out))
	return out.String()
}

func connect(t *testing.T, m *auth.Manager, req *auth.Request) (*auth.Session, *authtest.Conn, auth.Response) {
	t.Helper()
	conn := authtest.NewConn()
	s := m.NewSession(conn)
	t.Cleanup(s.Close)
	if req.ProtocolVersion == 0 {
		req.ProtocolVersion = 5
	}
	if req.RemoteAddr == nil {
		req.RemoteAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	}
	return s, conn, s.Connect(context.Background(), req)
}

const jwtPorts = v1 + `kind: BrokerListener
metadata: {name: jwt}
spec:
  ports:
    - {port: 1883, authenticationRef: jwt-method, authorizationRef: sites}
    - {port: 1884, authenticationRef: jwt-password}
---
` + v1 + `kind: BrokerAuthentication
metadata: {name: jwt-method}
spec:
  authenticationMethods:
    - method: JWT
      jwtSettings:
        issuer: %[1]s
        audiences: [mqtt://broker]
        claimsToAttributes: {site: site}
        caCert: issuer-ca
---
` + v1 + `kind: BrokerAuthentication
metadata: {name: jwt-password}
spec:
  authenticationMethods:
    - method: JWT
      jwtSettings:
        issuer: %[1]s
        audiences: [mqtt://broker]
        tokenFrom: password
        passwordUsername: jwt
        caCertFile: issuer.pem
---
` + v1 + `kind: BrokerAuthorization
metadata: {name: sites}
spec:
  authorizationPolicies:
    rules:
      - principals: {attributes: [{site: paris}]}
        brokerResources: [{method: Connect}, {method: Publish, topics: ["sites/{principal.attributes.site}/#"]}]
`

// TestJWTPort: a port with a JWT method authenticates a token of a
// jwttest issuer, trusted through a ConfigMap (caCert) or a file
// (caCertFile): in the Authentication Data of method JWT, or in the
// password; the mapped claim reaches the port's policy.
func TestJWTPort(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	dir := t.TempDir()
	caPEM := authtest.CertsPEM(iss.Certificate())
	writeTree(t, dir, map[string][]byte{"issuer-ca/ca.crt": caPEM, "issuer.pem": caPEM})
	b, m := build(t, dir, fmt.Sprintf(jwtPorts, iss.URL()))
	viaMethod, viaPassword := b.Ports[0].Name, b.Ports[1].Name
	token := iss.Mint(t, jwttest.Claims{Subject: "device-7", Audience: []string{"mqtt://broker"}, Extra: map[string]any{"site": "paris"}})

	s, _, r := connect(t, m, &auth.Request{Listener: viaMethod, ClientID: "c1", AuthMethod: "JWT", AuthData: []byte(token)})
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	require.Equal(t, "device-7", s.Principal().Username())
	ctx := context.Background()
	require.True(t, s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "sites/paris/t"}).Allowed)
	require.False(t, s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "sites/rome/t"}).Allowed)

	_, _, r = connect(t, m, &auth.Request{Listener: viaPassword, ClientID: "c2", Username: "jwt", HasUsername: true, Password: []byte(token), HasPassword: true, ProtocolVersion: 4})
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)

	other := iss.Mint(t, jwttest.Claims{Audience: []string{"another-service"}})
	_, _, r = connect(t, m, &auth.Request{Listener: viaMethod, ClientID: "c3", AuthMethod: "JWT", AuthData: []byte(other)})
	require.Equal(t, auth.NotAuthorized, r.Packet.Code, "a token for another audience")
	_, _, r = connect(t, m, &auth.Request{Listener: viaPassword, ClientID: "c4", AuthMethod: "JWT", AuthData: []byte(token)})
	require.True(t, r.Packet.Code.IsFailure(), "the password port does not read the Authentication Data")

	out := describe(t, b)
	require.Contains(t, out, "1. JWT issuer "+iss.URL()+", audiences [mqtt://broker], issuer CA issuer-ca, token in the Authentication Data of method JWT")
	require.Contains(t, out, "1. JWT issuer "+iss.URL()+", audiences [mqtt://broker], issuer CA issuer.pem, token in the password of user name jwt")
}

// TestJWTPortUntrustedIssuer: without caCert the issuer's self-signed
// certificate is not trusted: no key can be had, and the client is told
// the server is unavailable (0x88), not that its token is bad.
func TestJWTPortUntrustedIssuer(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	doc := strings.ReplaceAll(fmt.Sprintf(jwtPorts, iss.URL()), "        caCert: issuer-ca\n", "")
	doc = strings.ReplaceAll(doc, "        caCertFile: issuer.pem\n", "")
	_, m := build(t, t.TempDir(), doc)
	token := iss.Mint(t, jwttest.Claims{Audience: []string{"mqtt://broker"}})
	_, _, r := connect(t, m, &auth.Request{Listener: "jwt:1883", ClientID: "c1", AuthMethod: "JWT", AuthData: []byte(token)})
	require.Equal(t, auth.ServerUnavailable, r.Packet.Code, "%v", r.Err)
}

const revocationPort = v1 + `kind: BrokerListener
metadata: {name: devices}
spec:
  ports:
    - port: 8883
      authenticationRef: x509
      tls: {mode: Manual, manual: {certFile: server.crt, keyFile: server.key}}
---
` + v1 + `kind: BrokerAuthentication
metadata: {name: x509}
spec:
  authenticationMethods:
    - method: X509
      x509Settings:
        trustedClientCaCert: devices-ca
        revocation:
          ocsp: true
          # refresh on every tick, so a revocation is heard of at once
          refreshBefore: 2h
          refreshInterval: 20ms
          retryInterval: 20ms
`

// TestRevocationPort: an X509 port with revocation refuses a certificate
// its OCSP responder says is revoked (CONNACK 0x87), accepts a good one,
// and disconnects (DISCONNECT 0x87) a client whose certificate is revoked
// while it is connected: the checker is a watch of the Manager.
func TestRevocationPort(t *testing.T) {
	ca := authtest.NewRootCA(t, "Devices CA")
	resp := revocationtest.NewResponder(t, ca)
	pki := authtest.NewTutorialPKI(t, time.Now())
	dir := t.TempDir()
	writeTree(t, dir, map[string][]byte{
		"devices-ca/ca.crt": authtest.CertsPEM(ca.Cert),
		"server.crt":        pki.Server.ChainPEM(),
		"server.key":        pki.Server.KeyPEM(t),
	})
	b, m := build(t, dir, revocationPort)
	port := b.Ports[0].Name
	good := ca.Leaf(t, "good", authtest.WithOCSPServer(resp.OCSPURL()))
	revoked := ca.Leaf(t, "revoked", authtest.WithOCSPServer(resp.OCSPURL()))
	later := ca.Leaf(t, "later", authtest.WithOCSPServer(resp.OCSPURL()))
	resp.Set(revoked.Cert, revocationtest.Revoked)
	tlsConnect := func(l *authtest.Leaf) (*authtest.Conn, auth.Response) {
		_, conn, r := connect(t, m, &auth.Request{Listener: port, ClientID: l.Cert.Subject.CommonName,
			TLS: &tls.ConnectionState{PeerCertificates: l.Chain}})
		return conn, r
	}

	_, r := tlsConnect(revoked)
	require.Equal(t, auth.NotAuthorized, r.Packet.Code, "%v", r.Err)
	require.ErrorContains(t, r.Err, "revoked")
	goodConn, r := tlsConnect(good)
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	laterConn, r := tlsConnect(later)
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)

	resp.Set(later.Cert, revocationtest.Revoked)
	select {
	case <-laterConn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client revoked while connected was not disconnected")
	}
	final, _ := laterConn.Final()
	require.Equal(t, auth.DISCONNECT, final.Type)
	require.Equal(t, auth.NotAuthorized, final.Code)
	_, closed := goodConn.Final()
	require.False(t, closed, "the good client stays")

	out := describe(t, b)
	require.Contains(t, out, "1. X509 trusting devices-ca (1 CA), 0 attribute mappings, revocation hardFail OCSP")
	require.Contains(t, out, "watched: revocation (OCSP) of certificates trusted by devices-ca")
}

const throttlePort = v1 + `kind: BrokerListener
metadata: {name: jwt}
spec:
  ports:
    - {port: 1883, authenticationRef: jwt}
---
` + v1 + `kind: BrokerAuthentication
metadata: {name: jwt}
spec:
  authenticationMethods:
    - method: JWT
      jwtSettings: {issuer: 'https://issuer.invalid/', audiences: [mqtt]}
`

// TestThrottlePort: by default, and with the limits of MqttAuthSettings
// throttle, failed CONNECTs from one address are refused with CONNACK
// 0x9F after the burst, before the chain is asked; disabled, they never
// are.
func TestThrottlePort(t *testing.T) {
	for _, tc := range []struct {
		name, settings string
		burst          int // 0: never refused
		describe       string
	}{
		{"default", "", throttle.DefaultBurst,
			"throttle: per address (/32 IPv4, /64 IPv6) 10 failures in a row, then one per 6s; per identity 10 failures in a row, then one per 6s; at most 100000 counters"},
		{"configured", "throttle: {address: {burst: 3, every: 1h}, disableIdentity: true}", 3,
			"throttle: per address (/32 IPv4, /64 IPv6) 3 failures in a row, then one per 1h0m0s; per identity off"},
		{"disabled", "throttle: {disabled: true}", 0, "throttle: off (disabled)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := throttlePort
			if tc.settings != "" {
				doc += "---\napiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec: {" + tc.settings + "}\n"
			}
			b, m := build(t, t.TempDir(), doc)
			require.Contains(t, describe(t, b), tc.describe)
			for i := range throttle.DefaultBurst + 2 {
				// A new client identifier each time: only the address counts.
				_, _, r := connect(t, m, &auth.Request{Listener: b.Ports[0].Name, ClientID: fmt.Sprint("c", i), AuthMethod: "JWT", AuthData: []byte("not.a.token")})
				if tc.burst > 0 && i >= tc.burst {
					require.Equal(t, auth.ConnectionRateExceeded, r.Packet.Code, "attempt %d: %v", i+1, r.Err)
					require.ErrorIs(t, r.Err, throttle.ErrThrottled)
					continue
				}
				require.Equal(t, auth.NotAuthorized, r.Packet.Code, "attempt %d: %v", i+1, r.Err)
			}
			// Another address is not refused.
			_, _, r := connect(t, m, &auth.Request{Listener: b.Ports[0].Name, ClientID: "x", AuthMethod: "JWT", AuthData: []byte("not.a.token"),
				RemoteAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}})
			require.Equal(t, auth.NotAuthorized, r.Packet.Code)
		})
	}
}
