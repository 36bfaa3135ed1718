package nats_test

import (
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/jwtauth"
	"github.com/mqttauth/mqttauth/jwtauth/jwttest"
)

// An OIDC JWT as the password (MQTT) or the token (native NATS): the
// subject is the user name, the token's exp the ConnectionDeadline.
func TestJWTAsPassword(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	cfg := iss.Config("mqtt-broker")
	cfg.TokenFrom = jwtauth.FromPassword
	cfg.Logger = quiet
	ja, err := jwtauth.New(cfg)
	require.NoError(t, err)
	x, err := abac.Parse([]byte(`
rules:
  - principals: {usernames: [device-1, device-2]}
    brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["devices/{principal.username}/#"]}
      - {method: Subscribe, topics: ["devices/{principal.username}/#"]}
`))
	require.NoError(t, err)
	m := newManager(t, auth.Config{Authenticator: auth.Chain{ja}, Authorizer: x})
	b := startBroker(t, brokerConfig{manager: m, policy: x})

	long := iss.Mint(t, jwttest.Claims{Subject: "device-1", Audience: []string{"mqtt-broker"}})
	c, err := dialMQTT(t, b.mqtt, nil, "d1", "jwt", long)
	require.NoError(t, err)
	require.Equal(t, byte(1), c.subscribe(t, "devices/device-1/#"))
	require.Equal(t, byte(0x80), c.subscribe(t, "devices/device-2/#"))

	// A native client sends the token as its auth token.
	short := iss.Mint(t, jwttest.Claims{Subject: "device-1", Audience: []string{"mqtt-broker"}, Expiry: time.Now().Add(3 * time.Second)})
	closed := make(chan struct{})
	nc, _, err := dialNATS(t, b.url, natsgo.Token(short), natsgo.ClosedHandler(func(*natsgo.Conn) { close(closed) }))
	require.NoError(t, err)
	require.NoError(t, nc.Publish("devices.device-1.status", []byte("up")))
	require.NoError(t, nc.Flush())
	c.expectMessage(t, "devices/device-1/status")
	select {
	case <-closed:
	case <-time.After(8 * time.Second):
		t.Fatal("the connection outlived its token")
	}
	require.True(t, c.IsConnectionOpen(), "the long-lived token keeps its connection")

	t.Run("wrong_audience_refused", func(t *testing.T) {
		tok := iss.Mint(t, jwttest.Claims{Subject: "device-2", Audience: []string{"other"}})
		_, err := dialMQTT(t, b.mqtt, nil, "d2", "jwt", tok)
		require.Error(t, err)
		_, _, err = dialNATS(t, b.url, natsgo.Token(tok))
		require.ErrorContains(t, err, "Authorization Violation")
	})
}
