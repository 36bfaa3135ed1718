package e2e

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
)

// A mosquitto client that presents its certificate and names an
// Authentication Method is never passed on the certificate: a method no
// authenticator implements gets CONNACK 0x8C, and SCRAM-SHA-256 is judged
// by SCRAM (which refuses a malformed client-first-message), never answered
// with CONNACK 0x00 and an echoed method [MQTT-4.12.0-1].
func TestNamedMethodWithMosquitto(t *testing.T) {
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	dev := filepath.Join(t.TempDir(), "dev")
	addr := proc.FreeAddr(t)
	broker := startReady(t, "broker listening", binary(t, "broker"), "-dev-dir", dev, "-addr", addr)
	_, port, _ := net.SplitHostPort(addr)
	m := mosq{dir: dev, port: port}
	broker.WaitFor(t, 5*time.Second, "mosquitto_pub -h localhost -p "+port)

	out, _ := proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "21.5",
		"-D", "connect", "authentication-method", "MADE-UP", "-D", "connect", "authentication-data", "anything")...)
	require.Contains(t, out, "received CONNACK (140)", "a method nobody implements is refused with 0x8C")
	require.NotContains(t, out, "received PUBACK")

	out, _ = proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "21.5",
		"-D", "connect", "authentication-method", "SCRAM-SHA-256", "-D", "connect", "authentication-data", "garbage")...)
	require.NotContains(t, out, "received CONNACK (0)", "the certificate must not stand in for SCRAM")
	require.NotContains(t, out, "received PUBACK")

	// The same client without a method still connects on its certificate.
	out, err := proc.Run(t, 20*time.Second, pub, m.args("thermostat", "-t", "telemetry/temperature", "-m", "21.5")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received CONNACK (0)")
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)")
}
