package nats_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// The Azure IoT Operations tutorial (seed 003) replayed on NATS's MQTT
// listener with MQTT 3.1.1 clients: X.509 identities and attributes from
// the chain, the ABAC policy as NATS permissions, and the CRL re-check.
func TestTutorialMQTT(t *testing.T) {
	tu := startTutorial(t)

	heater, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Heater), "heater", "", "")
	require.NoError(t, err)
	require.Equal(t, byte(1), heater.subscribe(t, "telemetry/temperature"))
	require.Equal(t, byte(0x80), heater.subscribe(t, "telemetry/#"), "heater may subscribe to the two topics only")
	require.Equal(t, byte(1), heater.subscribe(t, "telemetry/humidity"))

	thermo, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Thermostat), "thermostat", "", "")
	require.NoError(t, err)
	require.NoError(t, thermo.publish(t, "telemetry/temperature", "21.5"))
	heater.expectMessage(t, "telemetry/temperature")

	// The thermostat may not publish humidity: nats-server acknowledges
	// the QoS 1 PUBLISH (MQTT 3.1.1 allows it [MQTT-3.3.5-2]) and drops the
	// message: the heater, subscribed, receives nothing.
	require.NoError(t, thermo.publish(t, "telemetry/humidity", "40"))
	heater.expectNone(t)
	// Matched by its own CN, the thermostat does not get the
	// intermediate's attributes.
	_ = thermo.publish(t, "health/heartbeat", "ok")

	hygro, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Hygrometer), "hygrometer", "", "")
	require.NoError(t, err)
	require.NoError(t, hygro.publish(t, "telemetry/humidity", "40"))
	heater.expectMessage(t, "telemetry/humidity")
	_ = hygro.publish(t, "telemetry/temperature", "0")
	heater.expectNone(t)

	bulb, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Lightbulb), "lightbulb", "", "")
	require.NoError(t, err)
	require.Equal(t, byte(0x80), bulb.subscribe(t, "health/heartbeat"), "the lightbulb has no Subscribe grant")
	monitor, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Heater), "monitor", "", "")
	require.NoError(t, err)
	require.Equal(t, byte(0x80), monitor.subscribe(t, "health/heartbeat"))
	require.NoError(t, bulb.publish(t, "health/heartbeat", "ok"))
	require.Eventually(t, func() bool { return tu.m.Len() == 5 }, 5*time.Second, 10*time.Millisecond)

	t.Run("untrusted_client_fails_handshake", func(t *testing.T) {
		other := authtest.NewRootCA(t, "Other Root CA").Leaf(t, "intruder", authtest.WithExtKeyUsage(x509.ExtKeyUsageClientAuth))
		_, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, other), "intruder", "", "")
		require.Error(t, err)
	})

	t.Run("revoked_by_crl_disconnected", func(t *testing.T) {
		now := time.Now()
		crl, err := x509.ParseRevocationList(tu.pki.FabrikamIntermediate.CRL(t, 1, now.Add(-time.Minute), now.Add(time.Hour), tu.pki.Thermostat.Cert))
		require.NoError(t, err)
		set, err := truststore.NewSet([]*x509.Certificate{tu.pki.FabrikamRoot.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		tu.store.Replace(set)
		thermo.expectLost(t, 5*time.Second)
		tu.a.Sweep()
		require.Eventually(t, func() bool { return tu.m.Len() == 4 }, 5*time.Second, 10*time.Millisecond)
		// Everyone else stays.
		require.NoError(t, hygro.publish(t, "telemetry/humidity", "41"))
		heater.expectMessage(t, "telemetry/humidity")
		_, err = dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Thermostat), "thermostat-again", "", "")
		require.Error(t, err, "a revoked certificate must fail the handshake")
	})
}

// Native NATS clients get the same identities and the same permissions,
// on the same subjects as the MQTT clients.
func TestTutorialNative(t *testing.T) {
	tu := startTutorial(t)
	url := strings.Replace(tu.url, "nats://", "tls://", 1)

	heater, heaterErrs, err := dialNATS(t, url, natsgo.Secure(clientTLS(t, tu.pki, tu.pki.Heater)), natsgo.Name("heater-native"))
	require.NoError(t, err)
	got := make(chan *natsgo.Msg, 8)
	_, err = heater.ChanSubscribe("telemetry.temperature", got)
	require.NoError(t, err)
	_, err = heater.ChanSubscribe("telemetry.>", got)
	require.NoError(t, err) // refused asynchronously
	select {
	case err := <-heaterErrs:
		require.ErrorContains(t, err, "Permissions Violation for Subscription to \"telemetry.>\"")
	case <-time.After(5 * time.Second):
		t.Fatal("the broader subscription was not refused")
	}
	require.NoError(t, heater.Flush())

	mqttHeater, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Heater), "heater", "", "")
	require.NoError(t, err)
	require.Equal(t, byte(1), mqttHeater.subscribe(t, "telemetry/temperature"))

	thermo, thermoErrs, err := dialNATS(t, url, natsgo.Secure(clientTLS(t, tu.pki, tu.pki.Thermostat)))
	require.NoError(t, err)
	require.NoError(t, thermo.Publish("telemetry.temperature", []byte("21.5")))
	require.NoError(t, thermo.Flush())
	select {
	case m := <-got:
		require.Equal(t, "telemetry.temperature", m.Subject)
	case <-time.After(5 * time.Second):
		t.Fatal("the native heater did not receive the temperature")
	}
	mqttHeater.expectMessage(t, "telemetry/temperature")

	require.NoError(t, thermo.Publish("telemetry.humidity", []byte("40")))
	select {
	case err := <-thermoErrs:
		require.ErrorContains(t, err, "Permissions Violation for Publish to \"telemetry.humidity\"")
	case <-time.After(5 * time.Second):
		t.Fatal("the publish was not refused")
	}
	require.True(t, thermo.IsConnected(), "a permissions violation keeps the connection")

	// A native client without a certificate has no credential at all.
	_, _, err = dialNATS(t, url, natsgo.Secure(&tls.Config{RootCAs: tu.pki.ContosoRoot.Pool(), ServerName: "localhost"}))
	require.Error(t, err)
}
