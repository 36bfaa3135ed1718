package scramauth_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/scramauth"
)

// TestReauth: AUTH 0x19 (client-first) → AUTH 0x18 (server-first) → AUTH 0x18
// (client-final) → AUTH 0x00 (server-final) [MQTT-4.12.1].
func TestReauth(t *testing.T) {
	for _, mech := range scramauth.Mechanisms {
		t.Run("full_exchange_"+string(mech), func(t *testing.T) {
			r := newRig(t, newAuthenticator(t, scramauth.Config{}))
			fullConnect(t, r, mech, "alice", "pencil")
			before := r.s.Principal()
			for range 2 { // twice: each re-authentication is a fresh exchange
				conv := newConv(t, mech, "alice", "pencil")
				s1 := requireChallenge(t, r.auth(auth.ReAuthenticate, mech, step(t, conv, "")), mech)
				resp := r.auth(auth.ContinueAuthentication, mech, step(t, conv, s1))
				require.NoError(t, resp.Err)
				require.False(t, resp.Close)
				require.Equal(t, auth.Packet{Type: auth.AUTH, Code: auth.Success, Method: string(mech), Data: resp.Packet.Data}, resp.Packet)
				require.True(t, strings.HasPrefix(string(resp.Packet.Data), "v="))
				step(t, conv, string(resp.Packet.Data))
				require.True(t, conv.Valid(), "the client verified the server signature")
				p := r.s.Principal()
				require.NotSame(t, before, p, "the principal is swapped")
				require.Equal(t, "alice", p.Username())
				before = p
			}
			require.Equal(t, 1, r.m.Len())
		})
	}
	t.Run("other_user_refused_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		fullConnect(t, r, scramauth.SHA256, "alice", "pencil")
		// bob knows his own password; that does not make him alice's
		// connection.
		conv := newConv(t, scramauth.SHA256, "bob", "hunter2")
		resp := r.auth(auth.ReAuthenticate, scramauth.SHA256, step(t, conv, ""))
		require.Equal(t, auth.DISCONNECT, resp.Packet.Type)
		require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
		require.True(t, resp.Close)
		require.ErrorIs(t, resp.Err, scramauth.ErrUserChanged)
		require.ErrorIs(t, resp.Err, auth.ErrIdentityChanged)
		require.Nil(t, r.s.Principal())
		require.Zero(t, r.m.Len())
	})
	t.Run("wrong_password_disconnects_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		fullConnect(t, r, scramauth.SHA256, "alice", "pencil")
		conv := newConv(t, scramauth.SHA256, "alice", "wrong")
		s1 := requireChallenge(t, r.auth(auth.ReAuthenticate, scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		require.Equal(t, "alice", r.s.Principal().Username(), "the old authentication holds while re-authentication runs")
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, step(t, conv, s1))
		require.Equal(t, auth.DISCONNECT, resp.Packet.Type)
		require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
		require.True(t, resp.Close)
		require.ErrorIs(t, resp.Err, scramauth.ErrInvalidProof)
	})
	t.Run("replayed_client_final_of_connect_0x87", func(t *testing.T) {
		// The client-final-message of the CONNECT exchange, replayed in a
		// re-authentication that starts from the same client-first.
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		conv := newConv(t, scramauth.SHA256, "alice", "pencil")
		c1 := step(t, conv, "")
		s1 := requireChallenge(t, r.connect(scramauth.SHA256, c1), scramauth.SHA256)
		c2 := step(t, conv, s1)
		require.Equal(t, auth.Success, r.auth(auth.ContinueAuthentication, scramauth.SHA256, c2).Packet.Code)

		s1b := requireChallenge(t, r.auth(auth.ReAuthenticate, scramauth.SHA256, c1), scramauth.SHA256)
		require.NotEqual(t, s1, s1b)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, c2)
		require.Equal(t, auth.DISCONNECT, resp.Packet.Type)
		require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
		require.ErrorIs(t, resp.Err, scramauth.ErrNonce)
	})
	t.Run("client_final_in_auth_0x19_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		fullConnect(t, r, scramauth.SHA256, "alice", "pencil")
		resp := r.auth(auth.ReAuthenticate, scramauth.SHA256, "c=biws,r=abc,p=AAAA")
		require.Equal(t, auth.Packet{Type: auth.DISCONNECT, Code: auth.NotAuthorized, Reason: "re-authentication failed"}, resp.Packet)
		require.ErrorIs(t, resp.Err, scramauth.ErrMalformed)
	})
	t.Run("channel_binding_disconnects_0x8C", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		fullConnect(t, r, scramauth.SHA256, "alice", "pencil")
		resp := r.auth(auth.ReAuthenticate, scramauth.SHA256, "p=tls-exporter,,n=alice,r=abc")
		require.Equal(t, auth.DISCONNECT, resp.Packet.Type)
		require.Equal(t, auth.BadAuthenticationMethod, resp.Packet.Code)
		require.ErrorIs(t, resp.Err, scramauth.ErrChannelBinding)
	})
	t.Run("removed_user_cannot_reauthenticate", func(t *testing.T) {
		f := testUsers()
		users, err := scramauth.NewUsers(f)
		require.NoError(t, err)
		var cur = users
		store := scramauth.StoreFunc(func(m scramauth.Mechanism, u string) (scramauth.Credential, bool) { return cur.Lookup(m, u) })
		r := newRig(t, newAuthenticator(t, scramauth.Config{Store: store}))
		fullConnect(t, r, scramauth.SHA256, "bob", "hunter2")
		cur, err = scramauth.NewUsers(&scramauth.File{Users: f.Users[:1]})
		require.NoError(t, err)
		conv := newConv(t, scramauth.SHA256, "bob", "hunter2")
		s1 := requireChallenge(t, r.auth(auth.ReAuthenticate, scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, step(t, conv, s1))
		require.Equal(t, auth.DISCONNECT, resp.Packet.Type)
		require.ErrorIs(t, resp.Err, scramauth.ErrUnknownUser)
	})
}

// TestExchangeTimeout: a client that leaves the server-first-message
// unanswered is ended by the Session after Config.ExchangeTimeout.
func TestExchangeTimeout(t *testing.T) {
	t.Run("connect_CONNACK_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		conv := newConv(t, scramauth.SHA256, "alice", "pencil")
		requireChallenge(t, r.connect(scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		r.clock.Advance(exchangeTimeout - 1)
		_, closed := r.conn.Final()
		require.False(t, closed)
		r.clock.Advance(1)
		final, closed := r.conn.Final()
		require.True(t, closed)
		require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized}, final)
		require.True(t, r.s.Closed())
		// The late answer finds the session closed.
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, "c=biws,r=x,p=AAAA")
		require.ErrorIs(t, resp.Err, auth.ErrClosed)
	})
	t.Run("reauth_DISCONNECT_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		fullConnect(t, r, scramauth.SHA256, "alice", "pencil")
		conv := newConv(t, scramauth.SHA256, "alice", "pencil")
		requireChallenge(t, r.auth(auth.ReAuthenticate, scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		r.clock.Advance(exchangeTimeout)
		final, closed := r.conn.Final()
		require.True(t, closed)
		require.Equal(t, auth.Packet{Type: auth.DISCONNECT, Code: auth.NotAuthorized, Reason: "re-authentication timed out"}, final)
		require.Nil(t, r.s.Principal())
		require.Zero(t, r.m.Len())
	})
}

// TestCheckStore: after a users file change, Recheck disconnects exactly the
// sessions of removed users.
func TestCheckStore(t *testing.T) {
	a := newAuthenticator(t, scramauth.Config{})
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Logger: newLogger(new(bytes.Buffer))})
	require.NoError(t, err)
	type conn struct {
		r    *rig
		user string
	}
	var conns []conn
	for _, u := range []struct{ name, pass string }{{"alice", "pencil"}, {"bob", "hunter2"}} {
		r := newRig(t, a)
		r.m = m
		r.s = m.NewSession(r.conn)
		t.Cleanup(r.s.Close)
		fullConnect(t, r, scramauth.SHA256, u.name, u.pass)
		conns = append(conns, conn{r, u.name})
	}
	f := testUsers()
	without, err := scramauth.NewUsers(&scramauth.File{Users: []scramauth.User{f.Users[0]}}) // bob removed
	require.NoError(t, err)
	rep := m.Recheck(ctx, scramauth.CheckStore(without))
	require.Equal(t, auth.RecheckReport{Checked: 2, Disconnected: 1}, rep)
	_, aliceClosed := conns[0].r.conn.Final()
	require.False(t, aliceClosed)
	final, bobClosed := conns[1].r.conn.Final()
	require.True(t, bobClosed)
	require.Equal(t, auth.Packet{Type: auth.DISCONNECT, Code: auth.NotAuthorized, Reason: "access revoked"}, final)
}
