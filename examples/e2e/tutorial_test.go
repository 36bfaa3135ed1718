package e2e

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
	pub := requireTool(t, "mosquitto_pub", "mosquitto-clients")
	sub := requireTool(t, "mosquitto_sub", "mosquitto-clients")
	dev := filepath.Join(t.TempDir(), "dev")
	addr := freeAddr(t)
	broker := start(t, "broker listening", bin["broker"], "-dev-dir", dev, "-addr", addr)
	_, port, _ := net.SplitHostPort(addr)
	m := mosq{dir: dev, port: port}
	broker.waitOutput(t, "mosquitto_pub -h localhost -p "+port, 5*time.Second) // the broker prints the commands to try

	// thermostat → telemetry/humidity: PUBACK 135 (not its group's topic).
	out, err := runCmd(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/humidity", "-m", "40")...)
	require.NoError(t, err, out) // mosquitto_pub exits 0 even on 135: the text decides
	require.Contains(t, out, "received CONNACK (0)")
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:135)")

	// thermostat → telemetry/temperature: passes.
	out, err = runCmd(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "21.5")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)")

	// heater → subscribe health/heartbeat: SUBACK 135.
	out, _ = runCmd(t, 20*time.Second, sub, m.args("heater", "-t", "health/heartbeat", "-W", "3")...)
	require.Contains(t, out, "Subscribed (mid: 1): 135", out)

	// heater subscribes to telemetry/temperature (allowed by its user
	// name) and health/heartbeat (denied); lightbulb publishes a heartbeat
	// through its intermediate's attribute, then thermostat a temperature.
	// heater receives the temperature and nothing of the heartbeat.
	// (mosquitto_sub buffers its output in a pipe: the broker's log says
	// when the subscription is in place.)
	heater := start(t, "", sub, m.args("heater", "-t", "health/heartbeat", "-t", "telemetry/temperature", "-v", "-C", "1", "-W", "20")...)
	broker.waitOutput(t, "decision=allow action=Subscribe topic=telemetry/temperature", 20*time.Second)
	out, err = runCmd(t, 20*time.Second, pub, m.args("lightbulb", "-t", "health/heartbeat", "-m", "lightbulb-alive")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)", "lightbulb publishes through manufacturer=fabrikam")
	out, err = runCmd(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "22.0")...)
	require.NoError(t, err, out)
	select {
	case <-heater.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("heater received nothing:\n%s", heater.output())
	}
	got := heater.output()
	require.Contains(t, got, "Subscribed (mid: 1): 135, 1")
	require.Contains(t, got, "telemetry/temperature 22.0")
	require.NotContains(t, got, "lightbulb-alive", "heater may not receive the heartbeat")
	require.Equal(t, 1, strings.Count(got, "received PUBLISH"))

	// A client of an untrusted CA fails the TLS handshake; an expired
	// client certificate is refused. Neither reaches CONNACK.
	for _, c := range []string{devpki.Intruder, devpki.Expired} {
		out, err = runCmd(t, 20*time.Second, pub, m.args(c, "-t", "telemetry/temperature", "-m", "0")...)
		require.Error(t, err, "%s: %s", c, out)
		require.NotContains(t, out, "CONNACK", c)
	}
	broker.waitOutput(t, `subject="CN=intruder"`, 5*time.Second)
	broker.waitOutput(t, `subject="CN=expired"`, 5*time.Second)

	// Every decision is logged, and no key material is.
	log := broker.output()
	require.Contains(t, log, `decision=deny action=Publish topic=telemetry/humidity`)
	require.Contains(t, log, `decision=allow action=Publish topic=health/heartbeat`)
	require.NotContains(t, log, "PRIVATE KEY")
}
