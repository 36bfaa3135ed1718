package e2e

import (
	"io"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
)

// The example gateway speaking MQTT 3.1.1 to mosquitto for an MQTT 5
// client (-upstream-protocol 3.1.1), its /readyz with the "draining"
// check, and SIGTERM with -drain-to: the client gets DISCONNECT 0x9C.
func TestGatewayUpstream311AndDrain(t *testing.T) {
	sub := proc.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	dev := filepath.Join(t.TempDir(), "dev")
	adminAddr := proc.FreeAddr(t)
	s := startGateway(t, "-dev-dir", dev, "-admin-addr", adminAddr,
		"-upstream-protocol", "3.1.1", "-drain-to", "gateway-b.example:8883")
	s.gateway.WaitFor(t, 5*time.Second, "upstream_protocol=3.1.1")

	resp, err := http.Get("http://" + adminAddr + "/readyz?verbose")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), "draining")

	m := mosq{dir: dev, port: s.port}
	heater := startReady(t, "", sub, m.args("heater", "-t", "telemetry/temperature", "-v", "-W", "30")...)
	// MQTT 5 at the gateway, 3.1.1 (p2) at mosquitto.
	s.mosquitto.WaitFor(t, 20*time.Second, "as heater (p2, c1", "u'heater'")
	s.mosquitto.WaitFor(t, 20*time.Second, "heater 1 telemetry/temperature")

	s.gateway.Signal(syscall.SIGTERM)
	s.gateway.WaitFor(t, 10*time.Second, "gateway stopping", "drain_to=gateway-b.example:8883")
	exited, _ := heater.Wait(10 * time.Second)
	require.True(t, exited, "mosquitto_sub still runs")
	out := heater.Out.String() // mosquitto_sub's stdout is flushed at exit
	require.Contains(t, out, "Subscribed (mid: 1): 1")
	require.Contains(t, out, "Received DISCONNECT (156)", out) // 0x9C Use another server
}
