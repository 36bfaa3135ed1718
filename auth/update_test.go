package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// Session.Update: an authenticator that learns new attributes of a live
// identity replaces its principal without an exchange with the client.
func TestSessionUpdate(t *testing.T) {
	denyGroupX := auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if p == nil {
			return auth.Deny
		}
		if g, _ := p.Attribute("group"); g == "x" {
			return auth.Deny
		}
		return auth.Allow("group:" + func() string { g, _ := p.Attribute("group"); return g }())
	})
	with := func(p *auth.Principal, group string, user string, expiry time.Time) *auth.Principal {
		info := p.Info()
		info.Attributes = map[string]string{"group": group}
		if user != "" {
			info.Username = user
		}
		if !expiry.IsZero() {
			info.Expiry = expiry
		}
		return auth.NewPrincipal(info)
	}
	for _, tc := range []struct {
		name      string
		next      func(h *harness, cur *auth.Principal) (old, p *auth.Principal)
		wantErr   error
		replaced  bool
		recheckDC bool // a Recheck returning the error disconnects
	}{
		{name: "new_attributes_replace_the_principal", replaced: true,
			next: func(_ *harness, cur *auth.Principal) (*auth.Principal, *auth.Principal) {
				return cur, with(cur, "b", "", time.Time{})
			}},
		{name: "connect_denied_keeps_the_principal_and_disconnects_on_recheck", wantErr: auth.ErrRevoked, recheckDC: true,
			next: func(_ *harness, cur *auth.Principal) (*auth.Principal, *auth.Principal) {
				return cur, with(cur, "x", "", time.Time{})
			}},
		{name: "another_user_name_is_refused", wantErr: auth.ErrIdentityChanged, recheckDC: true,
			next: func(_ *harness, cur *auth.Principal) (*auth.Principal, *auth.Principal) {
				return cur, with(cur, "b", "mallory", time.Time{})
			}},
		{name: "expired_is_refused", wantErr: auth.ErrExpired, recheckDC: true,
			next: func(h *harness, cur *auth.Principal) (*auth.Principal, *auth.Principal) {
				return cur, with(cur, "b", "", h.clock.Now().Add(-time.Second))
			}},
		{name: "stale_old_changes_nothing",
			next: func(_ *harness, cur *auth.Principal) (*auth.Principal, *auth.Principal) {
				return with(cur, "a", "", time.Time{}), with(cur, "b", "", time.Time{})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, auth.Config{Authorizer: denyGroupX, Authenticator: twoStep{expiry: time.Hour}})
			r := h.s.Connect(context.Background(), connectReq("TWO", "hello"))
			r = h.s.Auth(context.Background(), authPkt(auth.ContinueAuthentication, "TWO", "answer-1"))
			require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
			cur := h.s.Principal()
			old, p := tc.next(h, cur)
			err := h.s.Update(context.Background(), old, p)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			if tc.replaced {
				require.Same(t, p, h.s.Principal())
				d := h.s.Authorize(context.Background(), auth.Action{Kind: auth.Publish, Topic: "t"})
				require.Equal(t, "group:b", d.Rule, "publishes are authorized with the new attributes")
			} else {
				require.Same(t, cur, h.s.Principal())
			}
			if tc.recheckDC {
				rep := h.mgr.Recheck(context.Background(), func(ctx context.Context, s *auth.Session) error {
					return s.Update(ctx, s.Principal(), p)
				})
				require.Equal(t, auth.RecheckReport{Checked: 1, Disconnected: 1}, rep)
				final, closed := h.conn.Final()
				require.True(t, closed)
				require.Equal(t, auth.DISCONNECT, final.Type)
			}
			// The expiry timer of the session still ends it.
			if !h.s.Closed() {
				h.clock.Advance(2 * time.Hour)
				require.True(t, h.s.Closed())
			}
			h.s.Close()
			require.NoError(t, h.s.Update(context.Background(), h.s.Principal(), p), "a closed session is not updated")
		})
	}
}
