package aioconfig_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
)

// breakerEvents records the circuit breaker changes a Broker reports.
type breakerEvents struct {
	auth.NopObserver
	mu    sync.Mutex
	kinds []auth.ComponentEventKind
}

func (o *breakerEvents) Component(e auth.ComponentEvent) {
	if e.Component != auth.ComponentCustom {
		return
	}
	switch e.Kind {
	case auth.BreakerOpen, auth.BreakerHalfOpen, auth.BreakerClosed:
		o.mu.Lock()
		o.kinds = append(o.kinds, e.Kind)
		o.mu.Unlock()
	}
}

func (o *breakerEvents) get() []auth.ComponentEventKind {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.kinds)
}

// customSettings.circuitBreaker reaches customauth: failureThreshold 2 opens
// the breaker after two failed requests, and the cool-down decides when a
// probe goes through. Nothing here depends on how fast the machine is: the
// breaker that must stay open has a cool-down of an hour, and the 1 ms one
// is only waited for (the default, 10 s, would exceed the wait).
func TestCustomCircuitBreaker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now: every request fails at once
	build := func(cooldown string) (*aioconfig.Broker, *breakerEvents) {
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
      circuitBreaker: {failureThreshold: 2, cooldown: ` + cooldown + `}
`
		c, err := aioconfig.Parse([]byte(doc), "breaker.yaml", t.TempDir())
		require.NoError(t, err)
		require.NoError(t, c.Validate())
		obs := &breakerEvents{}
		b, err := aioconfig.Build(context.Background(), c, aioconfig.Options{Logger: quiet, Observer: obs})
		require.NoError(t, err)
		t.Cleanup(b.Close)
		return b, obs
	}
	connect := func(b *aioconfig.Broker) auth.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return b.Authenticate(ctx, &auth.Request{ClientID: "c", Username: "a", HasUsername: true, ProtocolVersion: 5})
	}
	fail := func(b *aioconfig.Broker, obs *breakerEvents) {
		for i := range 2 {
			require.Empty(t, obs.get(), "closed before request %d", i)
			r := connect(b)
			require.NotEqual(t, auth.Pass, r.Outcome)
			require.NotErrorIs(t, r.Err, customauth.ErrCircuitOpen, "request %d is made", i)
		}
		require.Equal(t, []auth.ComponentEventKind{auth.BreakerOpen}, obs.get(), "failureThreshold 2 opened the breaker")
	}

	b, obs := build("1h")
	fail(b, obs)
	require.ErrorIs(t, connect(b).Err, customauth.ErrCircuitOpen, "open: no request is made")

	b, obs = build("1ms")
	fail(b, obs)
	require.Eventually(t, func() bool { return !errors.Is(connect(b).Err, customauth.ErrCircuitOpen) }, 5*time.Second, time.Millisecond,
		"after the 1 ms cool-down a probe is made")
	require.Equal(t, auth.BreakerHalfOpen, obs.get()[1])

	for _, bad := range []string{"cooldown: -1s", "cooldown: soon", "failureThreshold: -1"} {
		_, err := aioconfig.Parse([]byte(
			"apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthentication\nmetadata: {name: x}\nspec:\n  authenticationMethods:\n  - method: Custom\n    customSettings: {endpoint: 'https://a/', circuitBreaker: {"+bad+"}}\n"),
			"bad.yaml", "")
		require.ErrorIs(t, err, aioconfig.ErrInvalidValue, bad)
		require.ErrorContains(t, err, "circuitBreaker", bad)
	}
}
