package nats_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

// sessionCounter counts the Manager's session events.
type sessionCounter struct {
	auth.NopObserver
	mu    sync.Mutex
	kinds map[auth.SessionEventKind]int
}

func (o *sessionCounter) Session(e auth.SessionEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kinds[e.Kind]++
}

func (o *sessionCounter) count(k auth.SessionEventKind) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.kinds[k]
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The same metrics and audit records as the other adapters, through the
// Manager: connects, refusals, disconnects by the library, closes; one
// audit record per decision, never the password.
func TestObservedAndAudited(t *testing.T) {
	x, err := abac.Parse([]byte(passwordPolicy))
	require.NoError(t, err)
	authn := startCustomAuth(t, map[string]authserver.User{
		"s1": {Password: "sekrit-1", Attributes: map[string]string{"role": "sensor"}},
		"s2": {Password: "sekrit-2", Attributes: map[string]string{"role": "sensor"}},
	})
	obs := &sessionCounter{kinds: map[auth.SessionEventKind]int{}}
	var audit syncBuffer
	m := newManager(t, auth.Config{Authenticator: auth.Chain{authn}, Authorizer: x, Observer: obs,
		Logger: slog.New(slog.NewJSONHandler(&audit, nil))})
	b := startBroker(t, brokerConfig{manager: m, policy: x})

	c1, err := dialMQTT(t, b.mqtt, nil, "dev-1", "s1", "sekrit-1")
	require.NoError(t, err)
	_, err = dialMQTT(t, b.mqtt, nil, "dev-2", "s2", "wrong-password")
	require.Error(t, err)
	c3, err := dialMQTT(t, b.mqtt, nil, "dev-3", "s2", "sekrit-2")
	require.NoError(t, err)
	require.Equal(t, 2, obs.count(auth.SessionConnected))
	require.Equal(t, 1, obs.count(auth.SessionRefused))

	b.m.Recheck(context.Background(), func(_ context.Context, s *auth.Session) error {
		if s.Principal().ClientID() == "dev-3" {
			return auth.ErrRevoked
		}
		return nil
	})
	c3.expectLost(t, 5*time.Second)
	require.Equal(t, 1, obs.count(auth.SessionDisconnected))
	c1.Disconnect(100)
	require.Eventually(t, func() bool { b.a.Sweep(); return obs.count(auth.SessionClosed) == 2 }, 5*time.Second, 20*time.Millisecond)

	log := audit.String()
	require.Contains(t, log, `"client_id":"dev-1"`)
	require.Contains(t, log, `"client_id":"dev-2"`)
	require.Contains(t, log, `"decision":"deny"`)
	require.False(t, strings.Contains(log, "sekrit") || strings.Contains(log, "wrong-password"), "a password reached the audit log")
}

// nats-server publishes an MQTT client's Will through the permissions the
// client was given: a Will on a granted topic is delivered when the
// connection is closed, one on a topic the client was not granted is
// dropped.
func TestWillThroughPermissions(t *testing.T) {
	b := passwordBroker(t, map[string]authserver.User{
		"s1":  {Password: "pw1", Attributes: map[string]string{"role": "sensor"}},
		"ops": {Password: "pw2", Attributes: map[string]string{"role": "ops"}},
	}, passwordPolicy+`
  - principals: {usernames: [ops]}
    brokerResources:
      - {method: Subscribe, topics: ["other/#"]}
`)
	ops, err := dialMQTT(t, b.mqtt, nil, "console", "ops", "pw2")
	require.NoError(t, err)
	require.Equal(t, byte(1), ops.subscribe(t, "sensors/#"))
	require.Equal(t, byte(1), ops.subscribe(t, "other/#"))

	granted, err := dialMQTT(t, b.mqtt, nil, "dev-1", "s1", "pw1", func(o *paho.ClientOptions) {
		o.SetWill("sensors/dev-1/status", "gone", 1, false)
	})
	require.NoError(t, err)
	forbidden, err := dialMQTT(t, b.mqtt, nil, "dev-2", "s1", "pw1", func(o *paho.ClientOptions) {
		o.SetWill("other/status", "gone", 1, false)
	})
	require.NoError(t, err)

	// The library closes both connections (a re-check), as for a
	// revocation: nats-server then publishes their Wills.
	b.m.Recheck(context.Background(), func(_ context.Context, s *auth.Session) error {
		if s.Principal().Username() == "s1" {
			return auth.ErrRevoked
		}
		return nil
	})
	granted.expectLost(t, 5*time.Second)
	forbidden.expectLost(t, 5*time.Second)
	ops.expectMessage(t, "sensors/dev-1/status")
	ops.expectNone(t)
}
