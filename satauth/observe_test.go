package satauth_test

import (
	"context"
	"log/slog"
	"net/http"
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

// kubewatch returns how many kubewatch calls were seen, ok and failed.
func (c *calls) kubewatch() (ok, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.got {
		if ev.Component == auth.ComponentKubeWatch && ev.Kind == auth.Call {
			if ev.Failed {
				failed++
			} else {
				ok++
			}
		}
	}
	return ok, failed
}

// The watch that follows service accounts and pods reports its lists and
// its streams (backend_calls_total{component="kubewatch"}): ok while it is
// alive, failed while the API server refuses it, ok again once it is back.
// Before, nothing but a log line told whether it was alive.
func TestObserverSeesTheWatch(t *testing.T) {
	t.Cleanup(satauth.SetWatchTimings(200*time.Millisecond, 200*time.Millisecond))
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	obs := &calls{}
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.Observer = obs })
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(a.RecheckOnChange(m))
	s := m.NewSession(auth.ConnFunc(func(auth.Packet) {}))
	t.Cleanup(s.Close)
	tok := srv.Token("default", "sensor", sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour})
	r := s.Connect(context.Background(), &auth.Request{ClientID: "sensor", AuthMethod: satauth.Method, AuthData: []byte(tok), ProtocolVersion: 5, Listener: "l"})
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)

	// Two lists and two streams (serviceaccounts, pods).
	require.Eventually(t, func() bool { ok, _ := obs.kubewatch(); return ok >= 4 }, 5*time.Second, 10*time.Millisecond)
	_, failed := obs.kubewatch()
	require.Zero(t, failed)

	srv.Fail(http.StatusServiceUnavailable)
	srv.EndWatches()
	require.Eventually(t, func() bool { _, f := obs.kubewatch(); return f >= 2 }, 10*time.Second, 10*time.Millisecond)
	srv.Fail(0)
	ok, _ := obs.kubewatch()
	require.Eventually(t, func() bool { o, _ := obs.kubewatch(); return o >= ok+2 }, 10*time.Second, 10*time.Millisecond)
}
