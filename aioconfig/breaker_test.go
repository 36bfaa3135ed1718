package aioconfig_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
)

// customSettings.circuitBreaker reaches customauth: failureThreshold 2 opens
// the breaker after two failed requests, and the 1 ms cool-down lets a probe
// through at once.
func TestCustomCircuitBreaker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now: every request fails at once
	doc := `apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: dev}
spec:
  ports:
  - port: 1883
    authenticationRef: custom
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: custom}
spec:
  authenticationMethods:
  - method: Custom
    customSettings:
      endpoint: https://` + dead + `/
      circuitBreaker: {failureThreshold: 2, cooldown: 1ms}
`
	c, err := aioconfig.Parse([]byte(doc), "breaker.yaml", t.TempDir())
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	b, err := aioconfig.Build(context.Background(), c, aioconfig.Options{Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(b.Close)

	connect := func() auth.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return b.Authenticate(ctx, &auth.Request{ClientID: "c", Username: "a", HasUsername: true, ProtocolVersion: 5})
	}
	for i := range 2 {
		r := connect()
		require.NotEqual(t, auth.Pass, r.Outcome)
		require.NotErrorIs(t, r.Err, customauth.ErrCircuitOpen, "request %d is made", i)
	}
	require.ErrorIs(t, connect().Err, customauth.ErrCircuitOpen, "failureThreshold 2 opened the breaker")
	time.Sleep(20 * time.Millisecond)
	require.NotErrorIs(t, connect().Err, customauth.ErrCircuitOpen, "after the 1 ms cool-down a probe is made")

	for _, bad := range []string{"cooldown: -1s", "cooldown: soon", "failureThreshold: -1"} {
		_, err := aioconfig.Parse([]byte(
			"apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthentication\nmetadata: {name: x}\nspec:\n  authenticationMethods:\n  - method: Custom\n    customSettings: {endpoint: 'https://a/', circuitBreaker: {"+bad+"}}\n"),
			"bad.yaml", "")
		require.ErrorIs(t, err, aioconfig.ErrInvalidValue, bad)
		require.ErrorContains(t, err, "circuitBreaker", bad)
	}
}
