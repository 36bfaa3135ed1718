package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/mqttauth/mqttauth/metrics/prometheus/promtest"
)

// metricsConfig is a port with X.509 (the truststore is the directory
// trust/, as a mounted ConfigMap) then SCRAM (the sample user), a policy,
// and the admin listener on %[1]s.
const metricsConfig = `
kind: BrokerListener
metadata: {name: obs}
spec:
  ports:
    - {port: 8883, authenticationRef: both, authorizationRef: authz, tls: {mode: Manual, manual: {certFile: mqtts-endpoint.crt, keyFile: mqtts-endpoint.key}}}
---
kind: BrokerAuthentication
metadata: {name: both}
spec:
  authenticationMethods:
    - method: X509
      x509Settings: {trustedClientCaCert: trust}
    - method: SCRAM
      scramSettings: {usersFile: ` + tutorial.SampleSCRAMUsersFile + `}
---
metadata: {name: authz}
spec:
  authorizationPolicies:
    rules:
      - principals: {usernames: [thermostat]}
        brokerResources: [{method: Connect}, {method: Subscribe, topics: ["telemetry/#"]}, {method: Publish, topics: [telemetry/temperature]}]
      - principals: {usernames: [sample]}
        brokerResources: [{method: Connect}, {method: Publish, topics: ["sandbox/#"]}]
---
apiVersion: mqttauth.dev/v1alpha1
kind: MqttAuthSettings
spec:
  admin: {address: "%[1]s", audit: {sampleAllows: 1}}  # every allow: the test waits for the subscription's
`

// The example broker binary scraped by a real Prometheus server while
// real clients connect (mosquitto_pub and mosquitto_sub over mutual TLS,
// paho.golang with a certificate, scramclient with SCRAM): passes, a
// failure, publish denies (PUBACK 0x87) and a live revocation (the
// truststore's CA replaced) are read back through Prometheus's query API.
func TestPrometheusScrapesExampleBroker(t *testing.T) {
	promBin := promtest.Binary(t)
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	sub := proc.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	dev := t.TempDir()
	_, err := devpki.Ensure(dev, time.Now())
	require.NoError(t, err)
	pwFile, err := tutorial.EnsureSampleSCRAMUser(dev)
	require.NoError(t, err)
	trust := filepath.Join(dev, "trust")
	require.NoError(t, os.Mkdir(trust, 0o755))
	caFile := filepath.Join(trust, "client_ca.pem")
	fabrikam, err := os.ReadFile(filepath.Join(dev, devpki.ClientRootCA))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(caFile, fabrikam, 0o644))

	adminAddr := proc.FreeAddr(t)
	broker, port := proc.StartBroker(t, dev, fmt.Sprintf(metricsConfig, adminAddr))
	broker.WaitFor(t, 5*time.Second, `msg="admin listening" address=`+adminAddr)
	resp, err := http.Get("http://" + adminAddr + "/readyz?verbose")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "/readyz after start")

	base := promtest.Start(t, promBin, adminAddr)
	const wait = 20 * time.Second
	promtest.Eventually(t, base, `up{job="mqttauth"}`, 1, wait)

	m := mosq{dir: dev, port: port}
	// thermostat stays subscribed (mosquitto_sub), publishes an allowed
	// and a denied topic (mosquitto_pub, PUBACK 135), each with its own
	// client identifier (the same one would take the session over).
	thermo := startReady(t, "", sub, m.args("thermostat", "-t", "telemetry/#")...)
	broker.WaitFor(t, wait, "decision=authorize_allow", "action=Subscribe", "topic=telemetry/#")
	out, err := proc.Run(t, wait, pub, m.args("thermostat", "-i", "pub-1", "-t", "telemetry/temperature", "-m", "21.5")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)")
	out, err = proc.Run(t, wait, pub, m.args("thermostat", "-i", "pub-2", "-t", "telemetry/humidity", "-m", "40")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:135)")

	// paho.golang with thermostat's certificate: a denied publish, and it
	// stays connected.
	s := &stack{dev: dev, brokerAddr: net.JoinHostPort("127.0.0.1", port)}
	c, _, err := s.dial(t, "thermostat", &paho.Connect{ClientID: "paho-thermostat"})
	require.NoError(t, err)
	code, _ := c.publish(t, "sandbox/x")
	require.Equal(t, byte(0x87), code)

	// SCRAM (scramclient, a paho.golang program): the sample user passes,
	// then fails with a wrong password (CONNACK 0x87).
	client := binary(t, "scramclient")
	scram := func(pw string) (string, error) {
		return proc.Run(t, wait, client, "-broker", "localhost:"+port, "-cafile", filepath.Join(dev, devpki.ServerRootCA),
			"-user", tutorial.SampleSCRAMUser, "-password-file", pw, "-mech", "SCRAM-SHA-256")
	}
	out, err = scram(pwFile)
	require.NoError(t, err, out)
	require.Contains(t, out, "CONNACK 0x00")
	wrong := filepath.Join(t.TempDir(), "wrong")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	out, err = scram(wrong)
	require.Error(t, err, out)
	require.Contains(t, out, "CONNACK 0x87")

	// heater's certificate passes X.509, but no rule lets heater connect:
	// CONNACK 0x87, counted as a Connect deny, and the records say who and
	// why (before: Connect was never counted and the record said method="").
	out, err = proc.Run(t, wait, pub, m.args("heater", "-t", "telemetry/temperature", "-m", "0")...)
	require.Error(t, err, out)
	require.Contains(t, out, "CONNACK (135)")
	broker.WaitFor(t, wait, "decision=authorize_deny", "client_id=heater", "action=Connect", "method=X.509", "username=heater",
		"listener=obs:", `policy="BrokerAuthorization authz"`, `err="no rule matched"`)
	broker.WaitFor(t, wait, "decision=deny", "client_id=heater", "method=X.509", "username=heater", `reason_code="Not authorized (0x87)"`,
		"Connect denied by BrokerAuthorization authz: no rule matched")
	// Which rule allowed a publish (allows are sampled here: sampleAllows 1).
	require.Equal(t, 1, broker.Out.Count("decision=authorize_allow", "client_id=pub-1", "action=Publish", "topic=telemetry/temperature",
		"rule=rules[0].brokerResources[2]", `policy="BrokerAuthorization authz"`), broker.Out.String())
	require.Equal(t, 1, broker.Out.Count("decision=authorize_deny", "client_id=pub-2", "topic=telemetry/humidity", `err="no rule matched"`))

	for expr, want := range map[string]float64{
		// Four mosquitto clients and paho pass X.509; the SCRAM clients
		// bring no certificate (X.509 not relevant), one passes SCRAM and
		// one fails.
		`sum(mqttauth_authentication_total{method="X.509",result="pass"})`:         5,
		`sum(mqttauth_authentication_total{method="X.509",result="not_relevant"})`: 2,
		`sum(mqttauth_authentication_total{method="SCRAM",result="pass"})`:         1,
		`sum(mqttauth_authentication_total{method="SCRAM",result="fail"})`:         1,
		`sum(mqttauth_connections_total{result="accepted"})`:                       5,
		`sum(mqttauth_connections_total{result="refused",reason_code="0x87"})`:     2,
		// Every CONNECT that passed authentication asked the policy:
		// five allowed, heater denied.
		`sum(mqttauth_authorization_total{action="Connect",result="allow"})`: 5,
		`sum(mqttauth_authorization_total{action="Connect",result="deny"})`:  1,
		// The subscription, and the delivery of 21.5 to it (mochi asks
		// the read ACL for every delivery).
		`sum(mqttauth_authorization_total{action="Subscribe",result="allow"})`: 2,
		`sum(mqttauth_authorization_total{action="Publish",result="allow"})`:   1,
		`sum(mqttauth_authorization_total{action="Publish",result="deny"})`:    2,
		// mosquitto_sub and paho are still connected.
		`mqttauth_sessions`: 2,
		`sum(mqttauth_reloads_total{component="truststore",result="ok"})`: 1,
		`sum(mqttauth_reloads_total{component="users",result="ok"})`:      1,
		// The defence holds the failure's counters (address, user name,
		// client identifier); no pre-authentication refusal happened.
		`clamp_max(mqttauth_throttle_entries, 1)`: 1,
		`sum(mqttauth_preauth_refused_total)`:     0,
		// The verified chains are cached (one per chain presented).
		`clamp_max(mqttauth_x509_cached_chains, 1)`: 1,
	} {
		promtest.Eventually(t, base, expr, want, wait)
	}

	// Replace the truststore's CA: both of thermostat's sessions are
	// disconnected (cause revocation) and the reload is counted.
	intruder, err := os.ReadFile(filepath.Join(dev, devpki.UntrustedRootCA))
	require.NoError(t, err)
	tmp := caFile + ".tmp"
	require.NoError(t, os.WriteFile(tmp, intruder, 0o644))
	require.NoError(t, os.Rename(tmp, caFile))
	if exited, _ := thermo.Wait(wait); !exited {
		t.Fatalf("thermostat still connected after its CA was removed:\n%s", broker.Out.String())
	}
	c.waitDisconnect(t, wait)
	promtest.Eventually(t, base, `sum(mqttauth_disconnects_total{cause="revocation"})`, 2, wait)
	promtest.Eventually(t, base, `mqttauth_sessions`, 0, wait)
	promtest.Eventually(t, base, `clamp_max(sum(mqttauth_reloads_total{component="truststore",result="ok"}) >= 2, 1) > 0`, 1, wait)
}

// The example gateway serves the same admin listener: /readyz once its
// sources are loaded, its ports listen and its upstream broker can be
// reached, /metrics with its connections and the upstream's state, read
// back through a real Prometheus. Before, /readyz said ok while the
// upstream was unreachable and every client got CONNACK 0x88.
func TestGatewayAdminListener(t *testing.T) {
	promBin := promtest.Binary(t)
	dev := filepath.Join(t.TempDir(), "dev")
	adminAddr, upstream := proc.FreeAddr(t), proc.FreeAddr(t)
	startReady(t, "gateway listening", binary(t, "gateway"), "-dev-dir", dev, "-addr", proc.FreeAddr(t),
		"-upstream", upstream, "-admin-addr", adminAddr)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + adminAddr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := get("/readyz?verbose")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "[-] upstream "+upstream+": gateway: upstream broker "+upstream+" unreachable")
	require.Contains(t, body, "[+] listeners ok")
	code, body = get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "mqttauth_gateway_connections 0")
	require.Contains(t, body, `mqttauth_reloads_total{component="truststore",result="ok"} 1`)
	code, _ = get("/debug/pprof/")
	require.Equal(t, http.StatusNotFound, code, "pprof is off unless asked")

	base := promtest.Start(t, promBin, adminAddr)
	const wait = 20 * time.Second
	promtest.Eventually(t, base, `mqttauth_gateway_upstream_up`, 0, wait)

	// The broker comes up: ready, and the gauge says so.
	ln, err := net.Listen("tcp", upstream)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	code, body = get("/readyz?verbose")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "[+] upstream "+upstream+" ok")
	promtest.Eventually(t, base, `mqttauth_gateway_upstream_up`, 1, wait)
}

// The gateway takes several -config like the broker, and -check-config
// prints what it runs, flags included.
func TestGatewayCheckConfig(t *testing.T) {
	dir := t.TempDir()
	_, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	_, err = tutorial.EnsureSampleSCRAMUser(dir)
	require.NoError(t, err)
	docs := strings.SplitN(fmt.Sprintf(metricsConfig, "127.0.0.1:9191"), "---\n", 2)
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	require.NoError(t, os.WriteFile(a, []byte(docs[0]), 0o644))
	require.NoError(t, os.WriteFile(b, []byte(docs[1]), 0o644))
	trust := filepath.Join(dir, "trust")
	require.NoError(t, os.Mkdir(trust, 0o755))
	fabrikam, err := os.ReadFile(filepath.Join(dir, devpki.ClientRootCA))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(trust, "ca.pem"), fabrikam, 0o644))

	out, err := proc.Run(t, 30*time.Second, binary(t, "gateway"), "-config", a, "-config", b, "-check-config",
		"-admin-addr", "off", "-upstream", "127.0.0.1:1883", "-max-pending", "64")
	require.NoError(t, err, out)
	for _, want := range []string{
		"configuration " + a + ", " + b + " is valid",
		"port obs:8883", "BrokerAuthorization authz (2 rules)",
		"admin: off\n",
		"every authorization allow logged", // the file says sampleAllows: 1
		"upstream: 127.0.0.1:1883, plain TCP, PROXY protocol off",
		"gateway limits: maxPacketSize 1048576, maxUnauthenticatedConnections 64 per port (8 per source), connectTimeout 10s",
		"takeover coordination: off",
	} {
		require.Contains(t, out, want)
	}
	out, err = proc.Run(t, 30*time.Second, binary(t, "gateway"), "-config", a, "-config", b, "-check-config",
		"-admin-addr", "off", "-upstream", "127.0.0.1:1883", "-upstream-protocol", "3.1.1", "-coordination")
	require.NoError(t, err, out)
	require.Contains(t, out, "takeover coordination: on, topic $mqttauth/takeover, user mqttauth-gateway")
}
