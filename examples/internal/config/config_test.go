package config_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/examples/internal/config"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

func TestTutorialBuilds(t *testing.T) {
	dir := t.TempDir()
	_, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	pwFile, err := config.EnsureSampleSCRAMUser(dir)
	require.NoError(t, err)
	info, err := os.Stat(pwFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	password, err := os.ReadFile(pwFile)
	require.NoError(t, err)
	users, err := os.ReadFile(filepath.Join(dir, config.SampleSCRAMUsersFile))
	require.NoError(t, err)
	require.NotContains(t, string(users), strings.TrimSpace(string(password)), "the users file holds derived keys, not the password")
	again, err := config.EnsureSampleSCRAMUser(dir)
	require.NoError(t, err)
	require.Equal(t, pwFile, again)
	kept, _ := os.ReadFile(pwFile)
	require.Equal(t, password, kept, "an existing sample user is kept")

	path := filepath.Join(dir, "broker.yaml")
	require.NoError(t, os.WriteFile(path, []byte(config.Tutorial), 0o644))
	f, err := config.Load(path)
	require.NoError(t, err)
	s, err := config.Build(f, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Close()
	require.NotNil(t, s.ListenerTLS.VerifyConnection, "client certificates are verified")
	require.Equal(t, tls.RequestClientCert, s.ListenerTLS.ClientAuth, "SCRAM clients come without a certificate")
	require.NotNil(t, s.Trust())

	// The heater may subscribe to temperature but not to heartbeat; the
	// thermostat may publish temperature, not humidity.
	heater := auth.NewPrincipal(auth.PrincipalInfo{Username: "heater", Attributes: map[string]string{"manufacturer": "fabrikam"}})
	thermo := auth.NewPrincipal(auth.PrincipalInfo{Username: "thermostat", Attributes: map[string]string{"group": "thermostat_group"}})
	ctx := context.Background()
	az := s.Auth.Authorizer
	require.True(t, az.Authorize(ctx, heater, auth.Action{Kind: auth.Subscribe, Topic: "telemetry/temperature"}).Allowed)
	require.False(t, az.Authorize(ctx, heater, auth.Action{Kind: auth.Subscribe, Topic: "health/heartbeat"}).Allowed)
	require.True(t, az.Authorize(ctx, thermo, auth.Action{Kind: auth.Publish, Topic: "telemetry/temperature"}).Allowed)
	require.False(t, az.Authorize(ctx, thermo, auth.Action{Kind: auth.Publish, Topic: "telemetry/humidity"}).Allowed)

	m, err := auth.NewManager(s.Auth)
	require.NoError(t, err)
	s.Attach(m)
}

func TestParseErrors(t *testing.T) {
	base := "listener: {serverCert: a, serverKey: b}\n"
	x509 := "authentication: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: ca.crt}}]}\n"
	rules := "authorization: {rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect}]}]}\n"
	for _, tc := range []struct {
		name, doc, err string
	}{
		{"unknown_field", base + x509 + rules + "extra: 1\n", "unknown field"},
		{"no_tls", "listener: {}\n" + x509 + rules, "serverCert"},
		{"no_methods", base + "authentication: {authenticationMethods: []}\n" + rules, "at least one method"},
		{"unknown_method", base + "authentication: {authenticationMethods: [{method: Kerberos}]}\n" + rules, `"Kerberos"`},
		{"settings_mismatch", base + "authentication: {authenticationMethods: [{method: X509, customSettings: {endpoint: x}}]}\n" + rules, "needs its settings"},
		{"scram_without_users_file", base + "authentication: {authenticationMethods: [{method: SCRAM, scramSettings: {}}]}\n" + rules, "usersFile is required"},
		{"sat_without_audience", base + "authentication: {authenticationMethods: [{method: ServiceAccountToken, serviceAccountTokenSettings: {}}]}\n" + rules, "audience"},
		{"no_authorization", base + x509, "authorization is required"},
		{"both_authorizations", base + x509 + rules + "authorizationFile: p.yaml\n", "exclusive"},
		{"bad_expiry_option", base + x509 + rules + "session: {onExpiry: explode}\n", "onExpiry"},
		{"bad_timeout", base + x509 + rules + "session: {exchangeTimeout: soon}\n", "exchangeTimeout"},
		{"duplicate_key", base + x509 + rules + "listener: {}\n", "already set"},
		{"bad_breaker_cooldown", base + "authentication: {authenticationMethods: [{method: Custom, customSettings: {endpoint: 'https://x/', circuitBreaker: {cooldown: soon}}}]}\n" + rules, "circuitBreaker.cooldown"},
		{"negative_breaker_cooldown", base + "authentication: {authenticationMethods: [{method: Custom, customSettings: {endpoint: 'https://x/', circuitBreaker: {cooldown: -1s}}}]}\n" + rules, "circuitBreaker.cooldown"},
		{"negative_breaker_threshold", base + "authentication: {authenticationMethods: [{method: Custom, customSettings: {endpoint: 'https://x/', circuitBreaker: {failureThreshold: -1}}}]}\n" + rules, "circuitBreaker.failureThreshold"},
		{"eku_not_a_bool", base + "authentication: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: ca.crt, requireClientAuthEku: maybe}}]}\n" + rules, "requireClientAuthEku"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.doc))
			require.ErrorContains(t, err, tc.err)
		})
	}
	_, err := config.Parse([]byte(base + x509 + rules))
	require.NoError(t, err)
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	write := func(doc string) *config.File {
		p := filepath.Join(dir, "c.yaml")
		require.NoError(t, os.WriteFile(p, []byte(doc), 0o644))
		f, err := config.Load(p)
		require.NoError(t, err)
		return f
	}
	listener := "listener: {serverCert: mqtts-endpoint.crt, serverKey: mqtts-endpoint.key}\n"
	rules := "authorization: {rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect}]}]}\n"
	for _, tc := range []struct{ name, doc, err string }{
		{"missing_ca", listener + "authentication: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: nope.crt}}]}\n" + rules, "nope.crt"},
		{"plain_http_custom", listener + "authentication: {authenticationMethods: [{method: Custom, customSettings: {endpoint: 'http://x/'}}]}\n" + rules, "clear text"},
		{"bad_policy", listener + "authentication: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: fabrikam_root_ca.crt}}]}\n" +
			"authorization: {rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish, topics: ['a/#/b']}]}]}\n", "rules[0]"},
		{"missing_server_key", "listener: {serverCert: mqtts-endpoint.crt, serverKey: missing.key}\n" +
			"authentication: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: fabrikam_root_ca.crt}}]}\n" + rules, "listener certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Build(write(tc.doc), slog.New(slog.DiscardHandler))
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestBuildSAT(t *testing.T) {
	dir := t.TempDir()
	_, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	kube := sattest.NewServer(t, sattest.Options{})
	kube.AddServiceAccount("default", "sensor", map[string]string{"aio-broker-auth/group": "sensors"})
	cfg := kube.Config("aio-mq")
	doc := fmt.Sprintf(`listener: {serverCert: mqtts-endpoint.crt, serverKey: mqtts-endpoint.key}
authentication:
  authenticationMethods:
    - method: ServiceAccountToken
      serviceAccountTokenSettings:
        audiences: [aio-mq]
        apiServer: %q
        caFile: %q
        tokenFile: %q
    - method: X509
      x509Settings: {trustedClientCaCert: fabrikam_root_ca.crt}
authorization:
  rules:
    - principals: {attributes: [{group: sensors}]}
      brokerResources: [{method: Connect}, {method: Publish, topics: ["sensors/{principal.clientId}/#"]}]
`, cfg.APIServer, cfg.CAFile, cfg.TokenFile)
	path := filepath.Join(dir, "sat.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o644))
	f, err := config.Load(path)
	require.NoError(t, err)
	s, err := config.Build(f, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, tls.RequestClientCert, s.ListenerTLS.ClientAuth, "a mixed chain makes the certificate optional")

	m, err := auth.NewManager(s.Auth)
	require.NoError(t, err)
	sess := m.NewSession(auth.ConnFunc(func(auth.Packet) {}))
	defer sess.Close()
	token := kube.Token("default", "sensor", sattest.TokenOptions{Audiences: []string{"aio-mq"}})
	r := sess.Connect(context.Background(), &auth.Request{ClientID: "s1", AuthMethod: "K8S-SAT", AuthData: []byte(token)})
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	require.True(t, sess.Authorize(context.Background(), auth.Action{Kind: auth.Publish, Topic: "sensors/s1/temp"}).Allowed)
	require.False(t, sess.Authorize(context.Background(), auth.Action{Kind: auth.Publish, Topic: "sensors/s2/temp"}).Allowed)
}

// TestBuildCircuitBreaker: customSettings.circuitBreaker sets customauth's
// failure threshold and cool-down. Against a server that refuses
// connections, the breaker opens after failureThreshold failures (the
// default is 5); with a 1 ms cool-down the next request after a pause is
// a probe again (the default would keep it open for 10 s).
func TestBuildCircuitBreaker(t *testing.T) {
	dir := t.TempDir()
	_, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now: every request fails at once
	doc := "listener: {serverCert: mqtts-endpoint.crt, serverKey: mqtts-endpoint.key}\n" +
		"authentication: {authenticationMethods: [{method: Custom, customSettings: {endpoint: 'https://" + dead + "/', " +
		"circuitBreaker: {failureThreshold: 2, cooldown: 1ms}}}]}\n" +
		"authorization: {rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect}]}]}\n"
	p := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(p, []byte(doc), 0o600))
	f, err := config.Load(p)
	require.NoError(t, err)
	s, err := config.Build(f, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(s.Close)

	connect := func() auth.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.Auth.Authenticator.Authenticate(ctx, &auth.Request{ClientID: "c", Username: "a", HasUsername: true, ProtocolVersion: 5})
	}
	for i := range 2 {
		r := connect()
		require.NotEqual(t, auth.Pass, r.Outcome)
		require.NotErrorIs(t, r.Err, customauth.ErrCircuitOpen, "request %d is made", i)
	}
	require.ErrorIs(t, connect().Err, customauth.ErrCircuitOpen, "failureThreshold 2 opened the breaker")
	time.Sleep(20 * time.Millisecond)
	require.NotErrorIs(t, connect().Err, customauth.ErrCircuitOpen, "after the 1 ms cool-down a probe is made")
}
