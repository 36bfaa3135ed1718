package nats_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

// needTool returns the path of a command-line tool. Without it the test is
// skipped, except under CI=true, where it fails.
func needTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not installed (apt-get install -y mosquitto-clients)", name)
		}
		tb.Skipf("%s is not installed (apt-get install -y mosquitto-clients): skipping", name)
	}
	return p
}

// mosquittoArgs are the connection arguments of a mosquitto client
// presenting leaf (its chain in one file, as step's --bundle writes it).
func mosquittoArgs(t *testing.T, tu *tutorial, leaf *authtest.Leaf, id string) []string {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	cert := filepath.Join(dir, "cert.pem")
	key := filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(ca, authtest.CertsPEM(tu.pki.ContosoRoot.Cert), 0o600))
	require.NoError(t, os.WriteFile(cert, leaf.ChainPEM(), 0o600))
	require.NoError(t, os.WriteFile(key, leaf.KeyPEM(t), 0o600))
	host, port, _ := strings.Cut(tu.mqtt, ":")
	_, err := strconv.Atoi(port)
	require.NoError(t, err)
	return []string{"-h", host, "-p", port, "-V", "mqttv311", "-i", id, "--cafile", ca, "--cert", cert, "--key", key}
}

// The tutorial's steps with mosquitto_pub and mosquitto_sub (MQTT 3.1.1),
// as its readers run them.
func TestTutorialMosquitto(t *testing.T) {
	sub := needTool(t, "mosquitto_sub")
	pub := needTool(t, "mosquitto_pub")
	tu := startTutorial(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The heater subscribes to both topics and waits for two messages.
	var out, errOut bytes.Buffer
	heater := exec.CommandContext(ctx, sub, append(mosquittoArgs(t, tu, tu.pki.Heater, "heater"),
		"-t", "telemetry/temperature", "-t", "telemetry/humidity", "-q", "1", "-v", "-C", "2", "-W", "20")...)
	heater.Stdout, heater.Stderr = &out, &errOut
	require.NoError(t, heater.Start())
	require.Eventually(t, func() bool {
		cz, err := tu.srv.Connz(&server.ConnzOptions{MQTTClient: "heater"})
		return err == nil && len(cz.Conns) == 1 && cz.Conns[0].NumSubs >= 2
	}, 10*time.Second, 20*time.Millisecond, "the heater did not subscribe")

	run := func(leaf *authtest.Leaf, id, topic, msg string) (string, error) {
		cmd := exec.CommandContext(ctx, pub, append(mosquittoArgs(t, tu, leaf, id), "-t", topic, "-m", msg, "-q", "1", "-d")...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	// Denied publishes first: nats-server acknowledges and drops them.
	o, err := run(tu.pki.Thermostat, "thermostat", "telemetry/humidity", "spoofed")
	require.NoError(t, err, o)
	o, err = run(tu.pki.Hygrometer, "hygrometer", "telemetry/temperature", "spoofed")
	require.NoError(t, err, o)
	o, err = run(tu.pki.Thermostat, "thermostat", "telemetry/temperature", "21.5")
	require.NoError(t, err, o)
	require.Contains(t, o, "Client thermostat received PUBACK")
	o, err = run(tu.pki.Hygrometer, "hygrometer", "telemetry/humidity", "40")
	require.NoError(t, err, o)

	require.NoError(t, heater.Wait(), errOut.String())
	require.Equal(t, "telemetry/temperature 21.5\ntelemetry/humidity 40\n", out.String())

	t.Run("denied_subscription", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, sub, append(mosquittoArgs(t, tu, tu.pki.Heater, "heater-wide"),
			"-t", "telemetry/#", "-d", "-C", "1", "-W", "2")...)
		b, _ := cmd.CombinedOutput()
		require.Contains(t, string(b), "Subscribed (mid: 1): 128", "SUBACK failure for a filter broader than the grants")
	})
	t.Run("untrusted_certificate", func(t *testing.T) {
		other := authtest.NewRootCA(t, "Other Root CA").Intermediate(t, "Other Intermediate").Leaf(t, "thermostat")
		o, err := run(other, "intruder", "telemetry/temperature", "x")
		require.Error(t, err, o)
	})
}
