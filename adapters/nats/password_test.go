package nats_test

import (
	"context"
	"crypto/x509"
	"net"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

// startCustomAuth starts the reference custom authentication server over
// TLS on loopback and returns a customauth authenticator that asks it.
func startCustomAuth(t *testing.T, users map[string]authserver.User) *customauth.Authenticator {
	t.Helper()
	ca := authtest.NewRootCA(t, "Auth Server CA")
	leaf := ca.Leaf(t, "authserver", authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	srv, err := authserver.Start("127.0.0.1:0", authtest.ServerTLSConfig(t, leaf), authserver.NewHandler(authserver.Config{Users: users}))
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	a, err := customauth.New(customauth.Config{Endpoint: srv.URL(), RootCAs: ca.Pool(), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(a.CloseIdleConnections)
	return a
}

const passwordPolicy = `
rules:
  - principals: {attributes: [{role: sensor}]}
    brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["sensors/{principal.clientId}/#"]}
  - principals: {attributes: [{role: ops}]}
    brokerResources:
      - {method: Connect}
      - {method: Subscribe, topics: ["sensors/#"]}
  - principals: {usernames: [guest]}
    brokerResources:
      - {method: Publish, topics: ["guest"]}
`

// User name and password against a custom authentication server, for
// MQTT and native clients; the client id fills the policy's variable.
func TestPassword(t *testing.T) {
	b := passwordBroker(t, map[string]authserver.User{
		"s1":    {Password: "pw1", Attributes: map[string]string{"role": "sensor"}},
		"ops":   {Password: "pw2", Attributes: map[string]string{"role": "ops"}},
		"guest": {Password: "pw3"},
	}, passwordPolicy)

	ops, err := dialMQTT(t, b.mqtt, nil, "console", "ops", "pw2")
	require.NoError(t, err)
	require.Equal(t, byte(1), ops.subscribe(t, "sensors/#"))
	require.Equal(t, byte(0x80), ops.subscribe(t, "other/#"))

	s1, err := dialMQTT(t, b.mqtt, nil, "dev-1", "s1", "pw1")
	require.NoError(t, err)
	require.NoError(t, s1.publish(t, "sensors/dev-1/temp", "1"))
	ops.expectMessage(t, "sensors/dev-1/temp")
	require.NoError(t, s1.publish(t, "sensors/dev-2/temp", "2"))
	ops.expectNone(t)

	// A native client's connection name is its client id.
	nc, errs, err := dialNATS(t, b.url, natsgo.UserInfo("s1", "pw1"), natsgo.Name("dev-3"))
	require.NoError(t, err)
	require.NoError(t, nc.Publish("sensors.dev-3.temp", []byte("3")))
	require.NoError(t, nc.Flush())
	ops.expectMessage(t, "sensors/dev-3/temp")
	require.NoError(t, nc.Publish("sensors.dev-1.temp", []byte("spoof")))
	select {
	case err := <-errs:
		require.ErrorContains(t, err, "Permissions Violation")
	case <-time.After(5 * time.Second):
		t.Fatal("the publish under another client id was not refused")
	}
	ops.expectNone(t)

	t.Run("wrong_password_refused", func(t *testing.T) {
		_, err := dialMQTT(t, b.mqtt, nil, "dev-1", "s1", "nope")
		require.ErrorContains(t, err, "not Authorized")
		_, _, err = dialNATS(t, b.url, natsgo.UserInfo("s1", "nope"))
		require.ErrorContains(t, err, "Authorization Violation")
	})
	t.Run("no_credentials_refused", func(t *testing.T) {
		_, err := dialMQTT(t, b.mqtt, nil, "anon", "", "")
		require.Error(t, err)
	})
	t.Run("no_connect_grant_refused", func(t *testing.T) {
		_, err := dialMQTT(t, b.mqtt, nil, "g", "guest", "pw3")
		require.ErrorContains(t, err, "not Authorized")
	})
	require.Equal(t, 3, b.m.Len())
	require.Equal(t, 3, b.a.Len())
}

// A client that disconnects is forgotten at the next sweep; a session
// the re-check ends is disconnected by nats-server.
func TestSweepAndRecheck(t *testing.T) {
	b := passwordBroker(t, map[string]authserver.User{
		"s1": {Password: "pw1", Attributes: map[string]string{"role": "sensor"}},
		"s2": {Password: "pw2", Attributes: map[string]string{"role": "sensor"}},
	}, passwordPolicy)
	c1, err := dialMQTT(t, b.mqtt, nil, "dev-1", "s1", "pw1")
	require.NoError(t, err)
	c2, err := dialMQTT(t, b.mqtt, nil, "dev-2", "s2", "pw2")
	require.NoError(t, err)
	require.Equal(t, 2, b.a.Len())

	c1.Disconnect(100)
	require.Eventually(t, func() bool { b.a.Sweep(); return b.a.Len() == 1 && b.m.Len() == 1 }, 5*time.Second, 20*time.Millisecond)

	rep := b.m.Recheck(context.Background(), func(_ context.Context, s *auth.Session) error {
		if s.Principal().Username() == "s2" {
			return auth.ErrRevoked
		}
		return nil
	})
	require.Equal(t, auth.RecheckReport{Checked: 1, Disconnected: 1}, rep)
	c2.expectLost(t, 5*time.Second)
	require.Eventually(t, func() bool { b.a.Sweep(); return b.a.Len() == 0 }, 5*time.Second, 20*time.Millisecond)
}
