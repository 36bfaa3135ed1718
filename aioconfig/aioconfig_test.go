package aioconfig_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"sigs.k8s.io/yaml"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/internal/freeport"
	"github.com/mqttauth/mqttauth/mqttconn"
	"github.com/mqttauth/mqttauth/scramauth"
	"github.com/xdg-go/scram"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// TestSeedResources: every resource printed in seeds 002 and 003 that is
// valid YAML loads as written; the one that is not YAML and the Pod (not a
// broker resource) are refused with the reason.
func TestSeedResources(t *testing.T) {
	load := func(t *testing.T, name string) (*aioconfig.Config, error) {
		t.Helper()
		return aioconfig.Load(filepath.Join("testdata", name))
	}
	t.Run("002_default_sat_v1beta1", func(t *testing.T) {
		c, err := load(t, "seed002/01-default-authn.yaml")
		require.NoError(t, err)
		require.Len(t, c.Authentications, 1)
		a := c.Authentications[0]
		require.Equal(t, "authn", a.Name)
		require.Equal(t, aioconfig.APIv1beta1, a.API)
		require.Equal(t, []string{"aio-mq"}, a.Methods[0].SAT.Audiences)
	})
	t.Run("002_fallback_placeholders", func(t *testing.T) {
		// The settings are "# ..." placeholders: the resource loads, and
		// Validate names each missing field.
		c, err := load(t, "seed002/02-fallback.yaml")
		require.NoError(t, err)
		ms := c.Authentications[0].Methods
		require.Equal(t, []string{"Custom", "ServiceAccountToken", "X509"}, []string{ms[0].Method, ms[1].Method, ms[2].Method})
		err = c.Validate()
		for _, f := range []string{
			"spec.authenticationMethods[0].custom.endpoint",
			"spec.authenticationMethods[1].serviceAccountToken.audiences",
			"spec.authenticationMethods[2].x509Credentials.trustedClientCaCert",
		} {
			require.ErrorContains(t, err, f)
		}
		require.ErrorIs(t, err, aioconfig.ErrMissing)
	})
	t.Run("002_attributes_not_yaml", func(t *testing.T) {
		data, err := os.ReadFile("testdata/seed002/03-x509-attributes.yaml")
		require.NoError(t, err)
		var v any
		require.Error(t, yaml.Unmarshal(data, &v), "the seed prints `subject = ...`, which is not YAML")
		_, err = load(t, "seed002/03-x509-attributes.yaml")
		require.ErrorIs(t, err, aioconfig.ErrSyntax)
		require.ErrorContains(t, err, "document 1")
	})
	t.Run("002_x509_spec_with_attribute_secret", func(t *testing.T) {
		c, err := load(t, "seed002/04-x509-enable.yaml")
		require.NoError(t, err)
		m := c.Authentications[0].Methods[0]
		require.Equal(t, "X509", m.Method)
		require.Equal(t, "client-ca", m.X509.TrustedClientCaCert)
		require.Equal(t, "x509-attributes", m.X509.Attributes.SecretName)
	})
	t.Run("002_pod_is_not_ours", func(t *testing.T) {
		_, err := load(t, "seed002/05-pod.yaml")
		require.ErrorIs(t, err, aioconfig.ErrUnknownKind)
		require.ErrorContains(t, err, `kind "Pod"`)
	})
	t.Run("002_sat_spec", func(t *testing.T) {
		c, err := load(t, "seed002/06-sat.yaml")
		require.NoError(t, err)
		require.Equal(t, []string{"aio-mq", "my-audience"}, c.Authentications[0].Methods[0].SAT.Audiences)
	})
	t.Run("002_custom_spec_without_method", func(t *testing.T) {
		c, err := load(t, "seed002/07-custom.yaml")
		require.NoError(t, err)
		m := c.Authentications[0].Methods[0]
		require.Equal(t, "Custom", m.Method)
		require.Equal(t, "https://auth-server-template", m.Custom.Endpoint)
		require.Equal(t, "custom-auth-ca", m.Custom.CACert)
		require.Equal(t, "custom-auth-client-cert", m.Custom.Auth.X509.SecretName)
		require.Equal(t, map[string]string{"header_key": "header_value"}, m.Custom.Headers)
	})
	t.Run("003_portal_rules_array", func(t *testing.T) {
		c, err := load(t, "seed003/abac-authz-rules.json")
		require.NoError(t, err)
		require.Len(t, c.Authorizations, 1)
		require.Equal(t, 4, c.Authorizations[0].Rules)
	})
	t.Run("003_portal_x509_settings", func(t *testing.T) {
		// The portal's X.509 details pane: alone it is no resource (the
		// error says where it goes); in a method it loads as written.
		_, err := load(t, "seed003/x509-settings.json")
		require.ErrorContains(t, err, "x509Settings of an X509 method")
		pane, err := os.ReadFile("testdata/seed003/x509-settings.json")
		require.NoError(t, err)
		doc := "apiVersion: " + aioconfig.APIv1 + "\nkind: BrokerAuthentication\nmetadata: {name: x509-auth}\nspec:\n  authenticationMethods:\n  - method: X509\n    x509Settings: " + string(pane)
		c, err := aioconfig.Parse([]byte(doc), "pane.yaml", "")
		require.NoError(t, err)
		x := c.Authentications[0].Methods[0].X509
		require.Equal(t, "fabrikam-ca", x.TrustedClientCaCert)
		require.Equal(t, "CN = Fabrikam Intermediate CA 1", x.AuthorizationAttributes["intermediate"].Subject)
	})
}

func TestLoadErrors(t *testing.T) {
	const v1 = "apiVersion: mqttbroker.iotoperations.azure.com/v1\n"
	const beta = "apiVersion: mqttbroker.iotoperations.azure.com/v1beta1\n"
	for _, tc := range []struct {
		name, doc string
		is        error
		want      []string
	}{
		{"v1beta1_field_in_v1", v1 + "kind: BrokerAuthentication\nspec: {authenticationMethods: [{method: Custom, custom: {endpoint: x}}]}",
			aioconfig.ErrUnknownField, []string{"spec.authenticationMethods[0].custom", "write customSettings"}},
		{"v1_field_in_v1beta1", beta + "kind: BrokerAuthentication\nspec: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: x}}]}",
			aioconfig.ErrUnknownField, []string{"x509Settings", "write x509Credentials"}},
		{"method_case", v1 + "kind: BrokerAuthentication\nspec: {authenticationMethods: [{method: x509, x509Settings: {}}]}",
			aioconfig.ErrInvalidValue, []string{`.method "x509"`, "case-sensitive: X509"}},
		{"sat_method_name", "spec: {authenticationMethods: [{method: K8S-SAT}]}",
			aioconfig.ErrInvalidValue, []string{"the method is ServiceAccountToken"}},
		{"settings_of_other_method", v1 + "kind: BrokerAuthentication\nspec: {authenticationMethods: [{method: X509, customSettings: {endpoint: x}}]}",
			aioconfig.ErrInvalidValue, []string{"method X509 takes x509Settings"}},
		{"unknown_field_case", v1 + "kind: BrokerAuthentication\nspec: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCACert: x}}]}",
			aioconfig.ErrUnknownField, []string{"x509Settings.trustedClientCACert", "case-sensitive: trustedClientCaCert"}},
		{"unknown_top_field", v1 + "kind: BrokerAuthentication\nmetadata: {name: a}\nspec: {authenticationMethods: []}\nextra: 1",
			aioconfig.ErrUnknownField, []string{`BrokerAuthentication "a": extra`}},
		{"old_layout", "listener: {serverCert: a, serverKey: b}\nauthentication: {authenticationMethods: []}",
			aioconfig.ErrUnknownKind, []string{"old examples/internal/config"}},
		{"old_listener_fields", v1 + "kind: BrokerListener\nspec: {ports: [{port: 1, serverCert: a}]}",
			aioconfig.ErrUnknownField, []string{"serverCert", "tls: {mode: Manual"}},
		{"port_range", v1 + "kind: BrokerListener\nspec: {ports: [{port: 70000, authenticationRef: a}]}",
			aioconfig.ErrInvalidValue, []string{`spec.ports[0].port "70000"`}},
		{"websockets", v1 + "kind: BrokerListener\nspec: {ports: [{port: 1, protocol: WebSockets}]}",
			aioconfig.ErrUnsupported, []string{"protocol"}},
		{"automatic_tls", v1 + "kind: BrokerListener\nspec: {ports: [{port: 1, tls: {mode: Automatic}}]}",
			aioconfig.ErrUnsupported, []string{"cert-manager"}},
		{"policy_error", "kind: BrokerAuthorization\nmetadata: {name: p}\nspec: {authorizationPolicies: {rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish, topics: ['a/#/b']}]}]}}",
			aioconfig.ErrInvalidValue, []string{`BrokerAuthorization "p"`, "rules[0]"}},
		{"second_document", v1 + "kind: BrokerAuthentication\nmetadata: {name: a}\nspec: {authenticationMethods: []}\n---\n" + v1 + "kind: BrokerAuthentication\nmetadata: {name: a}\nspec: {authenticationMethods: []}",
			aioconfig.ErrDuplicate, []string{"document 2 (line 6)"}},
		{"bad_duration", "kind: MqttAuthSettings\nspec: {session: {exchangeTimeout: soon}}",
			aioconfig.ErrInvalidValue, []string{"session.exchangeTimeout"}},
		{"bad_reauth_interval", "kind: MqttAuthSettings\nspec: {session: {reauthInterval: 0s}}",
			aioconfig.ErrInvalidValue, []string{"session.reauthInterval"}},
		{"bad_reauth_burst", "kind: MqttAuthSettings\nspec: {session: {reauthBurst: -1}}",
			aioconfig.ErrInvalidValue, []string{"session.reauthBurst"}},
		{"per_source_over_bound", "kind: MqttAuthSettings\nspec: {limits: {maxUnauthenticatedConnections: 4, maxUnauthenticatedPerSource: 5}}",
			aioconfig.ErrInvalidValue, []string{"limits.maxUnauthenticatedPerSource"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := aioconfig.Parse([]byte(tc.doc), "test.yaml", "")
			require.Error(t, err)
			require.ErrorIs(t, err, tc.is)
			var e *aioconfig.Error
			require.ErrorAs(t, err, &e)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

// TestKubectlList: kubectl get -o yaml of several resources writes a List.
func TestKubectlList(t *testing.T) {
	c, err := aioconfig.Parse([]byte(`apiVersion: v1
kind: List
items:
- apiVersion: mqttbroker.iotoperations.azure.com/v1
  kind: BrokerAuthentication
  metadata: {name: authn, namespace: azure-iot-operations, resourceVersion: "1", uid: x, creationTimestamp: "2024-01-01T00:00:00Z"}
  spec: {authenticationMethods: [{method: ServiceAccountToken, serviceAccountTokenSettings: {audiences: [aio-mq]}}]}
  status: {provisioningStatus: {status: Succeeded}}
- apiVersion: mqttbroker.iotoperations.azure.com/v1
  kind: BrokerAuthorization
  metadata: {name: authz}
  spec: {authorizationPolicies: {cache: Enabled, rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect}]}]}}
metadata: {resourceVersion: ""}
`), "list.yaml", "")
	require.NoError(t, err)
	require.Equal(t, "authn", c.Authentications[0].Name)
	require.Equal(t, "authz", c.Authorizations[0].Name)
}

func TestValidateErrors(t *testing.T) {
	const authn = "---\nkind: BrokerAuthentication\nmetadata: {name: x509}\nspec: {authenticationMethods: [{method: X509, x509Settings: {trustedClientCaCert: ca}}]}\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"no_listener", authn, "at least one BrokerListener"},
		{"no_authentication_ref", "kind: BrokerListener\nspec: {ports: [{port: 1883}]}\n" + authn, "runs a port without authenticationRef unauthenticated"},
		{"unknown_ref", "kind: BrokerListener\nspec: {ports: [{port: 1883, authenticationRef: x590}]}\n" + authn, `authenticationRef "x590": not found (BrokerAuthentications: x509)`},
		{"x509_without_tls", "kind: BrokerListener\nspec: {ports: [{port: 1883, authenticationRef: x509}]}\n" + authn, "the port needs tls"},
		{"same_port", "kind: BrokerListener\nspec: {ports: [{port: 1883, authenticationRef: x509, tls: {mode: Manual, manual: {secretRef: s}}}, {port: 1883, authenticationRef: x509, tls: {mode: Manual, manual: {secretRef: s}}}]}\n" + authn, "port already used"},
		{"unknown_authz", "kind: BrokerListener\nspec: {ports: [{port: 1883, authenticationRef: x509, authorizationRef: nope, tls: {mode: Manual, manual: {secretRef: s}}}]}\n" + authn, `authorizationRef "nope": not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := aioconfig.Parse([]byte(tc.doc), "test.yaml", "")
			require.NoError(t, err)
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}

// writeTree writes files under dir (paths with slashes).
func writeTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o600))
	}
}

// twoPorts is a configuration of two ports: 8883 (TLS, X.509, policy
// of the rules array) and 1883 on loopback (plain TCP, SCRAM, a watched policy
// file), the ConfigMaps and Secrets mounted under mounts/.
const twoPorts = `apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: public}
spec:
  ports:
    - port: %d
      address: 127.0.0.1
      authenticationRef: x509-auth
      authorizationRef: default   # the rules array below has no name
      tls: {mode: Manual, manual: {secretRef: server-cert}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: local}
spec:
  ports:
    - port: %d
      address: 127.0.0.1
      authenticationRef: scram-auth
      authorizationFile: local-policy.yaml
---
apiVersion: mqttbroker.iotoperations.azure.com/v1beta1
kind: BrokerAuthentication
metadata: {name: x509-auth}
spec:
  authenticationMethods:
    - method: x509Credentials
      x509Credentials:
        trustedClientCaCert: fabrikam-ca
        authorizationAttributes:
          thermostat: {subject: "CN = thermostat", attributes: {group: thermostat_group}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: scram-auth}
spec:
  authenticationMethods:
    - method: SCRAM
      scramSettings: {usersFile: scram-users}
---
# The portal's rules array, named by the port.
[{principals: {attributes: [{group: thermostat_group}]}, brokerResources: [{method: Connect}, {method: Publish, topics: [telemetry/temperature]}]}]
---
apiVersion: mqttauth.dev/v1alpha1
kind: MqttAuthSettings
spec:
  configMapDir: mounts/configmaps
  secretDir: mounts/secrets
  session: {onExpiry: close, exchangeTimeout: 10s}
  limits: {maxUnauthenticatedPerSource: 7}
`

// The session and limits settings reach auth.Config and the connection
// layer's limits.
func TestSessionAndLimitsSettings(t *testing.T) {
	f := newFixture(t)
	cfg := f.broker.AuthConfig()
	require.Equal(t, 10*time.Second, cfg.ExchangeTimeout)
	require.Zero(t, cfg.ReauthInterval, "unset: the auth default")
	require.Equal(t, mqttconn.Limits{MaxPendingPerSource: 7}, f.broker.Limits.Conn())
	var none *aioconfig.Limits
	require.Equal(t, mqttconn.Limits{}, none.Conn())

	b, _ := build(t, f.dir, strings.ReplaceAll(mustRead(t, f.dir+"/broker.yaml"),
		"session: {onExpiry: close, exchangeTimeout: 10s}", "session: {reauthInterval: 2s, reauthBurst: 3}"))
	cfg = b.AuthConfig()
	require.Equal(t, 2*time.Second, cfg.ReauthInterval)
	require.Equal(t, 3, cfg.ReauthBurst)
}

type fixture struct {
	dir           string
	pki           *authtest.TutorialPKI
	public, local int
	broker        *aioconfig.Broker
	m             *auth.Manager
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, aioconfig.Options{Logger: quiet})
}

// newFixtureWith builds the twoPorts fixture with opts.
func newFixtureWith(t testing.TB, opts aioconfig.Options) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), pki: authtest.NewTutorialPKI(t, time.Now())}
	var users scramauth.File
	u := scramauth.User{Name: "sample", Credentials: map[scramauth.Mechanism]scramauth.Credential{}}
	c, err := scramauth.NewCredential(scramauth.SHA256, "pw", scramauth.MinIterations)
	require.NoError(t, err)
	u.Credentials[scramauth.SHA256] = c
	users.Put(u)
	usersJSON, err := users.Marshal()
	require.NoError(t, err)
	writeTree(t, f.dir, map[string][]byte{
		"mounts/configmaps/fabrikam-ca/client_ca.pem": authtest.CertsPEM(f.pki.FabrikamRoot.Cert),
		"mounts/secrets/server-cert/tls.crt":          f.pki.Server.ChainPEM(),
		"mounts/secrets/server-cert/tls.key":          f.pki.Server.KeyPEM(t),
		"mounts/secrets/scram-users/users.json":       usersJSON,
		"local-policy.yaml":                           []byte(localPolicy),
	})
	var err1, err2 error
	f.public, err1 = freeport.Loopback()
	f.local, err2 = freeport.Loopback()
	require.NoError(t, errors.Join(err1, err2))
	path := filepath.Join(f.dir, "broker.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(twoPorts, f.public, f.local)), 0o600))
	cfg, err := aioconfig.Load(path)
	require.NoError(t, err)
	f.broker, err = aioconfig.Build(context.Background(), cfg, opts)
	require.NoError(t, err)
	t.Cleanup(f.broker.Close)
	f.m, err = auth.NewManager(f.broker.AuthConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.m.Close() })
	return f
}

const localPolicy = `rules: [{principals: {usernames: [sample]}, brokerResources: [{method: Connect}, {method: Publish, topics: ["sandbox/#"]}]}]`

// tlsConnect accepts one TLS connection on the port's address with the
// port's TLS, dials it with the client's certificate, and connects a
// Session with the server side's connection state, as an adapter does.
func (f *fixture) tlsConnect(t *testing.T, port *aioconfig.Port, listener string, client *authtest.Leaf) (*auth.Session, *authtest.Conn, auth.Response) {
	t.Helper()
	ln, err := tls.Listen("tcp", port.Address, port.TLS)
	require.NoError(t, err)
	defer ln.Close()
	states := make(chan tls.ConnectionState, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(states)
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if tc.Handshake() != nil {
			close(states)
			return
		}
		states <- tc.ConnectionState()
	}()
	cc, err := tls.Dial("tcp", port.Address, &tls.Config{RootCAs: f.pki.ContosoRoot.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{client.TLSCertificate()}})
	require.NoError(t, err)
	defer cc.Close()
	state, ok := <-states
	require.True(t, ok, "TLS handshake")
	conn := authtest.NewConn()
	s := f.m.NewSession(conn)
	t.Cleanup(s.Close)
	r := s.Connect(context.Background(), &auth.Request{ClientID: client.Cert.Subject.CommonName, Listener: listener, TLS: &state, ProtocolVersion: 5})
	return s, conn, r
}

// scramConnect runs a SCRAM-SHA-256 exchange with a Session on listener.
func (f *fixture) scramConnect(t *testing.T, listener, user, password string) (*auth.Session, *authtest.Conn, auth.Response) {
	t.Helper()
	client, err := scram.SHA256.NewClient(user, password, "")
	require.NoError(t, err)
	conv := client.NewConversation()
	first, err := conv.Step("")
	require.NoError(t, err)
	conn := authtest.NewConn()
	s := f.m.NewSession(conn)
	t.Cleanup(s.Close)
	r := s.Connect(context.Background(), &auth.Request{ClientID: user, Listener: listener, AuthMethod: "SCRAM-SHA-256", AuthData: []byte(first), ProtocolVersion: 5})
	if r.Packet.Type != auth.AUTH {
		return s, conn, r
	}
	final, err := conv.Step(string(r.Packet.Data))
	require.NoError(t, err)
	r = s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "SCRAM-SHA-256", Data: []byte(final)})
	return s, conn, r
}

// TestPortsOwnChainsAndPolicies: each port authenticates with its own
// chain and authorizes with its own policy, over a real TLS socket for
// the X.509 port.
func TestPortsOwnChainsAndPolicies(t *testing.T) {
	f := newFixture(t)
	require.Len(t, f.broker.Ports, 2)
	pub, loc := f.broker.Ports[0], f.broker.Ports[1]
	require.Equal(t, fmt.Sprintf("public:%d", f.public), pub.Name)
	require.Equal(t, fmt.Sprintf("127.0.0.1:%d", f.local), loc.Address)
	require.NotNil(t, pub.TLS)
	require.Equal(t, tls.RequireAnyClientCert, pub.TLS.ClientAuth, "X.509 alone: the certificate is required")
	require.Nil(t, loc.TLS, "no tls: plain TCP")

	thermo, _, r := f.tlsConnect(t, pub, pub.Name, f.pki.Thermostat)
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	ctx := context.Background()
	require.True(t, thermo.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "telemetry/temperature"}).Allowed)
	require.False(t, thermo.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "sandbox/x"}).Allowed, "the local port's policy is not the public port's")

	sample, _, r := f.scramConnect(t, loc.Name, "sample", "pw")
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	require.True(t, sample.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "sandbox/x"}).Allowed)
	require.False(t, sample.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "telemetry/temperature"}).Allowed)

	// A SCRAM client on the X.509 port, a certificate on the SCRAM port,
	// and a listener the configuration does not know: refused.
	_, _, r = f.scramConnect(t, pub.Name, "sample", "pw")
	require.True(t, r.Packet.Code.IsFailure(), "SCRAM is not a method of the public port")
	_, _, r = f.tlsConnect(t, pub, loc.Name, f.pki.Thermostat)
	require.True(t, r.Packet.Code.IsFailure(), "X.509 is not a method of the local port")
	_, _, r = f.scramConnect(t, "other:1", "sample", "pw")
	require.Equal(t, auth.NotAuthorized, r.Packet.Code)
	require.ErrorIs(t, r.Err, aioconfig.ErrUnknownListener)

	// Each session decides through its own authorizer (the port policy's
	// per-session decision cache), not through the shared dispatch.
	require.NotSame(t, f.broker, thermo.Authorizer())
	require.NotSame(t, thermo.Authorizer(), sample.Authorizer())
	stranger := auth.NewPrincipal(auth.PrincipalInfo{Username: "thermostat", Listener: "other:1"})
	require.False(t, f.broker.NewSessionAuthorizer().Authorize(ctx, stranger, auth.Action{Kind: auth.Connect}).Allowed,
		"a principal of a listener the configuration does not know is denied")

	var out strings.Builder
	require.NoError(t, f.broker.Describe(&out))
	for _, want := range []string{
		"port public:", "transport: TLS, server certificate CN=mqtts-endpoint", "client certificates required",
		"1. X509 trusting fabrikam-ca (1 CA), 1 attribute mappings",
		"transport: plain TCP", "1. SCRAM scram-users (1 users)", "authorizationFile local-policy.yaml (watched)",
		"BrokerAuthorization default (1 rules)", "session: onExpiry close, exchangeTimeout 10s",
		"watched: truststore fabrikam-ca", "watched: scram users scram-users", "watched: abac policy local-policy.yaml",
	} {
		require.Contains(t, out.String(), want)
	}
}

// TestReloadsRecheckThroughTheManager: a change of each reloadable source
// (truststore, SCRAM users, policy file) reaches the Manager through its
// watches and disconnects exactly the sessions of the ports that use it.
func TestReloadsRecheckThroughTheManager(t *testing.T) {
	swap := func(t *testing.T, path string, data []byte) {
		t.Helper()
		tmp := path + ".new"
		require.NoError(t, os.WriteFile(tmp, data, 0o600))
		require.NoError(t, os.Rename(tmp, path))
	}
	closed := func(c *authtest.Conn) func() bool { return func() bool { return c.Calls() > 0 } }

	t.Run("truststore", func(t *testing.T) {
		f := newFixture(t)
		pub, loc := f.broker.Ports[0], f.broker.Ports[1]
		_, thermo, r := f.tlsConnect(t, pub, pub.Name, f.pki.Thermostat)
		require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
		_, sample, r := f.scramConnect(t, loc.Name, "sample", "pw")
		require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
		other := authtest.NewTutorialPKI(t, time.Now())
		swap(t, filepath.Join(f.dir, "mounts/configmaps/fabrikam-ca/client_ca.pem"), authtest.CertsPEM(other.FabrikamRoot.Cert))
		require.Eventually(t, closed(thermo), 5*time.Second, 10*time.Millisecond, "the X.509 client lost its CA")
		require.Equal(t, 0, sample.Calls(), "the other port's session is not touched")
	})
	t.Run("scram_users", func(t *testing.T) {
		f := newFixture(t)
		_, sample, r := f.scramConnect(t, f.broker.Ports[1].Name, "sample", "pw")
		require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
		swap(t, filepath.Join(f.dir, "mounts/secrets/scram-users/users.json"), []byte(`{"users": []}`))
		require.Eventually(t, closed(sample), 5*time.Second, 10*time.Millisecond, "the removed user lost its connection")
	})
	t.Run("policy_file", func(t *testing.T) {
		f := newFixture(t)
		pub, loc := f.broker.Ports[0], f.broker.Ports[1]
		_, thermo, r := f.tlsConnect(t, pub, pub.Name, f.pki.Thermostat)
		require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
		_, sample, r := f.scramConnect(t, loc.Name, "sample", "pw")
		require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
		// The new local policy allows nobody: the local port's session
		// goes, the public port's (another policy) stays.
		swap(t, filepath.Join(f.dir, "local-policy.yaml"), []byte("denyAll: true"))
		require.Eventually(t, closed(sample), 5*time.Second, 10*time.Millisecond, "Connect is no longer allowed")
		require.Equal(t, 0, thermo.Calls())
	})
}

// TestREADMEExample: the configuration README.md shows loads and validates.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "## Configuration")
	require.True(t, ok)
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	require.True(t, ok)
	doc, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	c, err := aioconfig.Parse([]byte(doc), "README.md", "")
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Len(t, c.Listeners[0].Ports, 2)
	require.Len(t, c.Authentications, 2)
	require.Equal(t, "disconnect", c.Settings.Session.OnExpiry)
}

// BenchmarkAuthorize: the per-port dispatch against the port's policy
// asked directly, for one publish of an allowed topic.
func BenchmarkAuthorize(b *testing.B) {
	f := newFixture(b)
	pub := f.broker.Ports[0]
	p := auth.NewPrincipal(auth.PrincipalInfo{Username: "thermostat", ClientID: "thermostat", Listener: pub.Name, Attributes: map[string]string{"group": "thermostat_group"}})
	a := auth.Action{Kind: auth.Publish, Topic: "telemetry/temperature"}
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		az   auth.Authorizer
	}{{"via=policy", pub.Authorizer}, {"via=dispatch", f.broker}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !bc.az.Authorize(ctx, p, a).Allowed {
					b.Fatal("denied")
				}
			}
		})
	}
}
