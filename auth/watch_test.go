package auth_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

// TestManagerWatches: a change signalled by a watched source re-checks the
// live sessions through the Manager, which subscribed itself when it was
// built; a failed reload signals nothing, and after Close no change reaches
// the Manager.
func TestManagerWatches(t *testing.T) {
	var src auth.Signal
	var banned atomic.Value
	banned.Store("")
	check := func(_ context.Context, s *auth.Session) error {
		if s.Principal().Username() == banned.Load().(string) {
			return errors.New("removed")
		}
		return nil
	}
	m, err := auth.NewManager(auth.Config{
		Authenticator: byUser, Authorizer: auth.AllowAuthenticated, Logger: discard,
		Watches: []auth.Watch{{Name: "users", Source: &src, Check: check}},
	})
	require.NoError(t, err)
	conns := map[string]*authtest.Conn{}
	for _, u := range []string{"alice", "bob", "carol"} {
		c := authtest.NewConn()
		s := m.NewSession(c)
		t.Cleanup(s.Close)
		r := s.Connect(context.Background(), &auth.Request{ClientID: u, AuthMethod: "U", AuthData: []byte(u)})
		require.Equal(t, auth.Success, r.Packet.Code)
		conns[u] = c
	}

	banned.Store("bob")
	src.Fire()
	require.Eventually(t, func() bool { return m.Len() == 2 }, 5*time.Second, 10*time.Millisecond, "the change re-checked the sessions")
	require.Equal(t, 1, conns["bob"].Calls())
	require.Equal(t, 0, conns["alice"].Calls())

	require.NoError(t, m.Close())
	require.NoError(t, m.Close(), "Close twice is harmless")
	banned.Store("alice")
	src.Fire()
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, 2, m.Len(), "a stopped Manager hears no change")
}

func TestManagerWatchesInvalid(t *testing.T) {
	var src auth.Signal
	for name, w := range map[string]auth.Watch{
		"no_source": {Name: "x", Check: func(context.Context, *auth.Session) error { return nil }},
		"no_check":  {Name: "x", Source: &src},
		"negative":  {Name: "x", Source: &src, Check: func(context.Context, *auth.Session) error { return nil }, Timeout: -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auth.NewManager(auth.Config{Authenticator: byUser, Authorizer: auth.AllowAuthenticated, Watches: []auth.Watch{w}})
			require.Error(t, err)
		})
	}
}

func TestSignal(t *testing.T) {
	var s auth.Signal
	var got []int
	c1 := s.Notify(func() { got = append(got, 1) })
	s.Notify(func() { got = append(got, 2) })
	s.Fire()
	c1()
	s.Fire()
	require.Equal(t, []int{1, 2, 2}, got, "in subscription order; a cancelled subscriber hears nothing")
}

// TestPrincipalListener: the Session stamps the listener of the CONNECT on
// the principal, whatever the authenticator said.
func TestPrincipalListener(t *testing.T) {
	liar := auth.AuthenticatorFunc(func(context.Context, *auth.Request) auth.Result {
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "u", Listener: "admin"}))
	})
	m, err := auth.NewManager(auth.Config{Authenticator: liar, Authorizer: auth.AllowAuthenticated, Logger: discard})
	require.NoError(t, err)
	s := m.NewSession(authtest.NewConn())
	defer s.Close()
	r := s.Connect(context.Background(), &auth.Request{ClientID: "c", Listener: "public"})
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, "public", s.Principal().Listener())
	require.Equal(t, "public", s.Principal().Info().Listener)
}

// TestManagerWatchAfterBuild: Manager.Watch subscribes a built Manager to a
// source the same way Config.Watches does; its stop function ends it alone.
func TestManagerWatchAfterBuild(t *testing.T) {
	m, err := auth.NewManager(auth.Config{Authenticator: byUser, Authorizer: auth.AllowAuthenticated, Logger: discard})
	require.NoError(t, err)
	_, err = m.Watch(auth.Watch{Name: "nothing"})
	require.Error(t, err, "a watch without source and check is refused")

	var src auth.Signal
	var checks atomic.Int32
	stop, err := m.Watch(auth.Watch{Name: "later", Source: &src, Check: func(context.Context, *auth.Session) error {
		checks.Add(1)
		return errors.New("gone")
	}})
	require.NoError(t, err)
	c := authtest.NewConn()
	s := m.NewSession(c)
	t.Cleanup(s.Close)
	require.Equal(t, auth.Success, s.Connect(context.Background(), &auth.Request{ClientID: "a", AuthMethod: "U", AuthData: []byte("alice")}).Packet.Code)

	src.Fire()
	require.Eventually(t, func() bool { return m.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, int32(1), checks.Load())
	stop()
	stop()
	src.Fire()
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, int32(1), checks.Load(), "a stopped watch hears no change")
}
