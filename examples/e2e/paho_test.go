package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/metrics/prometheus/promtest"
)

// stack is a broker process with the custom authentication server process
// in front of X.509, as seed 002 chains them.
type stack struct {
	dev        string
	brokerAddr string
	authAddr   string
	authUsers  string
	adminAddr  string // the broker's admin listener
	broker     *proc.Process
	auth       *proc.Process
}

func startStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{dev: t.TempDir(), brokerAddr: proc.FreeAddr(t), authAddr: proc.FreeAddr(t), adminAddr: proc.FreeAddr(t)}
	_, err := devpki.Ensure(s.dev, time.Now())
	require.NoError(t, err)
	s.authUsers = filepath.Join(s.dev, "users.yaml")
	require.NoError(t, os.WriteFile(s.authUsers, []byte(`
tokenMethod: TOKEN
users:
  alice: {password: s3cret, attributes: {group: custom}, lifetime: 1h}
  brief: {password: s3cret, lifetime: 3s}
tokens:
  token-1: alice
  token-2: alice
`), 0o600))
	s.startAuth(t)
	// The request timeout is generous: on a loaded 2-core CI machine a
	// round trip to the auth server process can take seconds, and a
	// re-authentication that times out twice is, by design, left
	// unanswered (see auth's package docs), which would fail the success
	// cases. TestPahoCustomServerDown stops the server, so its requests
	// fail at once whatever the timeout.
	cfg := filepath.Join(s.dev, "stack.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: stack}
spec:
  ports:
    - port: 8883
      authenticationRef: custom-then-x509
      authorizationRef: stack-authz
      tls: {mode: Manual, manual: {certFile: mqtts-endpoint.crt, keyFile: mqtts-endpoint.key}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: custom-then-x509}
spec:
  authenticationMethods:
    - method: Custom
      customSettings: {endpoint: "https://%s/", caCertFile: contoso_root_ca.crt, timeout: 10s}
    - method: X509
      x509Settings: {trustedClientCaCert: fabrikam_root_ca.crt}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: stack-authz}
spec:
  authorizationPolicies:
    rules:
      - principals: {usernames: [alice, brief, thermostat]}
        brokerResources: [{method: Connect}, {method: Publish, topics: ["#"]}, {method: Subscribe, topics: ["#"]}]
`, s.authAddr)+adminSettings(s.adminAddr)), 0o644))
	s.broker = startReady(t, "broker listening", binary(t, "broker"), "-config", cfg, "-addr", s.brokerAddr)
	return s
}

func (s *stack) startAuth(t *testing.T) {
	t.Helper()
	s.auth = startReady(t, "listening", binary(t, "authserver"), "-users", s.authUsers, "-addr", s.authAddr,
		"-cert", filepath.Join(s.dev, devpki.ServerCert), "-key", filepath.Join(s.dev, devpki.ServerKey))
}

func (s *stack) stopAuth() {
	_ = s.auth.Stop()
}

// tlsConfig trusts the broker's Contoso root and presents client's
// certificate when client is not empty.
func (s *stack) tlsConfig(t *testing.T, client string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.dev, devpki.ServerRootCA))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if client != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(s.dev, devpki.CertFile(client)), filepath.Join(s.dev, devpki.KeyFile(client)))
		require.NoError(t, err)
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// answerer is a paho.Auther that answers a challenge with fixed data and
// records the AUTH packets the server sent.
type answerer struct {
	method string
	data   []byte
	got    chan *paho.Auth
}

func (a *answerer) Authenticate(in *paho.Auth) *paho.Auth {
	select {
	case a.got <- in:
	default:
	}
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: a.method, AuthData: a.data}}
}

func (a *answerer) Authenticated() {}

type pahoClient struct {
	*paho.Client
	auther      *answerer
	disconnects chan *paho.Disconnect
}

// dial connects a paho.golang client over TLS. The CONNACK is returned
// with paho's error, which is set for a failing CONNACK.
func (s *stack) dial(t *testing.T, client string, cp *paho.Connect) (*pahoClient, *paho.Connack, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", s.brokerAddr, s.tlsConfig(t, client))
	require.NoError(t, err)
	c := &pahoClient{disconnects: make(chan *paho.Disconnect, 4), auther: &answerer{got: make(chan *paho.Auth, 8)}}
	if cp.Properties != nil {
		c.auther.method = cp.Properties.AuthMethod
	}
	c.Client = paho.NewClient(paho.ClientConfig{
		// Without the lock, paho's first PINGREQ (sent right after CONNACK)
		// can split the AUTH 0x19 of a re-authentication: the broker then
		// reads reason code 0xC0 and disconnects with 0x82.
		Conn:               packets.NewThreadSafeConn(conn),
		AuthHandler:        c.auther,
		OnServerDisconnect: func(d *paho.Disconnect) { c.disconnects <- d },
		OnClientError:      func(error) {},
	})
	cp.KeepAlive, cp.CleanStart = 30, true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		conn.Close()
	})
	return c, ca, err
}

func (c *pahoClient) reauth(t *testing.T, method, data string, wait time.Duration) (*paho.AuthResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c.auther.method, c.auther.data = method, []byte(data)
	return c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: method, AuthData: []byte(data)}})
}

func (c *pahoClient) waitDisconnect(t *testing.T, within time.Duration) *paho.Disconnect {
	t.Helper()
	select {
	case d := <-c.disconnects:
		return d
	case <-time.After(within):
		t.Fatalf("no DISCONNECT within %v", within)
		return nil
	}
}

func (c *pahoClient) publish(t *testing.T, topic string) (byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
	if r == nil {
		return 0, err
	}
	return r.ReasonCode, err
}

func tokenConnect(id, token string) *paho.Connect {
	return &paho.Connect{ClientID: id, UsernameFlag: true, Username: "alice",
		Properties: &paho.ConnectProperties{AuthMethod: "TOKEN", AuthData: []byte(token), RequestProblemInfo: true}}
}

// Re-authentication with paho.golang through the custom server: success
// (AUTH 0x00), a refused token (DISCONNECT 0x87), another method
// (DISCONNECT 0x8C).
func TestPahoReauth(t *testing.T) {
	s := startStack(t)
	t.Run("success", func(t *testing.T) {
		c, ca, err := s.dial(t, "", tokenConnect("reauth-ok", "token-1"))
		require.NoError(t, err)
		require.Zero(t, ca.ReasonCode)
		require.Equal(t, "TOKEN", ca.Properties.AuthMethod, "the success CONNACK carries the method")
		r, err := c.reauth(t, "TOKEN", "token-2", 30*time.Second)
		require.NoError(t, err)
		require.True(t, r.Success)
		require.Zero(t, r.ReasonCode)
		s.broker.WaitFor(t, 5*time.Second, "decision=pass client_id=reauth-ok")
		require.Zero(t, s.broker.Out.Count("decision=reauth_pass client_id=reauth-ok"), "re-authentication passes are Debug records")
		code, err := c.publish(t, "after/reauth")
		require.NoError(t, err)
		require.Zero(t, code)
	})
	t.Run("refused_token", func(t *testing.T) {
		c, _, err := s.dial(t, "", tokenConnect("reauth-bad", "token-1"))
		require.NoError(t, err)
		r, err := c.reauth(t, "TOKEN", "stolen", 30*time.Second)
		require.NoError(t, err)
		require.False(t, r.Success)
		require.EqualValues(t, 0x87, r.ReasonCode, "%+v", r.Properties)
	})
	t.Run("other_method", func(t *testing.T) {
		c, _, err := s.dial(t, "", tokenConnect("reauth-method", "token-1"))
		require.NoError(t, err)
		r, err := c.reauth(t, "OTHER", "token-2", 30*time.Second)
		require.NoError(t, err)
		require.False(t, r.Success)
		require.EqualValues(t, 0x8C, r.ReasonCode)
	})
}

// The custom server returns a 3 s credential: the broker sends DISCONNECT
// 0xA0 within a second of its expiry. (The expiry is written in whole
// seconds, so it falls 2 to 3 s after CONNECT.)
func TestPahoExpiry(t *testing.T) {
	s := startStack(t)
	start := time.Now()
	c, _, err := s.dial(t, "", &paho.Connect{ClientID: "brief", UsernameFlag: true, Username: "brief", PasswordFlag: true, Password: []byte("s3cret")})
	require.NoError(t, err)
	d := c.waitDisconnect(t, 10*time.Second)
	elapsed := time.Since(start)
	require.EqualValues(t, 0xA0, d.ReasonCode)
	require.GreaterOrEqual(t, elapsed, 2*time.Second-100*time.Millisecond, "not before the expiry")
	require.LessOrEqual(t, elapsed, 4*time.Second, "within a second of the expiry")
}

// The custom server goes down: a client with a certificate falls back to
// X.509 at CONNECT; a connected client's re-authentication gets AUTH 0x18
// and it stays connected; when the server is back, re-authentication
// passes.
func TestPahoCustomServerDown(t *testing.T) {
	s := startStack(t)
	a, _, err := s.dial(t, "", tokenConnect("token-client", "token-1"))
	require.NoError(t, err)

	s.stopAuth()
	b, ca, err := s.dial(t, "thermostat", &paho.Connect{ClientID: "cert-client", UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("s3cret")})
	require.NoError(t, err, "fallback to X.509 at CONNECT")
	require.Zero(t, ca.ReasonCode)
	s.broker.WaitFor(t, 5*time.Second, "decision=pass client_id=cert-client method=X.509")
	code, err := b.publish(t, "fallback")
	require.NoError(t, err)
	require.Zero(t, code)

	// Re-authentication while the server is down: AUTH 0x18 with a reason
	// string, and the connection goes on. (paho answers the 0x18; that one
	// retry fails too and the server then stays silent, so Authenticate
	// returns at its deadline.)
	_, err = a.reauth(t, "TOKEN", "token-2", 3*time.Second)
	require.Error(t, err)
	select {
	case got := <-a.auther.got:
		require.EqualValues(t, 0x18, got.ReasonCode)
		require.Contains(t, got.Properties.ReasonString, "unavailable")
	default:
		t.Fatal("no AUTH 0x18 from the server")
	}
	code, err = a.publish(t, "still/connected")
	require.NoError(t, err)
	require.Zero(t, code, "the client stays connected on its old credential")

	// "Is the custom server healthy?" through a real Prometheus: its
	// calls fail while it is down and the method is unavailable.
	base := promtest.Start(t, promtest.Binary(t), s.adminAddr)
	const wait = 20 * time.Second
	promtest.Eventually(t, base, `clamp_max(sum(mqttauth_backend_calls_total{component="custom",result="failed"}) >= 2, 1)`, 1, wait)
	promtest.Eventually(t, base, `clamp_max(sum(mqttauth_authentication_total{method="Custom",result="unavailable"}) >= 2, 1)`, 1, wait)
	okBefore := promtest.Query(t, base, `sum(mqttauth_backend_calls_total{component="custom",result="ok"})`)

	s.startAuth(t)
	r, err := a.reauth(t, "TOKEN", "token-2", 30*time.Second)
	require.NoError(t, err)
	require.True(t, r.Success, "the server is back: AUTH 0x00")
	require.False(t, strings.Contains(s.broker.Out.String(), "s3cret"), "no password in the logs")
	promtest.Eventually(t, base, `sum(mqttauth_backend_calls_total{component="custom",result="ok"})`, okBefore+1, wait)
}

// Live revocation: the Fabrikam CA is removed from the truststore file
// while thermostat is connected; it is disconnected within two seconds and
// its next connect is refused.
func TestLiveRevocation(t *testing.T) {
	sub := proc.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	dev := t.TempDir()
	_, err := devpki.Ensure(dev, time.Now())
	require.NoError(t, err)
	trust := filepath.Join(dev, "trust")
	require.NoError(t, os.Mkdir(trust, 0o755))
	caFile := filepath.Join(trust, "client_ca.pem")
	fabrikam, err := os.ReadFile(filepath.Join(dev, devpki.ClientRootCA))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(caFile, fabrikam, 0o644))
	cfg := filepath.Join(dev, "revoke.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
# The trust ConfigMap is mounted as the directory trust/, key client_ca.pem.
kind: BrokerListener
metadata: {name: revoke}
spec:
  ports:
    - {port: 8883, authenticationRef: x509, authorizationRef: authz, tls: {mode: Manual, manual: {certFile: mqtts-endpoint.crt, keyFile: mqtts-endpoint.key}}}
---
kind: BrokerAuthentication
metadata: {name: x509}
spec:
  authenticationMethods:
    - method: X509
      x509Settings: {trustedClientCaCert: trust}
---
metadata: {name: authz}
spec:
  authorizationPolicies:
    rules:
      - principals: {usernames: [thermostat]}
        brokerResources: [{method: Connect}, {method: Subscribe, topics: ["#"]}, {method: Publish, topics: ["#"]}]
`), 0o644))
	addr := proc.FreeAddr(t)
	broker := startReady(t, "broker listening", binary(t, "broker"), "-config", cfg, "-addr", addr, "-audit-allows", "1")
	_, port, _ := net.SplitHostPort(addr)
	m := mosq{dir: dev, port: port}

	thermo := startReady(t, "", sub, m.args("thermostat", "-t", "telemetry/#")...)
	broker.WaitFor(t, 20*time.Second, "decision=authorize_allow", "action=Subscribe", "topic=telemetry/#")

	// Replace the file's content with another CA, atomically, as a
	// ConfigMap update does.
	intruder, err := os.ReadFile(filepath.Join(dev, devpki.UntrustedRootCA))
	require.NoError(t, err)
	tmp := caFile + ".tmp"
	require.NoError(t, os.WriteFile(tmp, intruder, 0o644))
	removed := time.Now()
	require.NoError(t, os.Rename(tmp, caFile))
	if exited, _ := thermo.Wait(2 * time.Second); !exited {
		t.Fatalf("thermostat still connected 2 s after its CA was removed:\n%s", broker.Out.String())
	}
	t.Logf("disconnected %v after the CA was removed", time.Since(removed).Round(time.Millisecond))
	require.Contains(t, thermo.Out.String(), "DISCONNECT")
	broker.WaitFor(t, time.Second, `decision=disconnect client_id=thermostat method=X.509 reason_code="Not authorized (0x87)"`)

	out, err := proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/x", "-m", "1")...)
	require.Error(t, err, out)
	require.NotContains(t, out, "CONNACK (0)", "the next connect is refused")
}
