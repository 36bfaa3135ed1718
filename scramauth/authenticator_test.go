package scramauth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/scramauth"
)

func TestConnect(t *testing.T) {
	for _, mech := range scramauth.Mechanisms {
		t.Run("full_exchange_"+string(mech), func(t *testing.T) {
			r := newRig(t, newAuthenticator(t, scramauth.Config{}))
			fullConnect(t, r, mech, "alice", "pencil")
			p := r.s.Principal()
			require.NotNil(t, p)
			require.Equal(t, "alice", p.Username())
			require.Equal(t, string(mech), p.Method())
			require.Equal(t, "client-1", p.ClientID())
			g, ok := p.Attribute("group")
			require.True(t, ok)
			require.Equal(t, "thermostats", g)
			require.Equal(t, 1, r.m.Len())
			require.Zero(t, r.clock.Pending(), "no stall timer left after the exchange")
		})
	}
	t.Run("user_name_with_escapes", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		fullConnect(t, r, scramauth.SHA256, "carol,=x", "s3cret")
		require.Equal(t, "carol,=x", r.s.Principal().Username())
	})
	t.Run("gs2_flag_y_accepted", func(t *testing.T) {
		// "y": the client supports channel binding and sees that the server
		// does not advertise it, which is true.
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		c, err := hashOf(scramauth.SHA256).NewClient("alice", "pencil", "")
		require.NoError(t, err)
		conv := c.NewConversationAdvertisingChannelBinding()
		c1 := step(t, conv, "")
		require.True(t, strings.HasPrefix(c1, "y,,"))
		s1 := requireChallenge(t, r.connect(scramauth.SHA256, c1), scramauth.SHA256)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, step(t, conv, s1))
		require.Equal(t, auth.Success, resp.Packet.Code)
		step(t, conv, string(resp.Packet.Data))
		require.True(t, conv.Valid())
	})
	t.Run("authzid_equal_to_user_accepted", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		c, err := hashOf(scramauth.SHA256).NewClient("alice", "pencil", "alice")
		require.NoError(t, err)
		conv := c.NewConversation()
		s1 := requireChallenge(t, r.connect(scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, step(t, conv, s1))
		require.Equal(t, auth.Success, resp.Packet.Code)
	})
	t.Run("mechanism_subset", func(t *testing.T) {
		// Only SCRAM-SHA-512 configured: SCRAM-SHA-256 is nobody's method,
		// which the Session answers with 0x8C [MQTT-4.12.0-1].
		r := newRig(t, newAuthenticator(t, scramauth.Config{Mechanisms: []scramauth.Mechanism{scramauth.SHA512}}))
		conv := newConv(t, scramauth.SHA256, "alice", "pencil")
		resp := r.connect(scramauth.SHA256, step(t, conv, ""))
		require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.BadAuthenticationMethod}, resp.Packet)
		require.ErrorIs(t, resp.Err, auth.ErrBadMethod)
	})
}

// TestConnectFailures: every failure ends the connection with the code the
// package documents, and never with a Pass.
func TestConnectFailures(t *testing.T) {
	t.Run("wrong_password_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		conv := newConv(t, scramauth.SHA256, "alice", "wrong")
		s1 := requireChallenge(t, r.connect(scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, step(t, conv, s1))
		require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized}, resp.Packet)
		require.True(t, resp.Close)
		require.ErrorIs(t, resp.Err, scramauth.ErrInvalidProof)
		require.NotErrorIs(t, resp.Err, scramauth.ErrUnknownUser)
		require.Nil(t, r.s.Principal())
		require.Zero(t, r.m.Len())
		require.NotContains(t, r.logs.String(), "wrong")
	})
	t.Run("tampered_proof_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		conv := newConv(t, scramauth.SHA512, "alice", "pencil")
		s1 := requireChallenge(t, r.connect(scramauth.SHA512, step(t, conv, "")), scramauth.SHA512)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA512, tamper(t, step(t, conv, s1)))
		require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized}, resp.Packet)
		require.ErrorIs(t, resp.Err, scramauth.ErrInvalidProof)
	})
	t.Run("tampered_nonce_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		conv := newConv(t, scramauth.SHA256, "alice", "pencil")
		c1 := step(t, conv, "")
		s1 := requireChallenge(t, r.connect(scramauth.SHA256, c1), scramauth.SHA256)
		c2 := step(t, conv, s1)
		// Keep the client's part, change the server's.
		nonce, _ := serverNonce(s1)
		last := "x"
		if strings.HasSuffix(nonce, last) { // 1 run in 64 without this
			last = "y"
		}
		tampered := nonce[:len(nonce)-1] + last
		require.NotEqual(t, nonce, tampered)
		c2 = strings.Replace(c2, nonce, tampered, 1)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, c2)
		require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
		require.ErrorIs(t, resp.Err, scramauth.ErrNonce)
	})
	t.Run("replayed_client_final_0x87", func(t *testing.T) {
		// An eavesdropper replays a whole successful exchange: the same
		// client-first (same client nonce) gets a fresh server nonce, so
		// the recorded client-final-message no longer matches.
		a := newAuthenticator(t, scramauth.Config{})
		victim := newRig(t, a)
		conv := newConv(t, scramauth.SHA256, "alice", "pencil")
		c1 := step(t, conv, "")
		s1 := requireChallenge(t, victim.connect(scramauth.SHA256, c1), scramauth.SHA256)
		c2 := step(t, conv, s1)
		require.Equal(t, auth.Success, victim.auth(auth.ContinueAuthentication, scramauth.SHA256, c2).Packet.Code)

		attacker := newRig(t, a)
		s1b := requireChallenge(t, attacker.connect(scramauth.SHA256, c1), scramauth.SHA256)
		require.NotEqual(t, s1, s1b, "the server nonce is fresh per exchange")
		resp := attacker.auth(auth.ContinueAuthentication, scramauth.SHA256, c2)
		require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized}, resp.Packet)
		require.ErrorIs(t, resp.Err, scramauth.ErrNonce)
	})
	t.Run("channel_binding_requested_0x8C", func(t *testing.T) {
		for _, c1 := range []string{
			"p=tls-exporter,,n=alice,r=abcdef",
			"p=tls-server-end-point,,n=alice,r=abcdef",
			"p=made-up,,n=alice,r=abcdef",
		} {
			r := newRig(t, newAuthenticator(t, scramauth.Config{}))
			resp := r.connect(scramauth.SHA256, c1)
			require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.BadAuthenticationMethod}, resp.Packet, c1)
			require.True(t, resp.Close)
			require.ErrorIs(t, resp.Err, scramauth.ErrChannelBinding)
		}
	})
	t.Run("authzid_other_user_0x87", func(t *testing.T) {
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		c, err := hashOf(scramauth.SHA256).NewClient("bob", "hunter2", "alice")
		require.NoError(t, err)
		resp := r.connect(scramauth.SHA256, step(t, c.NewConversation(), ""))
		require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized}, resp.Packet)
		require.ErrorIs(t, resp.Err, scramauth.ErrAuthzID)
	})
	t.Run("mechanism_the_user_lacks_fails_like_unknown", func(t *testing.T) {
		// bob has only a SCRAM-SHA-256 credential.
		r := newRig(t, newAuthenticator(t, scramauth.Config{}))
		conv := newConv(t, scramauth.SHA512, "bob", "hunter2")
		s1 := requireChallenge(t, r.connect(scramauth.SHA512, step(t, conv, "")), scramauth.SHA512)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA512, step(t, conv, s1))
		require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
		require.ErrorIs(t, resp.Err, scramauth.ErrUnknownUser)
	})
	t.Run("invalid_stored_credential_is_unavailable_0x88", func(t *testing.T) {
		store := scramauth.StoreFunc(func(scramauth.Mechanism, string) (scramauth.Credential, bool) {
			return scramauth.Credential{Salt: []byte("12345678"), Iterations: 1, StoredKey: make([]byte, 32), ServerKey: make([]byte, 32)}, true
		})
		r := newRig(t, newAuthenticator(t, scramauth.Config{Store: store}))
		resp := r.connect(scramauth.SHA256, step(t, newConv(t, scramauth.SHA256, "alice", "pencil"), ""))
		require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.ServerUnavailable}, resp.Packet)
		require.ErrorIs(t, resp.Err, scramauth.ErrInvalidCredential)
	})
}

// serverNonce returns the server's part of the nonce and the whole nonce.
func serverNonce(s1 string) (whole string, ok bool) {
	r, ok := strings.CutPrefix(s1, "r=")
	if !ok {
		return "", false
	}
	whole, _, ok = strings.Cut(r, ",")
	return whole, ok
}

// TestUnknownUser: an unknown user gets a reply of the same shape as a real
// user, with a salt that is stable per name, and fails exactly like a wrong
// password.
func TestUnknownUser(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	a := newAuthenticator(t, scramauth.Config{UnknownUserKey: key})

	serverFirst := func(a *scramauth.Authenticator, mech scramauth.Mechanism, user string) (salt []byte, iters string, r *rig, conv any) {
		t.Helper()
		r = newRig(t, a)
		cc := newConv(t, mech, user, "guess")
		s1 := requireChallenge(t, r.connect(mech, step(t, cc, "")), mech)
		f := strings.Split(s1, ",")
		require.Len(t, f, 3, s1)
		require.True(t, strings.HasPrefix(f[1], "s="))
		require.True(t, strings.HasPrefix(f[2], "i="))
		salt, err := base64.StdEncoding.DecodeString(f[1][2:])
		require.NoError(t, err)
		return salt, f[2], r, cc
	}

	realSalt, realIters, _, _ := serverFirst(a, scramauth.SHA256, "alice")
	fakeSalt, fakeIters, _, _ := serverFirst(a, scramauth.SHA256, "mallory")
	require.Len(t, fakeSalt, len(realSalt), "same salt length as a real credential")
	require.Equal(t, realIters, fakeIters, "same iteration count as a real credential")

	again, _, _, _ := serverFirst(a, scramauth.SHA256, "mallory")
	require.Equal(t, fakeSalt, again, "the fake salt is stable per user name")
	other, _, _, _ := serverFirst(a, scramauth.SHA256, "trudy")
	require.NotEqual(t, fakeSalt, other, "and differs between names")
	sha512Salt, _, _, _ := serverFirst(a, scramauth.SHA512, "mallory")
	require.NotEqual(t, fakeSalt, sha512Salt, "and between mechanisms")
	otherNode := newAuthenticator(t, scramauth.Config{UnknownUserKey: key})
	fromNode, _, _, _ := serverFirst(otherNode, scramauth.SHA256, "mallory")
	require.Equal(t, fakeSalt, fromNode, "nodes sharing the key answer alike")
	otherKey := newAuthenticator(t, scramauth.Config{UnknownUserKey: []byte("another key, also 32 bytes long!")})
	fromOtherKey, _, _, _ := serverFirst(otherKey, scramauth.SHA256, "mallory")
	require.NotEqual(t, fakeSalt, fromOtherKey)

	// The failure: same packet, same code, same place as a wrong password.
	fail := func(user, pass string) auth.Response {
		r := newRig(t, a)
		conv := newConv(t, scramauth.SHA256, user, pass)
		s1 := requireChallenge(t, r.connect(scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		return r.auth(auth.ContinueAuthentication, scramauth.SHA256, step(t, conv, s1))
	}
	unknown := fail("mallory", "pencil")
	wrong := fail("alice", "guess")
	require.Equal(t, wrong.Packet, unknown.Packet)
	require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized}, unknown.Packet)
	require.Equal(t, wrong.Close, unknown.Close)
	require.ErrorIs(t, unknown.Err, scramauth.ErrInvalidProof)
	require.ErrorIs(t, unknown.Err, scramauth.ErrUnknownUser, "only the server's log tells them apart")

	t.Run("iterations_configurable", func(t *testing.T) {
		a := newAuthenticator(t, scramauth.Config{UnknownUserIterations: 10000})
		_, iters, _, _ := serverFirst(a, scramauth.SHA256, "mallory")
		require.Equal(t, "i=10000", iters)
	})
}

// TestMalformed: garbage and messages at the wrong step end the exchange with
// 0x87 and never panic.
func TestMalformed(t *testing.T) {
	valid := func(t *testing.T) string { return step(t, newConv(t, scramauth.SHA256, "alice", "pencil"), "") }
	atConnect := []struct {
		name string
		data string
		want error
	}{
		{"empty", "", scramauth.ErrMalformed},
		{"client_final_at_step_0", "c=biws,r=abcdef,p=dGVzdA==", scramauth.ErrMalformed},
		{"binary_garbage", "\x00\xff\xfe,,,", scramauth.ErrMalformed},
		{"not_utf8", "n,,n=\xff\xfe,r=abc", scramauth.ErrMalformed},
		{"no_user", "n,,r=abc,n=alice", scramauth.ErrMalformed},
		{"empty_user", "n,,n=,r=abc", scramauth.ErrMalformed},
		{"bad_escape", "n,,n=al=ice,r=abc", scramauth.ErrMalformed},
		{"empty_nonce", "n,,n=alice,r=", scramauth.ErrMalformed},
		{"nonce_with_space", "n,,n=alice,r=ab c", scramauth.ErrMalformed},
		{"mandatory_extension", "n,,m=ext,n=alice,r=abc", scramauth.ErrMalformed},
		{"bad_gs2_flag", "x,,n=alice,r=abc", scramauth.ErrMalformed},
		{"bad_authzid", "n,b=alice,n=alice,r=abc", scramauth.ErrMalformed},
		{"too_few_fields", "n,,n=alice", scramauth.ErrMalformed},
		{"bad_extension", "n,,n=alice,r=abc,!!", scramauth.ErrMalformed},
		{"huge", "n,,n=alice,r=" + strings.Repeat("a", 5000), scramauth.ErrMalformed},
	}
	for _, tc := range atConnect {
		t.Run("connect/"+tc.name, func(t *testing.T) {
			r := newRig(t, newAuthenticator(t, scramauth.Config{}))
			resp := r.connect(scramauth.SHA256, tc.data)
			if tc.data == "" {
				// No Authentication Data at all: still this method's.
				require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
			}
			require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized}, resp.Packet)
			require.True(t, resp.Close)
			require.ErrorIs(t, resp.Err, tc.want)
			require.NotContains(t, resp.Err.Error(), "alice", "errors do not quote the message")
		})
	}
	atFinal := []struct {
		name string
		data func(t *testing.T, c1, s1, c2 string) string
		want error
	}{
		{"client_first_at_step_1", func(t *testing.T, c1, _, _ string) string { return c1 }, scramauth.ErrMalformed},
		{"fresh_client_first_at_step_1", func(t *testing.T, _, _, _ string) string { return valid(t) }, scramauth.ErrMalformed},
		{"empty", func(*testing.T, string, string, string) string { return "" }, scramauth.ErrMalformed},
		{"garbage", func(*testing.T, string, string, string) string { return "\x00garbage" }, scramauth.ErrMalformed},
		{"no_proof", func(_ *testing.T, _, _, c2 string) string { return c2[:strings.LastIndex(c2, ",")] + ",x=1" }, scramauth.ErrMalformed},
		{"short_proof", func(_ *testing.T, _, _, c2 string) string { return c2[:strings.LastIndex(c2, ",")] + ",p=AAAA" }, scramauth.ErrMalformed},
		{"proof_reencoded_with_CR", func(_ *testing.T, _, _, c2 string) string {
			// encoding/base64 would skip the '\r' and the proof would verify.
			return c2[:len(c2)-4] + "\r" + c2[len(c2)-4:]
		}, scramauth.ErrMalformed},
		{"proof_not_base64", func(_ *testing.T, _, _, c2 string) string { return c2[:strings.LastIndex(c2, ",")] + ",p=!!!!" }, scramauth.ErrMalformed},
		{"wrong_channel_binding_header", func(_ *testing.T, _, _, c2 string) string {
			return strings.Replace(c2, "c=biws", "c="+base64.StdEncoding.EncodeToString([]byte("y,,")), 1)
		}, scramauth.ErrMalformed},
		{"server_first_echoed", func(_ *testing.T, _, s1, _ string) string { return s1 }, scramauth.ErrMalformed},
	}
	for _, tc := range atFinal {
		t.Run("final/"+tc.name, func(t *testing.T) {
			r := newRig(t, newAuthenticator(t, scramauth.Config{}))
			conv := newConv(t, scramauth.SHA256, "alice", "pencil")
			c1 := step(t, conv, "")
			s1 := requireChallenge(t, r.connect(scramauth.SHA256, c1), scramauth.SHA256)
			c2 := step(t, conv, s1)
			resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, tc.data(t, c1, s1, c2))
			require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized}, resp.Packet)
			require.True(t, resp.Close)
			require.ErrorIs(t, resp.Err, tc.want)
			require.Nil(t, r.s.Principal())
		})
	}
}

// TestAuthenticateDirect covers what a Session never sends but another
// caller (a Chain, a broken adapter) might.
func TestAuthenticateDirect(t *testing.T) {
	a := newAuthenticator(t, scramauth.Config{})
	c1 := step(t, newConv(t, scramauth.SHA256, "alice", "pencil"), "")
	t.Run("other_method_not_relevant", func(t *testing.T) {
		for _, m := range []string{"", "K8S-SAT", "SCRAM-SHA-1", "scram-sha-256", "SCRAM-SHA-256-PLUS"} {
			res := a.Authenticate(ctx, &auth.Request{AuthMethod: m, AuthData: []byte(c1)})
			require.Equal(t, auth.Result{}, res, m)
		}
	})
	t.Run("step_1_without_state", func(t *testing.T) {
		for _, st := range []any{nil, "state", (*int)(nil)} {
			res := a.Authenticate(ctx, &auth.Request{AuthMethod: string(scramauth.SHA256), Step: 1, State: st, AuthData: []byte("c=biws,r=x,p=AAAA")})
			require.Equal(t, auth.Fail, res.Outcome)
			require.ErrorIs(t, res.Err, scramauth.ErrOutOfOrder)
		}
	})
	t.Run("state_used_once", func(t *testing.T) {
		conv := newConv(t, scramauth.SHA256, "alice", "pencil")
		res := a.Authenticate(ctx, &auth.Request{AuthMethod: string(scramauth.SHA256), AuthData: []byte(step(t, conv, ""))})
		require.Equal(t, auth.Continue, res.Outcome)
		c2 := step(t, conv, string(res.Data))
		req := &auth.Request{AuthMethod: string(scramauth.SHA256), Step: 1, State: res.State, AuthData: []byte(c2)}
		pass := a.Authenticate(ctx, req)
		require.Equal(t, auth.Pass, pass.Outcome)
		again := a.Authenticate(ctx, req)
		require.Equal(t, auth.Fail, again.Outcome)
		require.ErrorIs(t, again.Err, scramauth.ErrOutOfOrder)
	})
	t.Run("state_of_another_mechanism", func(t *testing.T) {
		res := a.Authenticate(ctx, &auth.Request{AuthMethod: string(scramauth.SHA256), AuthData: []byte(c1)})
		require.Equal(t, auth.Continue, res.Outcome)
		bad := a.Authenticate(ctx, &auth.Request{AuthMethod: string(scramauth.SHA512), Step: 1, State: res.State, AuthData: []byte("c=biws,r=x,p=AAAA")})
		require.ErrorIs(t, bad.Err, scramauth.ErrOutOfOrder)
	})
	t.Run("step_2", func(t *testing.T) {
		res := a.Authenticate(ctx, &auth.Request{AuthMethod: string(scramauth.SHA256), Step: 2})
		require.Equal(t, auth.Fail, res.Outcome)
		require.Equal(t, auth.NotAuthorized, res.Code)
	})
	t.Run("in_a_chain", func(t *testing.T) {
		other := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
			if req.AuthMethod == "OTHER" {
				return auth.FailResult(auth.NotAuthorized, errors.New("other"))
			}
			return auth.Result{}
		})
		r := newRig(t, auth.Chain{other, a})
		fullConnect(t, r, scramauth.SHA256, "alice", "pencil")
		// Re-authentication goes back to the authenticator that passed.
		conv := newConv(t, scramauth.SHA256, "alice", "pencil")
		s1 := requireChallenge(t, r.auth(auth.ReAuthenticate, scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		resp := r.auth(auth.ContinueAuthentication, scramauth.SHA256, step(t, conv, s1))
		require.Equal(t, auth.Packet{Type: auth.AUTH, Code: auth.Success, Method: string(scramauth.SHA256), Data: resp.Packet.Data}, resp.Packet)
	})
}

func TestNew(t *testing.T) {
	users := newUsers(t)
	for _, tc := range []struct {
		name string
		cfg  scramauth.Config
	}{
		{"no_store", scramauth.Config{}},
		{"empty_mechanisms", scramauth.Config{Store: users, Mechanisms: []scramauth.Mechanism{}}},
		{"unknown_mechanism", scramauth.Config{Store: users, Mechanisms: []scramauth.Mechanism{"SCRAM-SHA-1"}}},
		{"short_key", scramauth.Config{Store: users, UnknownUserKey: []byte("short")}},
		{"few_iterations", scramauth.Config{Store: users, UnknownUserIterations: 1000}},
	} {
		t.Run("rejects_"+tc.name, func(t *testing.T) {
			_, err := scramauth.New(tc.cfg)
			require.Error(t, err)
		})
	}
}
