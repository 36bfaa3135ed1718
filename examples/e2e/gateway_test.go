package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
)

// gatewayStack is a mosquitto broker that knows nothing of mqttauth (bound
// to loopback, anonymous) behind the example gateway.
type gatewayStack struct {
	mosquitto *proc.Process
	gateway   *proc.Process
	port      string // the gateway's port
}

// startGateway starts mosquitto and the example gateway in front of it,
// with the gateway's other arguments.
func startGateway(t *testing.T, args ...string) *gatewayStack {
	t.Helper()
	mosq, upstream := proc.StartMosquitto(t, "")
	addr := proc.FreeAddr(t)
	gw := startReady(t, "gateway listening", binary(t, "gateway"), append([]string{"-addr", addr, "-upstream", upstream}, args...)...)
	_, port, _ := net.SplitHostPort(addr)
	return &gatewayStack{mosquitto: mosq, gateway: gw, port: port}
}

// The Azure IoT Operations TLS, X.509 and ABAC tutorial (seed 003) through
// the gateway to a plain mosquitto 2.0.11: the same results as against the
// example broker, with mosquitto seeing the certificate identities as user
// names. (Where the example broker answers PUBACK 0 to a publish nobody
// subscribed to, mosquitto answers 16, No matching subscribers.)
func TestGatewayTutorial(t *testing.T) {
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	sub := proc.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	dev := filepath.Join(t.TempDir(), "dev")
	s := startGateway(t, "-dev-dir", dev)
	m := mosq{dir: dev, port: s.port}

	// thermostat → telemetry/humidity: PUBACK 135 from the gateway.
	out, err := proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/humidity", "-m", "40")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received CONNACK (0)")
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:135)")

	// thermostat → telemetry/temperature: passes (mosquitto: nobody
	// subscribed yet).
	out, err = proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "21.5")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:16)")

	// heater → subscribe health/heartbeat: SUBACK 135.
	out, _ = proc.Run(t, 20*time.Second, sub, m.args("heater", "-t", "health/heartbeat", "-W", "3")...)
	require.Contains(t, out, "Subscribed (mid: 1): 135", out)

	// heater subscribes to both; lightbulb publishes a heartbeat through
	// its intermediate's attribute, then thermostat a temperature. heater
	// receives the temperature and nothing of the heartbeat.
	heater := startReady(t, "", sub, m.args("heater", "-t", "health/heartbeat", "-t", "telemetry/temperature", "-v", "-C", "1", "-W", "20")...)
	s.mosquitto.WaitFor(t, 20*time.Second, "heater 1 telemetry/temperature")
	out, err = proc.Run(t, 20*time.Second, pub, m.args("lightbulb", "-t", "health/heartbeat", "-m", "lightbulb-alive")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:16)", "lightbulb publishes through manufacturer=fabrikam")
	out, err = proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "22.0")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)", "heater is subscribed")
	if exited, _ := heater.Wait(20 * time.Second); !exited {
		t.Fatalf("heater received nothing:\n%s", heater.Out.String())
	}
	got := heater.Out.String()
	require.Contains(t, got, "Subscribed (mid: 1): 135, 1")
	require.Contains(t, got, "telemetry/temperature 22.0")
	require.NotContains(t, got, "lightbulb-alive", "heater may not receive the heartbeat")
	require.Equal(t, 1, strings.Count(got, "received PUBLISH"))

	// An untrusted CA and an expired certificate reach no CONNACK.
	for _, c := range []string{devpki.Intruder, devpki.Expired} {
		out, err = proc.Run(t, 20*time.Second, pub, m.args(c, "-t", "telemetry/temperature", "-m", "0")...)
		require.Error(t, err, "%s: %s", c, out)
		require.NotContains(t, out, "CONNACK", c)
	}

	// mosquitto saw the identities, never the denied traffic, and no
	// client that failed authentication.
	mlog := s.mosquitto.Out.String()
	require.Contains(t, mlog, "as thermostat (p5, c1, k60, u'thermostat')")
	require.NotContains(t, mlog, "telemetry/humidity")
	require.NotContains(t, mlog, "intruder")
	require.NotContains(t, mlog, "expired")
	glog := s.gateway.Out.String()
	require.Positive(t, s.gateway.Out.Count("decision=authorize_deny", "action=Publish", "topic=telemetry/humidity"))
	require.NotContains(t, glog, "PRIVATE KEY")
}

// SCRAM-SHA-256/512, a two-round exchange, and re-authentication through
// the gateway to a mosquitto that has never heard of SCRAM (and whose
// 2.0.x cannot run a multi-step AUTH exchange at all).
func TestGatewaySCRAM(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "dev")
	s := startGateway(t, "-dev-dir", dev)
	client := binary(t, "scramclient")
	pw := filepath.Join(dev, tutorial.SampleSCRAMPasswordFile)
	args := func(mech, pwFile string, extra ...string) []string {
		return append([]string{"-broker", "localhost:" + s.port, "-cafile", filepath.Join(dev, devpki.ServerRootCA),
			"-user", tutorial.SampleSCRAMUser, "-password-file", pwFile, "-mech", mech}, extra...)
	}
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		out, err := proc.Run(t, 20*time.Second, client, args(mech, pw, "-client-id", "scram-"+mech, "-reauth", "-publish", "sandbox/hello")...)
		require.NoError(t, err, out)
		require.Contains(t, out, "CONNACK 0x00, server signature verified")
		require.Contains(t, out, "re-authenticated: AUTH 0x00")
		require.Contains(t, out, "published to sandbox/hello: PUBACK 0x10") // mosquitto: no subscriber
		// The pass is an Info record; the re-authentication's, routine, a
		// Debug one (auth TestReauthPassIsDebug).
		s.gateway.WaitFor(t, 5*time.Second, "decision=pass", "client_id=scram-"+mech, "method="+mech)
		require.Zero(t, s.gateway.Out.Count("decision=reauth_pass", "client_id=scram-"+mech))
		s.mosquitto.WaitFor(t, 5*time.Second, "as scram-"+mech, "u'"+tutorial.SampleSCRAMUser+"'")
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	out, err := proc.Run(t, 20*time.Second, client, args("SCRAM-SHA-256", wrong, "-client-id", "scram-wrong")...)
	require.Error(t, err, out)
	require.Contains(t, out, "CONNACK 0x87")
	out, err = proc.Run(t, 20*time.Second, client, args("SCRAM-SHA-256", pw, "-publish", "telemetry/temperature")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "PUBACK 0x87")

	mlog := s.mosquitto.Out.String()
	require.NotContains(t, mlog, "AUTH", "no AUTH packet reaches the broker")
	require.NotContains(t, mlog, "scram-wrong", "a refused client never reaches the broker")
	require.NotContains(t, s.gateway.Out.String(), "not-the-password")
}

// Live revocation through the gateway: the client CA is removed from the
// truststore file while thermostat is connected; the gateway disconnects
// it within two seconds (and its broker leg with it).
func TestGatewayLiveRevocation(t *testing.T) {
	sub := proc.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
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
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: gateway}
spec:
  ports:
    - port: 8883
      authenticationRef: authn
      authorizationRef: authz
      tls: {mode: Manual, manual: {certFile: mqtts-endpoint.crt, keyFile: mqtts-endpoint.key}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: authn}
spec:
  authenticationMethods:
    - method: X509
      x509Settings: {trustedClientCaCert: trust/client_ca.pem}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: authz}
spec:
  authorizationPolicies:
    rules:
      - principals: {usernames: [thermostat]}
        brokerResources: [{method: Connect}, {method: Subscribe, topics: ["#"]}, {method: Publish, topics: ["#"]}]
`), 0o644))
	s := startGateway(t, "-config", cfg)
	m := mosq{dir: dev, port: s.port}
	thermo := startReady(t, "", sub, m.args("thermostat", "-t", "telemetry/#")...)
	s.mosquitto.WaitFor(t, 20*time.Second, "thermostat 1 telemetry/#")

	intruder, err := os.ReadFile(filepath.Join(dev, devpki.UntrustedRootCA))
	require.NoError(t, err)
	tmp := caFile + ".tmp"
	require.NoError(t, os.WriteFile(tmp, intruder, 0o644))
	removed := time.Now()
	require.NoError(t, os.Rename(tmp, caFile))
	if exited, _ := thermo.Wait(2 * time.Second); !exited {
		t.Fatalf("thermostat still connected 2 s after its CA was removed:\n%s", s.gateway.Out.String())
	}
	t.Logf("disconnected %v after the CA was removed", time.Since(removed).Round(time.Millisecond))
	require.Contains(t, thermo.Out.String(), "Received DISCONNECT (135)")
	s.mosquitto.WaitFor(t, 5*time.Second, "Client thermostat closed its connection")
}

// startCustomGateway is startStack's set-up (the custom authentication
// server in front of X.509) run by the example gateway in front of
// mosquitto instead of by the example broker; s.brokerAddr is the
// gateway's address, s.broker the gateway process.
func startCustomGateway(t *testing.T) (*stack, *proc.Process) {
	t.Helper()
	s := &stack{dev: t.TempDir(), brokerAddr: proc.FreeAddr(t), authAddr: proc.FreeAddr(t)}
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
	cfg := filepath.Join(s.dev, "gateway.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: gateway}
spec:
  ports:
    - port: 8883
      authenticationRef: authn
      authorizationRef: authz
      tls: {mode: Manual, manual: {certFile: mqtts-endpoint.crt, keyFile: mqtts-endpoint.key}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: authn}
spec:
  authenticationMethods:
    - method: Custom
      customSettings: {endpoint: "https://`+s.authAddr+`/", caCertFile: contoso_root_ca.crt, timeout: 10s}
    - method: X509
      x509Settings: {trustedClientCaCert: fabrikam_root_ca.crt}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: authz}
spec:
  authorizationPolicies:
    rules:
      - principals: {usernames: [alice, brief, thermostat]}
        brokerResources: [{method: Connect}, {method: Publish, topics: ["#"]}, {method: Subscribe, topics: ["#"]}]
`), 0o644))
	mosq, upstream := proc.StartMosquitto(t, "")
	s.broker = startReady(t, "gateway listening", binary(t, "gateway"), "-config", cfg, "-addr", s.brokerAddr, "-upstream", upstream)
	return s, mosq
}

// Through the gateway to mosquitto with paho.golang and the custom
// authentication server: a token method with re-authentication (AUTH 0x00,
// then a refused token: DISCONNECT 0x87), and a 3 s credential that ends
// with DISCONNECT 0xA0 within a second of its expiry, the broker leg
// closing with it.
func TestGatewayCustomReauthAndExpiry(t *testing.T) {
	s, mosq := startCustomGateway(t)

	c, ca, err := s.dial(t, "", tokenConnect("gw-reauth", "token-1"))
	require.NoError(t, err)
	require.Zero(t, ca.ReasonCode)
	require.Equal(t, "TOKEN", ca.Properties.AuthMethod)
	r, err := c.reauth(t, "TOKEN", "token-2", 30*time.Second)
	require.NoError(t, err)
	require.True(t, r.Success)
	s.broker.WaitFor(t, 5*time.Second, "decision=pass client_id=gw-reauth")
	require.Zero(t, s.broker.Out.Count("decision=reauth_pass client_id=gw-reauth"), "re-authentication passes are Debug records")
	code, err := c.publish(t, "after/reauth")
	require.NoError(t, err)
	require.EqualValues(t, 0x10, code, "accepted by mosquitto (no subscriber)")
	r, err = c.reauth(t, "TOKEN", "stolen", 30*time.Second)
	require.NoError(t, err)
	require.False(t, r.Success)
	require.EqualValues(t, 0x87, r.ReasonCode)
	mosq.WaitFor(t, 5*time.Second, "Client gw-reauth closed its connection")

	start := time.Now()
	b, _, err := s.dial(t, "", &paho.Connect{ClientID: "gw-brief", UsernameFlag: true, Username: "brief", PasswordFlag: true, Password: []byte("s3cret")})
	require.NoError(t, err)
	d := b.waitDisconnect(t, 10*time.Second)
	elapsed := time.Since(start)
	require.EqualValues(t, 0xA0, d.ReasonCode)
	require.GreaterOrEqual(t, elapsed, 2*time.Second-100*time.Millisecond, "not before the expiry")
	require.LessOrEqual(t, elapsed, 4*time.Second, "within a second of the expiry")
	mosq.WaitFor(t, 5*time.Second, "Client gw-brief closed its connection")
	require.NotContains(t, mosq.Out.String(), "s3cret")
	require.NotContains(t, s.broker.Out.String(), "s3cret")
}
