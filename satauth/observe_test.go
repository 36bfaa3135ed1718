package satauth_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// calls records component events, without latency.
type calls struct {
	auth.NopObserver
	mu  sync.Mutex
	got []auth.ComponentEvent
}

func (c *calls) Component(ev auth.ComponentEvent) {
	c.mu.Lock()
	ev.Latency = 0
	c.got = append(c.got, ev)
	c.mu.Unlock()
}

func TestObserverSeesAPICalls(t *testing.T) {
	t.Run("tokenreview", func(t *testing.T) {
		srv := sattest.NewServer(t, sattest.Options{})
		srv.AddServiceAccount("default", "sensor", nil)
		obs := &calls{}
		a, _ := newAuth(t, srv, func(c *satauth.Config) { c.Mode = satauth.ModeTokenReview; c.Observer = obs })
		tok := srv.Token("default", "sensor", sattest.TokenOptions{Lifetime: 10 * time.Minute})
		require.Equal(t, auth.Pass, connect(a, tok).Outcome)
		require.Equal(t, auth.Pass, connect(a, tok).Outcome)
		require.Equal(t, []auth.ComponentEvent{
			{Component: auth.ComponentTokenReview, Kind: auth.Call},
			{Component: auth.ComponentTokenReview, Kind: auth.CallCached},
		}, obs.got, "the service account read is not a TokenReview")
	})
	t.Run("local", func(t *testing.T) {
		srv := sattest.NewServer(t, sattest.Options{})
		srv.AddServiceAccount("default", "sensor", nil)
		obs := &calls{}
		a, _ := newAuth(t, srv, func(c *satauth.Config) { c.Mode = satauth.ModeLocal; c.Observer = obs })
		tok := srv.Token("default", "sensor", sattest.TokenOptions{Lifetime: 10 * time.Minute})
		require.Equal(t, auth.Pass, connect(a, tok).Outcome)
		obs.mu.Lock()
		defer obs.mu.Unlock()
		require.NotEmpty(t, obs.got)
		for _, ev := range obs.got {
			require.Equal(t, auth.ComponentJWKS, ev.Component)
			require.Equal(t, auth.Call, ev.Kind)
			require.False(t, ev.Failed)
		}
		require.Equal(t, srv.Calls(sattest.JWKS)+srv.Calls(sattest.Discovery), len(obs.got))
	})
}
