package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

// byUser passes with the user name given as Authentication Data.
var byUser = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
	return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: string(req.AuthData)}))
})

func TestManagerRecheck(t *testing.T) {
	m, err := auth.NewManager(auth.Config{Authenticator: byUser, Authorizer: auth.AllowAuthenticated, Logger: discard})
	require.NoError(t, err)
	conns := map[string]*authtest.Conn{}
	sessions := map[string]*auth.Session{}
	for i := range 50 {
		user := fmt.Sprintf("user-%02d", i)
		c := authtest.NewConn()
		s := m.NewSession(c)
		r := s.Connect(context.Background(), &auth.Request{ClientID: user, AuthMethod: "U", AuthData: []byte(user)})
		require.Equal(t, auth.Success, r.Packet.Code)
		conns[user], sessions[user] = c, s
	}
	// One session that never authenticated and one that left: not checked.
	pending := m.NewSession(authtest.NewConn())
	_ = pending
	sessions["user-49"].Close()
	require.Equal(t, 49, m.Len())

	revoked := map[string]bool{"user-03": true, "user-17": true, "user-48": true}
	var mu sync.Mutex
	checked := map[string]int{}
	rep := m.Recheck(context.Background(), func(_ context.Context, s *auth.Session) error {
		u := s.Principal().Username()
		mu.Lock()
		checked[u]++
		mu.Unlock()
		switch {
		case u == "user-17":
			return &auth.DenyError{Code: auth.Banned, Err: errors.New("banned")} // CONNACK-only: becomes 0x87
		case u == "user-48":
			return fmt.Errorf("wrapped: %w", &auth.DenyError{Code: auth.UseAnotherServer})
		case revoked[u]:
			return errors.New("CA removed")
		}
		return nil
	})
	require.Equal(t, auth.RecheckReport{Checked: 49, Disconnected: 3}, rep)
	require.Len(t, checked, 49)
	for u, n := range checked {
		require.Equal(t, 1, n, "%s checked once", u)
	}
	for u, c := range conns {
		final, closed := c.Final()
		switch u {
		case "user-03", "user-17":
			require.True(t, closed, u)
			require.Equal(t, auth.Packet{Type: auth.DISCONNECT, Code: auth.NotAuthorized, Reason: "access revoked"}, final)
		case "user-48":
			require.True(t, closed, u)
			require.Equal(t, auth.UseAnotherServer, final.Code)
		default:
			require.False(t, closed, u)
		}
	}
	require.Equal(t, 46, m.Len())
	require.True(t, sessions["user-03"].Closed())

	// A second pass finds nothing more to do.
	rep = m.Recheck(context.Background(), func(context.Context, *auth.Session) error { return nil })
	require.Equal(t, auth.RecheckReport{Checked: 46}, rep)
}

func TestManagerRecheckPolicy(t *testing.T) {
	allowed := map[string]bool{"a": true, "b": true}
	var mu sync.Mutex
	policy := auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		mu.Lock()
		defer mu.Unlock()
		if p != nil && allowed[p.Username()] {
			return auth.Allow("test")
		}
		return auth.Deny
	})
	m, err := auth.NewManager(auth.Config{Authenticator: byUser, Authorizer: policy, Logger: discard})
	require.NoError(t, err)
	ca, cb := authtest.NewConn(), authtest.NewConn()
	for u, c := range map[string]*authtest.Conn{"a": ca, "b": cb} {
		r := m.NewSession(c).Connect(context.Background(), &auth.Request{AuthMethod: "U", AuthData: []byte(u)})
		require.Equal(t, auth.Success, r.Packet.Code)
	}
	r := m.NewSession(authtest.NewConn()).Connect(context.Background(), &auth.Request{AuthMethod: "U", AuthData: []byte("c")})
	require.Equal(t, auth.NotAuthorized, r.Packet.Code, "Connect is authorized at CONNECT")

	mu.Lock()
	delete(allowed, "b")
	mu.Unlock()
	rep := m.Recheck(context.Background(), auth.CheckConnect(policy))
	require.Equal(t, auth.RecheckReport{Checked: 2, Disconnected: 1}, rep)
	_, closedA := ca.Final()
	_, closedB := cb.Final()
	require.False(t, closedA)
	require.True(t, closedB)
}

// A re-check runs concurrently with the sessions' own traffic.
func TestManagerRecheckRace(t *testing.T) {
	// Each session re-authenticates 50 times as fast as it can: no bound.
	m, err := auth.NewManager(auth.Config{Authenticator: byUser, Authorizer: auth.AllowAuthenticated, Logger: discard, ReauthInterval: -1})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 20 {
		s := m.NewSession(authtest.NewConn())
		require.Equal(t, auth.Success, s.Connect(context.Background(), &auth.Request{AuthMethod: "U", AuthData: []byte("u")}).Packet.Code)
		wg.Go(func() {
			for range 50 {
				s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: "U", Data: []byte("u")})
				s.Authorize(context.Background(), auth.Action{Kind: auth.Publish, Topic: "t"})
			}
			if i%2 == 0 {
				s.Close()
			}
		})
	}
	for range 10 {
		m.Recheck(context.Background(), func(_ context.Context, s *auth.Session) error {
			if s.Principal() == nil {
				return nil // closed meanwhile
			}
			return nil
		})
	}
	wg.Wait()
	require.Equal(t, 10, m.Len())
}

func TestManagerRecheckCanceled(t *testing.T) {
	m, err := auth.NewManager(auth.Config{Authenticator: byUser, Authorizer: auth.AllowAuthenticated, Logger: discard})
	require.NoError(t, err)
	for range 5 {
		m.NewSession(authtest.NewConn()).Connect(context.Background(), &auth.Request{AuthMethod: "U", AuthData: []byte("u")})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := m.Recheck(ctx, func(context.Context, *auth.Session) error { return errors.New("x") })
	require.Zero(t, rep.Disconnected)
	require.Equal(t, 5, m.Len())
}

// A re-check is not held up by a session whose re-authentication waits on a
// slow backend, and the late result is dropped.
func TestManagerRecheckNotBlockedBySlowBackend(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	slow := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.Reauth {
			close(entered)
			<-release
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "u"}))
	})
	m, err := auth.NewManager(auth.Config{Authenticator: slow, Authorizer: auth.AllowAuthenticated, Logger: discard})
	require.NoError(t, err)
	conn := authtest.NewConn()
	s := m.NewSession(conn)
	require.Equal(t, auth.Success, s.Connect(context.Background(), &auth.Request{AuthMethod: "M"}).Packet.Code)

	done := make(chan auth.Response)
	go func() {
		done <- s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: "M"})
	}()
	<-entered
	rep := m.Recheck(context.Background(), func(context.Context, *auth.Session) error { return auth.ErrRevoked })
	require.Equal(t, auth.RecheckReport{Checked: 1, Disconnected: 1}, rep)
	final, closed := conn.Final()
	require.True(t, closed)
	require.Equal(t, auth.DISCONNECT, final.Type)

	// Input while the call is in flight ends nothing more and sends nothing.
	r := s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: "M"})
	require.Equal(t, auth.None, r.Packet.Type)
	require.True(t, r.Close)

	close(release)
	r = <-done
	require.Equal(t, auth.None, r.Packet.Type, "the late Pass is dropped")
	require.ErrorIs(t, r.Err, auth.ErrClosed)
	require.Nil(t, s.Principal())
	require.Equal(t, 1, conn.Calls())
}
