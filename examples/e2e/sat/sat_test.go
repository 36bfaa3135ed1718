package sat_test

// K8S-SAT end to end against a REAL kube-apiserver (package
// satauth/kubetest, binaries from scripts/kube-testenv): the example
// broker binary verifies TokenRequest tokens with TokenReview or the local
// JWKS, takes the attributes from the ServiceAccount annotations and
// authorizes with ABAC rules that use them; mosquitto_pub and the
// satclient binary are the clients.
//
// Expiry is not tested here: TokenRequest's shortest lifetime is 600 s.
// The satclient tests (examples/satclient) run the same broker binary and
// configuration shape against satauth/sattest, whose tokens live seconds.

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/satauth/kubetest"
)

func TestSATKube(t *testing.T) {
	env := kubetest.Require(t)
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	satclient := proc.Binary(t, "github.com/mqttauth/mqttauth/examples/satclient")

	require.NoError(t, env.CreateServiceAccount("e2e-broker", nil))
	require.NoError(t, env.BindBroker("e2e-broker"))
	require.NoError(t, env.CreateServiceAccount("e2e-sensor", map[string]string{
		"aio-broker-auth/group": "sensors", "aio-broker-auth/building": "17",
	}))
	require.NoError(t, env.CreateServiceAccount("e2e-visitor", nil))
	brokerToken := env.TokenFile(t, "e2e-broker", nil, 3600)
	pki := t.TempDir()
	_, err := devpki.Ensure(pki, time.Now())
	require.NoError(t, err)
	ca := filepath.Join(pki, devpki.ServerRootCA)

	for _, mode := range []string{"tokenReview", "local"} {
		t.Run(mode, func(t *testing.T) {
			// Every allow is logged: the test reads the records.
			cfg := proc.SATConfig(pki, env.URL, env.CAFile, brokerToken, mode, kubetest.Issuer) +
				"---\napiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec: {admin: {audit: {sampleAllows: 1}}}\n"
			broker, port := proc.StartBroker(t, t.TempDir(), cfg)
			mqttPub := func(clientID, token, topic string) string {
				t.Helper()
				out, err := proc.Run(t, 20*time.Second, pub, "-V", "mqttv5", "-h", "localhost", "-p", port, "--cafile", ca,
					"-q", "1", "-d", "-i", clientID, "-t", topic, "-m", "21.5",
					"-D", "connect", "authentication-method", "K8S-SAT", "-D", "connect", "authentication-data", token)
				t.Logf("mosquitto_pub -t %s:\n%s", topic, out)
				_ = err // mosquitto_pub exits 0 even on PUBACK 0x87: the text decides
				return out
			}
			sensorToken := env.Token(t, "e2e-sensor", []string{"aio-mq"}, 600)

			t.Run("allowed_topic", func(t *testing.T) {
				out := mqttPub("sensor-a", sensorToken, "buildings/17/temperature")
				require.Contains(t, out, "received CONNACK (0)")
				require.Contains(t, out, "RC:0)")
				proc.WaitFor(t, broker.Out, 5*time.Second, "mqttauth decision", "decision=authorize_allow", "topic=buildings/17/temperature")
			})
			t.Run("topic_of_another_building", func(t *testing.T) {
				out := mqttPub("sensor-b", sensorToken, "buildings/18/temperature")
				require.Contains(t, out, "received CONNACK (0)")
				require.Contains(t, out, "RC:135") // PUBACK 0x87 Not authorized
				proc.WaitFor(t, broker.Out, 5*time.Second, "mqttauth decision", "decision=authorize_deny", "topic=buildings/18/temperature")
			})
			t.Run("wrong_audience", func(t *testing.T) {
				out := mqttPub("sensor-c", env.Token(t, "e2e-sensor", []string{"someone-else"}, 600), "buildings/17/temperature")
				require.Contains(t, out, "received CONNACK (135)")
				require.NotContains(t, out, "PUBACK")
			})
			t.Run("no_attributes", func(t *testing.T) {
				// Authenticated, but no rule allows Connect without group=sensors.
				out := mqttPub("visitor", env.Token(t, "e2e-visitor", []string{"aio-mq"}, 600), "buildings/17/temperature")
				require.Contains(t, out, "received CONNACK (135)")
			})
			if mode != "tokenReview" {
				return
			}
			t.Run("satclient_sigterm", func(t *testing.T) {
				tokenFile := filepath.Join(t.TempDir(), "mqtt-token")
				require.NoError(t, os.WriteFile(tokenFile, []byte(sensorToken), 0o600))
				c := proc.Start(t, satclient, "-broker", "localhost:"+port, "-cafile", ca, "-client-id", "satclient-term",
					"-token-file", tokenFile)
				c.WaitFor(t, 10*time.Second, `msg=connected`)
				require.NoError(t, c.Stop(), c.Out.String()) // SIGTERM: DISCONNECT, exit 0
				c.WaitFor(t, time.Second, `msg=disconnecting`)
			})
			t.Run("satclient_reauth", func(t *testing.T) {
				dir := t.TempDir()
				tokenFile := filepath.Join(dir, "mqtt-token")
				require.NoError(t, os.WriteFile(tokenFile, []byte(sensorToken), 0o600))
				c := proc.Start(t, satclient, "-broker", "localhost:"+port, "-cafile", ca, "-client-id", "satclient-kube",
					"-token-file", tokenFile, "-publish", "buildings/17/status", "-interval", "500ms", "-debounce", "100ms")
				c.WaitFor(t, 10*time.Second, `msg=connected`)
				c.WaitFor(t, 10*time.Second, `msg=published`, `reason_code="0x00 Success"`)

				// A fresh TokenRequest token, as the kubelet would write it.
				fresh := env.Token(t, "e2e-sensor", []string{"aio-mq"}, 1200)
				require.NoError(t, os.WriteFile(tokenFile+".tmp", []byte(fresh), 0o600))
				require.NoError(t, os.Rename(tokenFile+".tmp", tokenFile))
				c.WaitFor(t, 10*time.Second, `msg=re-authenticated`, `reason_code="0x00 Success"`)
				// The broker's record of it is at Debug (routine), not Info.
				require.Zero(t, broker.Out.Count("decision=reauth_pass", "client_id=satclient-kube"))

				// A token of another identity: the broker ends the connection
				// and satclient exits with an error.
				other := env.Token(t, "e2e-visitor", []string{"aio-mq"}, 600)
				require.NoError(t, os.WriteFile(tokenFile+".tmp", []byte(other), 0o600))
				require.NoError(t, os.Rename(tokenFile+".tmp", tokenFile))
				exited, err := c.Wait(10 * time.Second)
				require.True(t, exited, c.Out.String())
				require.Error(t, err)
				require.Contains(t, c.Out.String(), "disconnected by the broker")
				require.NotContains(t, c.Out.String()+broker.Out.String(), "eyJ") // no token in any log
			})
			require.NoError(t, broker.Stop())
		})
	}
}
