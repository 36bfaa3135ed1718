package e2e

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
)

// mosq builds mosquitto_pub/mosquitto_sub arguments for a tutorial client.
type mosq struct {
	dir, port string
}

func (m mosq) args(client string, extra ...string) []string {
	a := []string{"-h", "localhost", "-p", m.port, "-V", "mqttv5", "-d", "-q", "1", "-i", client,
		"--cafile", filepath.Join(m.dir, devpki.ServerRootCA),
		"--cert", filepath.Join(m.dir, devpki.CertFile(client)),
		"--key", filepath.Join(m.dir, devpki.KeyFile(client))}
	return append(a, extra...)
}

// The Azure IoT Operations TLS, X.509 and ABAC tutorial (seed 003), replayed
// with Debian's mosquitto clients against the example broker started with
// no configuration: it generates the PKI and loads the tutorial's policy.
func TestTutorialWithMosquitto(t *testing.T) {
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	sub := proc.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	dev := filepath.Join(t.TempDir(), "dev")
	addr := proc.FreeAddr(t)
	broker := startReady(t, "broker listening", binary(t, "broker"), "-dev-dir", dev, "-addr", addr, "-audit-allows", "1")
	_, port, _ := net.SplitHostPort(addr)
	m := mosq{dir: dev, port: port}
	broker.WaitFor(t, 5*time.Second, "mosquitto_pub -h localhost -p "+port) // the broker prints the commands to try

	// thermostat → telemetry/humidity: PUBACK 135 (not its group's topic).
	out, err := proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/humidity", "-m", "40")...)
	require.NoError(t, err, out) // mosquitto_pub exits 0 even on 135: the text decides
	require.Contains(t, out, "received CONNACK (0)")
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:135)")

	// thermostat → telemetry/temperature: passes.
	out, err = proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "21.5")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)")

	// heater → subscribe health/heartbeat: SUBACK 135.
	out, _ = proc.Run(t, 20*time.Second, sub, m.args("heater", "-t", "health/heartbeat", "-W", "3")...)
	require.Contains(t, out, "Subscribed (mid: 1): 135", out)

	// heater subscribes to telemetry/temperature (allowed by its user
	// name) and health/heartbeat (denied); lightbulb publishes a heartbeat
	// through its intermediate's attribute, then thermostat a temperature.
	// heater receives the temperature and nothing of the heartbeat.
	// (mosquitto_sub buffers its output in a pipe: the broker's log says
	// when the subscription is in place.)
	heater := startReady(t, "", sub, m.args("heater", "-t", "health/heartbeat", "-t", "telemetry/temperature", "-v", "-C", "1", "-W", "20")...)
	broker.WaitFor(t, 20*time.Second, "decision=authorize_allow", "action=Subscribe", "topic=telemetry/temperature")
	out, err = proc.Run(t, 20*time.Second, pub, m.args("lightbulb", "-t", "health/heartbeat", "-m", "lightbulb-alive")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)", "lightbulb publishes through manufacturer=fabrikam")
	out, err = proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "22.0")...)
	require.NoError(t, err, out)
	if exited, _ := heater.Wait(20 * time.Second); !exited {
		t.Fatalf("heater received nothing:\n%s", heater.Out.String())
	}
	got := heater.Out.String()
	require.Contains(t, got, "Subscribed (mid: 1): 135, 1")
	require.Contains(t, got, "telemetry/temperature 22.0")
	require.NotContains(t, got, "lightbulb-alive", "heater may not receive the heartbeat")
	require.Equal(t, 1, strings.Count(got, "received PUBLISH"))

	// A client of an untrusted CA fails the TLS handshake; an expired
	// client certificate is refused. Neither reaches CONNACK.
	for _, c := range []string{devpki.Intruder, devpki.Expired} {
		out, err = proc.Run(t, 20*time.Second, pub, m.args(c, "-t", "telemetry/temperature", "-m", "0")...)
		require.Error(t, err, "%s: %s", c, out)
		require.NotContains(t, out, "CONNACK", c)
	}
	broker.WaitFor(t, 5*time.Second, `subject="CN=intruder"`)
	broker.WaitFor(t, 5*time.Second, `subject="CN=expired"`)

	// Every decision is logged (-audit-allows 1), and no key material is.
	require.Positive(t, broker.Out.Count("decision=authorize_deny", "action=Publish", "topic=telemetry/humidity"))
	require.Positive(t, broker.Out.Count("decision=authorize_allow", "action=Publish", "topic=health/heartbeat"))
	require.NotContains(t, broker.Out.String(), "PRIVATE KEY")
}
