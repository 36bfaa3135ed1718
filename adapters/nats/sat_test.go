package nats_test

import (
	"context"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// A Kubernetes service account token as the MQTT password (user name
// "K8S-SAT", MQTT 3.1.1 has no Authentication Method) and as a native
// NATS password, verified with TokenReview on a fake API server; the
// account's annotations are its attributes, and the SAT watch disconnects
// a client whose account lost them.
func TestSATAsPassword(t *testing.T) {
	api := sattest.NewServer(t, sattest.Options{})
	api.AddServiceAccount("default", "thermo", map[string]string{"aio-broker-auth/group": "thermostat_group"})
	cfg := api.Config("aio-mq")
	cfg.AllowUsernameFallback = true
	cfg.Logger = quiet
	sa, err := satauth.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(sa.Close)
	policy, err := abac.Parse([]byte(authtest.TutorialPolicy))
	require.NoError(t, err)
	m := newManager(t, auth.Config{Authenticator: auth.Chain{sa}, Authorizer: policy})
	b := startBroker(t, brokerConfig{manager: m, policy: policy})
	stop, err := m.Watch(sa.Watch(0))
	require.NoError(t, err)
	t.Cleanup(stop)

	token := api.Token("default", "thermo", sattest.TokenOptions{})
	c, err := dialMQTT(t, b.mqtt, nil, "thermostat", satauth.Method, token)
	require.NoError(t, err)
	require.NoError(t, c.publish(t, "telemetry/temperature", "21.5"))

	nc, errs, err := dialNATS(t, b.url, natsgo.UserInfo(satauth.Method, token))
	require.NoError(t, err)
	require.NoError(t, nc.Publish("telemetry.humidity", nil))
	select {
	case err := <-errs:
		require.ErrorContains(t, err, "Permissions Violation")
	case <-time.After(5 * time.Second):
		t.Fatal("the thermostat's account published humidity")
	}

	_, err = dialMQTT(t, b.mqtt, nil, "forged", satauth.Method, token[:len(token)-4]+"AAAA")
	require.Error(t, err, "a forged token")

	// The account loses its group: the watch re-checks and both
	// connections of the account are closed.
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*natsgo.Conn) { close(closed) })
	api.SetAnnotations("default", "thermo", map[string]string{})
	c.expectLost(t, 10*time.Second)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the native connection of the account stayed")
	}
}
