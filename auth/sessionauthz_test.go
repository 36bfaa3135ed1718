package auth_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// perSession is a SessionAuthorizer whose sessions' authorizers count the
// calls they answer and the Resets they get.
type perSession struct {
	made   atomic.Int32
	shared atomic.Int32 // calls answered by the parent itself
	last   *sessionAuthz
}

func (p *perSession) Authorize(context.Context, *auth.Principal, auth.Action) auth.Decision {
	p.shared.Add(1)
	return auth.Allow("parent")
}

func (p *perSession) NewSessionAuthorizer() auth.Authorizer {
	p.made.Add(1)
	p.last = &sessionAuthz{}
	return p.last
}

type sessionAuthz struct{ calls, resets atomic.Int32 }

func (s *sessionAuthz) Authorize(_ context.Context, p *auth.Principal, _ auth.Action) auth.Decision {
	s.calls.Add(1)
	if p == nil {
		return auth.Deny
	}
	return auth.Allow("session")
}

func (s *sessionAuthz) Reset() { s.resets.Add(1) }

// TestSessionAuthorizer: a SessionAuthorizer gives each Session its own
// Authorizer, which Session.Authorize asks; it is reset after a
// re-authentication and after a re-check that keeps the session.
func TestSessionAuthorizer(t *testing.T) {
	pa := &perSession{}
	h := newHarness(t, auth.Config{Authorizer: pa})
	require.Equal(t, int32(1), pa.made.Load(), "one authorizer per session")
	own := pa.last
	require.Same(t, own, h.s.Authorizer())

	r := h.s.Connect(context.Background(), connectReq("ONE", "ok"))
	require.Equal(t, auth.Success, r.Packet.Code)
	d := h.s.Authorize(context.Background(), auth.Action{Kind: auth.Publish, Topic: "a"})
	require.Equal(t, "session", d.Rule)
	require.Equal(t, int32(1), own.calls.Load())

	r = h.s.Auth(context.Background(), authPkt(auth.ReAuthenticate, "ONE", "ok"))
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, int32(1), own.resets.Load(), "re-authentication resets the session's authorizer")

	rep := h.mgr.Recheck(context.Background(), func(context.Context, *auth.Session) error { return nil })
	require.Equal(t, 1, rep.Checked)
	require.Equal(t, int32(2), own.resets.Load(), "a re-check resets the session's authorizer")

	other := h.mgr.NewSession(nil)
	defer other.Close()
	require.NotSame(t, own, other.Authorizer(), "sessions share no per-session authorizer")
}

// TestSharedAuthorizer: an Authorizer that is not a SessionAuthorizer is
// the one every Session asks.
func TestSharedAuthorizer(t *testing.T) {
	h := newHarness(t, auth.Config{})
	require.NotNil(t, h.s.Authorizer())
	r := h.s.Connect(context.Background(), connectReq("ONE", "ok"))
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, "AllowAuthenticated", h.s.Authorize(context.Background(), auth.Action{Kind: auth.Subscribe, Topic: "a"}).Rule)
}
