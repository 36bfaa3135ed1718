package nats_test

import (
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

// A certificate's notAfter is the session's expiry and the user's
// ConnectionDeadline: the connection is closed when it passes.
func TestExpiryDisconnects(t *testing.T) {
	tu := startTutorial(t)
	now := time.Now()
	short := tu.pki.FabrikamIntermediate.Leaf(t, "thermostat", authtest.WithExtKeyUsage(x509.ExtKeyUsageClientAuth),
		authtest.WithValidity(now.Add(-time.Hour), now.Add(3*time.Second)))
	c, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, short), "short-lived", "", "")
	require.NoError(t, err)
	long, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Hygrometer), "long-lived", "", "")
	require.NoError(t, err)
	require.Equal(t, 2, tu.m.Len())
	c.expectLost(t, 6*time.Second)
	// notAfter has whole seconds; nats-server's timer fires on time.
	require.False(t, time.Now().Before(short.Cert.NotAfter.Add(-100*time.Millisecond)), "closed before the certificate expired")
	require.Eventually(t, func() bool { tu.a.Sweep(); return tu.m.Len() == 1 && tu.a.Len() == 1 }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, long.publish(t, "telemetry/humidity", "40"))
	require.True(t, long.IsConnectionOpen())
}

// A policy change disconnects exactly the clients whose permissions are
// no longer all granted; reconnecting clients get the new policy's.
func TestPolicyChange(t *testing.T) {
	tu := startTutorial(t)
	heater, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Heater), "heater", "", "")
	require.NoError(t, err)
	require.Equal(t, byte(1), heater.subscribe(t, "telemetry/humidity"))
	thermo, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Thermostat), "thermostat", "", "")
	require.NoError(t, err)
	hygro, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Hygrometer), "hygrometer", "", "")
	require.NoError(t, err)

	// The thermostat now publishes to telemetry/temperature2 only (it lost
	// telemetry/temperature); the heater may also subscribe to it (it
	// gained, lost nothing); the hygrometer is unchanged.
	changed := strings.Replace(authtest.TutorialPolicy, `"topics": ["telemetry/temperature"]`, `"topics": ["telemetry/temperature2"]`, 1)
	changed = strings.Replace(changed, `"topics": ["telemetry/temperature", "telemetry/humidity"]`, `"topics": ["telemetry/temperature", "telemetry/humidity", "telemetry/temperature2"]`, 1)
	require.NotEqual(t, authtest.TutorialPolicy, changed)
	authtest.WriteFile(t, tu.path, []byte(changed))
	require.Eventually(t, func() bool { return tu.policy.Generation() == 2 }, 5*time.Second, 10*time.Millisecond)

	thermo.expectLost(t, 5*time.Second)
	require.NoError(t, hygro.publish(t, "telemetry/humidity", "40"))
	heater.expectMessage(t, "telemetry/humidity")
	require.True(t, heater.IsConnectionOpen() && hygro.IsConnectionOpen())

	// The heater's connection keeps the permissions it connected with; a
	// new connection gets the new grant.
	require.Equal(t, byte(0x80), heater.subscribe(t, "telemetry/temperature2"))
	heater2, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Heater), "heater2", "", "")
	require.NoError(t, err)
	require.Equal(t, byte(1), heater2.subscribe(t, "telemetry/temperature2"))
	require.Equal(t, byte(1), heater2.subscribe(t, "telemetry/temperature"))

	thermo2, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Thermostat), "thermostat", "", "")
	require.NoError(t, err)
	require.NoError(t, thermo2.publish(t, "telemetry/temperature", "21")) // dropped
	require.NoError(t, thermo2.publish(t, "telemetry/temperature2", "22"))
	heater2.expectMessage(t, "telemetry/temperature2")
	heater2.expectNone(t)

	t.Run("inexpressible_reload_refuses_new_clients", func(t *testing.T) {
		// The watcher accepts any valid policy; one whose filters NATS
		// cannot express refuses the clients it would widen, and the
		// re-check disconnects those already connected.
		bad := strings.Replace(changed, `"telemetry/temperature2"]}`, `"#"]}`, 1)
		require.NoError(t, os.WriteFile(tu.path+".tmp", []byte(bad), 0o600))
		require.NoError(t, os.Rename(tu.path+".tmp", tu.path))
		require.Eventually(t, func() bool { return tu.policy.Generation() == 3 }, 5*time.Second, 10*time.Millisecond)
		thermo2.expectLost(t, 5*time.Second)
		_, err := dialMQTT(t, tu.mqtt, clientTLS(t, tu.pki, tu.pki.Thermostat), "thermostat", "", "")
		require.Error(t, err)
		require.NoError(t, hygro.publish(t, "telemetry/humidity", "41"))
		require.True(t, hygro.IsConnectionOpen(), "the hygrometer's grants are unchanged")
	})
}
