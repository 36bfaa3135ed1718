package aioconfig_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// buildLogged is build with the Broker's records in buf (JSON).
func buildLogged(t *testing.T, dir, doc string, buf *bytes.Buffer) (*aioconfig.Broker, *auth.Manager) {
	t.Helper()
	path := filepath.Join(dir, "broker.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
	c, err := aioconfig.Load(path)
	require.NoError(t, err)
	b, err := aioconfig.Build(context.Background(), c, aioconfig.Options{Logger: slog.New(slog.NewJSONHandler(buf, nil))})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	m, err := auth.NewManager(b.AuthConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return b, m
}

// A port without authorizationRef lets every authenticated client do
// everything (AIO's semantics): Build says so at WARN, once per such
// port, and not for a port with a policy.
func TestAllowAllPortWarns(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	dir := t.TempDir()
	caPEM := authtest.CertsPEM(iss.Certificate())
	writeTree(t, dir, map[string][]byte{"issuer-ca/ca.crt": caPEM, "issuer.pem": caPEM})
	var buf bytes.Buffer
	buildLogged(t, dir, fmt.Sprintf(jwtPorts, iss.URL()), &buf)
	var warns []string
	for line := range strings.SplitSeq(buf.String(), "\n") {
		if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "without authorizationRef") {
			warns = append(warns, line)
		}
	}
	require.Len(t, warns, 1, buf.String())
	require.Contains(t, warns[0], `"port":"jwt:1884"`)
}

// Every decision names the port's policy, so that a deny record says who
// decided: the BrokerAuthorization, the policy file, or none.
func TestDecisionsNameThePolicy(t *testing.T) {
	f := newFixture(t)
	pub, loc := f.broker.Ports[0], f.broker.Ports[1]
	ctx := context.Background()
	thermo, _, r := f.tlsConnect(t, pub, pub.Name, f.pki.Thermostat)
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	d := thermo.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "sandbox/x"})
	require.Equal(t, auth.Decision{Policy: "BrokerAuthorization default"}, d)
	d = thermo.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "telemetry/temperature"})
	require.True(t, d.Allowed)
	require.Equal(t, "BrokerAuthorization default", d.Policy)
	require.NotEmpty(t, d.Rule)

	sample, _, r := f.scramConnect(t, loc.Name, "sample", "pw")
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	d = sample.Authorize(ctx, auth.Action{Kind: auth.Subscribe, Topic: "telemetry/#"})
	require.Equal(t, auth.Decision{Policy: "authorizationFile local-policy.yaml"}, d)
	p := auth.NewPrincipal(auth.PrincipalInfo{Username: "nobody", Listener: loc.Name})
	require.Equal(t, "authorizationFile local-policy.yaml", f.broker.Authorize(ctx, p, auth.Action{Kind: auth.Connect}).Policy)
}

// A truststore that loaded no CA admits no one: its readiness check fails
// with the reason (it said "ok" before), and turns ready once a CA is
// there.
func TestEmptyTruststoreIsNotReady(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	pki := f.pki
	writeTree(t, dir, map[string][]byte{
		"server.crt": pki.Server.ChainPEM(),
		"server.key": pki.Server.KeyPEM(t),
	})
	require.NoError(t, os.Mkdir(filepath.Join(dir, "cas"), 0o755))
	doc := `kind: BrokerListener
metadata: {name: l}
spec:
  ports:
    - {port: 8883, address: 127.0.0.1, authenticationRef: x509, authorizationRef: p, tls: {mode: Manual, manual: {certFile: server.crt, keyFile: server.key}}}
---
kind: BrokerAuthentication
metadata: {name: x509}
spec:
  authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: cas}}]
---
metadata: {name: p}
spec: {authorizationPolicies: {rules: [{principals: {usernames: [thermostat]}, brokerResources: [{method: Connect}]}]}}
`
	b, _ := build(t, dir, doc)
	check := func() error {
		var errs []error
		for _, c := range b.ReadyChecks() {
			if strings.HasPrefix(c.Name, "truststore") {
				errs = append(errs, c.Check(context.Background()))
			}
		}
		require.Len(t, errs, 1)
		return errs[0]
	}
	err := check()
	require.ErrorIs(t, err, aioconfig.ErrNoTrustedCA)
	require.ErrorContains(t, err, "every client certificate is refused")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "cas", "ca.pem"), authtest.CertsPEM(pki.FabrikamRoot.Cert), 0o644))
	require.Eventually(t, func() bool { return check() == nil }, 10*time.Second, 20*time.Millisecond)
}

// Clients of a JWT-in-the-password port all send the marker user name
// "jwt": eleven bad tokens from one address lock out that address, and
// clients under the marker from other addresses are still asked (0x86 for
// a bad token, a pass for a good one), not refused with 0x9F.
func TestThrottleJWTMarker(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	dir := t.TempDir()
	caPEM := authtest.CertsPEM(iss.Certificate())
	writeTree(t, dir, map[string][]byte{"issuer-ca/ca.crt": caPEM, "issuer.pem": caPEM})
	b, m := build(t, dir, fmt.Sprintf(jwtPorts, iss.URL()))
	pw := b.Ports[1].Name
	try := func(ip string, i int, token string) auth.Response {
		_, _, r := connect(t, m, &auth.Request{Listener: pw, ClientID: fmt.Sprint("c-", ip, "-", i), Username: "jwt", HasUsername: true,
			Password: []byte(token), HasPassword: true, ProtocolVersion: 4, RemoteAddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
		return r
	}
	for i := range 11 {
		try("192.0.2.1", i, "not-a-token")
	}
	require.Equal(t, auth.ConnectionRateExceeded, try("192.0.2.1", 99, "not-a-token").Packet.Code, "the offending address is throttled")
	for i := range 20 {
		r := try(fmt.Sprintf("198.51.100.%d", i+1), i, "not-a-token")
		require.Equal(t, auth.BadUserNameOrPassword, r.Packet.Code, "client %d: %v", i, r.Err)
	}
	good := iss.Mint(t, jwttest.Claims{Subject: "device-7", Audience: []string{"mqtt://broker"}})
	r := try("203.0.113.7", 0, good)
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	require.False(t, errors.Is(r.Err, auth.ErrNotAuthorized))
	require.Contains(t, describe(t, b), `user names ["jwt"] are markers, never identities`)
	require.Contains(t, describe(t, b), `the user name of methods ["JWT"] is not counted`)
}

// A ServiceAccountToken method does not verify the CONNECT user name: its
// user name is never an identity counter, nor, with the MQTT 3.1.1
// fallback, the marker K8S-SAT every such client sends.
func TestThrottleSATMarkers(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	b, _ := satBroker(t, srv, "        allowUsernameFallback: true\n")
	out := describe(t, b)
	require.Contains(t, out, `user names ["K8S-SAT"] are markers, never identities`)
	require.Contains(t, out, `the user name of methods ["K8S-SAT"] is not counted`)
}
