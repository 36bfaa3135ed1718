package auth_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// willPolicy allows Connect, and Publish on "will/" topics while allowWill
// is set.
type willPolicy struct{ allowWill, allowConnect atomic.Bool }

func newWillPolicy() *willPolicy {
	p := &willPolicy{}
	p.allowWill.Store(true)
	p.allowConnect.Store(true)
	return p
}

func (p *willPolicy) Authorize(_ context.Context, pr *auth.Principal, a auth.Action) auth.Decision {
	switch {
	case pr == nil:
		return auth.Deny
	case a.Kind == auth.Connect && p.allowConnect.Load():
		return auth.Allow("connect")
	case a.Kind == auth.Publish && strings.HasPrefix(a.Topic, "will/") && p.allowWill.Load():
		return auth.Allow("will")
	}
	return auth.Deny
}

func TestSessionAuthorizeWill(t *testing.T) {
	ctx := context.Background()
	connect := func(t *testing.T, pol *willPolicy, expiry time.Duration) *harness {
		h := newHarness(t, auth.Config{Authenticator: simple{expiry: expiry}, Authorizer: pol})
		require.Equal(t, auth.Success, h.s.Connect(ctx, connectReq("ONE", "ok")).Packet.Code)
		return h
	}
	t.Run("live_allowed", func(t *testing.T) {
		h := connect(t, newWillPolicy(), 0)
		require.True(t, h.s.AuthorizeWill(ctx, "will/a").Allowed)
		require.False(t, h.s.AuthorizeWill(ctx, "other/a").Allowed)
	})
	t.Run("connection_ended_keeps_principal", func(t *testing.T) {
		h := connect(t, newWillPolicy(), 0)
		h.s.Close() // the network connection ended: [MQTT-3.1.2-8] the Will is published
		require.True(t, h.s.AuthorizeWill(ctx, "will/a").Allowed)
	})
	t.Run("policy_reloaded_after_connect", func(t *testing.T) {
		pol := newWillPolicy()
		h := connect(t, pol, 0)
		require.True(t, h.s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "will/a"}).Allowed)
		pol.allowWill.Store(false) // a reload removed the right
		h.s.Close()
		require.False(t, h.s.AuthorizeWill(ctx, "will/a").Allowed)
	})
	t.Run("lost_connect", func(t *testing.T) {
		pol := newWillPolicy()
		h := connect(t, pol, 0)
		h.s.Close()
		pol.allowConnect.Store(false)
		require.False(t, h.s.AuthorizeWill(ctx, "will/a").Allowed)
	})
	t.Run("expired_session", func(t *testing.T) {
		h := connect(t, newWillPolicy(), time.Minute)
		h.clock.Advance(time.Minute)
		_, closed := h.conn.Final()
		require.True(t, closed, "the expiry ended the session")
		require.False(t, h.s.AuthorizeWill(ctx, "will/a").Allowed)
	})
	t.Run("revoked_session", func(t *testing.T) {
		pol := newWillPolicy()
		h := connect(t, pol, 0)
		pol.allowConnect.Store(false)
		rep := h.mgr.Recheck(ctx, auth.CheckConnect(pol))
		require.Equal(t, 1, rep.Disconnected)
		pol.allowConnect.Store(true) // even if access came back, that session was revoked
		require.False(t, h.s.AuthorizeWill(ctx, "will/a").Allowed)
	})
	t.Run("never_connected", func(t *testing.T) {
		h := newHarness(t, auth.Config{Authorizer: newWillPolicy()})
		require.False(t, h.s.AuthorizeWill(ctx, "will/a").Allowed)
	})
}

func TestSessionReauthRate(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, auth.Config{Authenticator: simple{}, ReauthInterval: time.Second, ReauthBurst: 3})
	require.Equal(t, auth.Success, h.s.Connect(ctx, connectReq("ONE", "ok")).Packet.Code)
	for i := range 3 {
		r := h.s.Auth(ctx, authPkt(auth.ReAuthenticate, "ONE", "ok"))
		require.Equal(t, auth.Success, r.Packet.Code, "re-authentication %d of the burst", i)
	}
	h.clock.Advance(time.Second) // one token back
	require.Equal(t, auth.Success, h.s.Auth(ctx, authPkt(auth.ReAuthenticate, "ONE", "ok")).Packet.Code)
	r := h.s.Auth(ctx, authPkt(auth.ReAuthenticate, "ONE", "ok"))
	require.True(t, r.Close)
	require.Equal(t, auth.DISCONNECT, r.Packet.Type)
	require.Equal(t, auth.MessageRateTooHigh, r.Packet.Code)
	require.ErrorIs(t, r.Err, auth.ErrReauthRate)
	require.Nil(t, h.s.Principal())
	// A client that re-authenticated too often had a valid principal: its
	// Will is still judged by policy.
	require.True(t, h.s.AuthorizeWill(ctx, "any").Allowed)
}

func TestSessionReauthRateDefault(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, auth.Config{Authenticator: simple{}})
	require.Equal(t, auth.Success, h.s.Connect(ctx, connectReq("ONE", "ok")).Packet.Code)
	n := 0
	for ; n < 100; n++ {
		if r := h.s.Auth(ctx, authPkt(auth.ReAuthenticate, "ONE", "ok")); r.Close {
			require.Equal(t, auth.MessageRateTooHigh, r.Packet.Code)
			break
		}
	}
	require.Equal(t, auth.DefaultReauthBurst, n, "re-authentications allowed at once by default")
}
