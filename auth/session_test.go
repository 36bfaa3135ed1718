package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// step is one input to a Session and what must come out.
type step struct {
	connect *auth.Request // CONNECT
	auth    *auth.Packet  // AUTH from the client
	other   bool          // another packet from the client
	advance time.Duration // move the fake clock
	want    auth.Packet   // the packet to send (Type None: nothing)
	close   bool          // the response closes the connection
	errIs   error         // the response's error matches
	final   *auth.Packet  // after advance: what the Session sent through Conn
	user    string        // after the step: the principal's user name ("-" none)
}

func connect(method, data string) *auth.Request { return connectReq(method, data) }
func authp(code auth.ReasonCode, method, data string) *auth.Packet {
	p := authPkt(code, method, data)
	return &p
}

var (
	connackOK = auth.Packet{Type: auth.CONNACK, Code: auth.Success}
	noPacket  = auth.Packet{}
)

func connack(code auth.ReasonCode) auth.Packet { return auth.Packet{Type: auth.CONNACK, Code: code} }
func disconnect(code auth.ReasonCode) auth.Packet {
	return auth.Packet{Type: auth.DISCONNECT, Code: code}
}

// reauthFailed is the DISCONNECT of a failed re-authentication.
func reauthFailed(code auth.ReasonCode) auth.Packet {
	return auth.Packet{Type: auth.DISCONNECT, Code: code, Reason: "re-authentication failed"}
}
func authOut(code auth.ReasonCode, method, data string) auth.Packet {
	p := auth.Packet{Type: auth.AUTH, Code: code, Method: method}
	if data != "" {
		p.Data = []byte(data)
	}
	return p
}

// The normative statements of MQTT 5.0 on enhanced authentication, walked
// through a Session with a fake clock.
func TestSession(t *testing.T) {
	twoOK := []step{
		{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
		{auth: authp(0x18, "TWO", "answer-1"), want: auth.Packet{Type: auth.CONNACK, Code: 0, Method: "TWO", Data: []byte("server-final")}, user: "alice"},
	}
	oneOK := []step{{connect: connect("ONE", "ok"), want: auth.Packet{Type: auth.CONNACK, Method: "ONE"}, user: "alice"}}
	cases := []struct {
		name  string
		cfg   auth.Config
		steps []step
	}{
		{"no_method/password_pass", auth.Config{}, []step{
			{connect: &auth.Request{ClientID: "c", Username: "alice", HasUsername: true, Password: []byte("secret"), HasPassword: true}, want: connackOK, user: "alice"},
		}},
		{"no_method/password_fail_0x86", auth.Config{}, []step{
			{connect: &auth.Request{ClientID: "c", Username: "alice", HasUsername: true, Password: []byte("wrong"), HasPassword: true}, want: connack(0x86), close: true, user: "-"},
		}},
		{"no_method/nothing_relevant_0x87", auth.Config{}, []step{
			{connect: &auth.Request{ClientID: "c"}, want: connack(0x87), close: true, errIs: auth.ErrNoRelevant},
		}},
		{"4.12.0-1/unsupported_method_0x8C", auth.Config{}, []step{
			{connect: connect("KERBEROS", "x"), want: connack(0x8C), close: true, errIs: auth.ErrBadMethod},
			{auth: authp(0x18, "KERBEROS", "x"), want: noPacket, close: true, errIs: auth.ErrClosed},
		}},
		{"4.12.0-2,3,5/two_round_exchange_then_connack_with_method", auth.Config{}, twoOK},
		// A certificate (or any other credential) must not stand in for
		// the method the client named: no echo of a method that never ran.
		{"4.12.0-1/certificate_stands_in_for_named_method_0x8C", auth.Config{Authenticator: auth.Chain{certificate}}, []step{
			{connect: connect("SCRAM-SHA-256", "n,,n=user,r=nonce"), want: connack(0x8C), close: true, errIs: auth.ErrBadMethod, user: "-"},
		}},
		{"4.12.0-1/made_up_method_with_certificate_0x8C", auth.Config{Authenticator: auth.Chain{certificate, simple{}}}, []step{
			{connect: connect("MADE-UP", ""), want: connack(0x8C), close: true, errIs: auth.ErrBadMethod, user: "-"},
		}},
		{"4.12.0-1/stand_in_first_in_chain_refused_not_echoed", auth.Config{Authenticator: auth.Chain{certificate, twoStep{}}}, []step{
			{connect: connect("TWO", "hello"), want: connack(0x8C), close: true, errIs: auth.ErrBadMethod, user: "-"},
		}},
		{"4.12.0-1/named_method_after_certificate_runs", auth.Config{Authenticator: auth.Chain{twoStep{}, certificate}}, twoOK},
		{"4.12.0-1/no_method_certificate_passes", auth.Config{Authenticator: auth.Chain{twoStep{}, certificate}}, []step{
			{connect: &auth.Request{ClientID: "c"}, want: connackOK, user: "device"},
		}},
		{"4.12.1-1/reauth_stand_in_0x8C", auth.Config{Authenticator: standInAtReauth}, []step{
			{connect: connect("ONE", "ok"), want: auth.Packet{Type: auth.CONNACK, Method: "ONE"}, user: "alice"},
			{auth: authp(0x19, "ONE", "garbage"), want: reauthFailed(0x8C), close: true, errIs: auth.ErrBadMethod, user: "-"},
		}},
		{"4.12.0-4/reject_during_exchange_closes", auth.Config{}, []step{
			{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			{auth: authp(0x18, "TWO", "wrong"), want: connack(0x87), close: true},
			{auth: authp(0x18, "TWO", "answer-1"), close: true, errIs: auth.ErrClosed, user: "-"},
		}},
		{"4.12.0-4/fail_code_kept_at_connect", auth.Config{}, []step{
			{connect: connect("ONE", "\x8a"), want: connack(0x8A), close: true},
		}},
		{"4.12.0-4/invalid_connack_code_becomes_0x87", auth.Config{}, []step{
			{connect: connect("ONE", "\xa0"), want: connack(0x87), close: true},
		}},
		{"4.12.0-6/auth_without_method_after_connack", auth.Config{}, []step{
			{connect: &auth.Request{ClientID: "c", Username: "alice", HasUsername: true, Password: []byte("secret"), HasPassword: true}, want: connackOK},
			{auth: authp(0x19, "ONE", "ok"), want: disconnect(0x82), close: true, errIs: auth.ErrProtocol},
		}},
		{"4.12.0-7/other_method_before_connack_0x8C", auth.Config{}, []step{
			{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			{auth: authp(0x18, "ONE", "answer-1"), want: connack(0x8C), close: true, errIs: auth.ErrBadMethod},
		}},
		{"4.12.0-7/other_method_at_reauth_0x8C", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "TWO", "hello"), want: disconnect(0x8C), close: true, errIs: auth.ErrBadMethod, user: "-"},
		)},
		{"4.12.1-1/reauth_single_step", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "ok:alice"), want: authOut(0x00, "ONE", ""), user: "alice"},
		)},
		{"4.12.1-1/reauth_two_rounds", auth.Config{}, append(twoOK[:2:2],
			step{auth: authp(0x19, "TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1"), user: "alice"},
			step{auth: authp(0x18, "TWO", "answer-1"), want: authOut(0x00, "TWO", "server-final"), user: "alice"},
		)},
		{"4.12.1-2/reauth_fail_disconnect_0x87", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "bad"), want: reauthFailed(0x87), close: true, user: "-"},
		)},
		{"4.12.1-2/reauth_fail_0x86_becomes_0x87", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "\x86"), want: reauthFailed(0x87), close: true},
		)},
		{"4.12.1-2/reauth_fail_keeps_disconnect_code", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "\x8a"), want: reauthFailed(0x87), close: true}, // 0x8A is CONNACK only
		)},
		{"3.15.2-1/reauth_before_connack", auth.Config{}, []step{
			{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			{auth: authp(0x19, "TWO", "hello"), want: connack(0x82), close: true, errIs: auth.ErrProtocol},
		}},
		{"3.15.2-1/client_may_not_send_0x00", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x00, "ONE", ""), want: disconnect(0x82), close: true, errIs: auth.ErrProtocol},
		)},
		{"3.15.2-1/undefined_reason_code_0x81", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x05, "ONE", ""), want: disconnect(0x81), close: true, errIs: auth.ErrProtocol},
		)},
		{"3.15/continue_without_exchange", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x18, "ONE", "ok"), want: disconnect(0x82), close: true, errIs: auth.ErrProtocol},
		)},
		{"3.15/one_reauth_at_a_time", auth.Config{}, append(twoOK[:2:2],
			step{auth: authp(0x19, "TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			step{auth: authp(0x19, "TWO", "hello"), want: disconnect(0x82), close: true, errIs: auth.ErrProtocol},
		)},
		{"4.13.1-1/protocol_error_closes_with_0x82", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x18, "ONE", "ok"), want: disconnect(0x82), close: true, errIs: auth.ErrProtocol, user: "-"},
			step{other: true, close: true, errIs: auth.ErrClosed},
		)},
		{"4.13.2-1/failure_connack_closes_and_nothing_follows", auth.Config{}, []step{
			{connect: connect("ONE", "bad"), want: connack(0x87), close: true},
			{other: true, close: true, errIs: auth.ErrClosed},
			{advance: time.Hour},
		}},
		{"3.1.2-30/other_packet_before_connack", auth.Config{}, []step{
			{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			{other: true, want: connack(0x82), close: true, errIs: auth.ErrProtocol},
		}},
		{"3.1.2-30/other_packet_after_connack_is_fine", auth.Config{}, append(oneOK[:1:1],
			step{other: true, want: noPacket, user: "alice"},
		)},
		{"3.1.0-1/auth_before_connect", auth.Config{}, []step{
			{auth: authp(0x18, "ONE", "ok"), want: noPacket, close: true, errIs: auth.ErrProtocol},
			{connect: connect("ONE", "ok"), close: true, errIs: auth.ErrClosed, user: "-"},
		}},
		{"3.1.0-1/packet_before_connect", auth.Config{}, []step{
			{other: true, want: noPacket, close: true, errIs: auth.ErrProtocol},
		}},
		{"3.1.0-2/second_connect", auth.Config{}, append(oneOK[:1:1],
			step{connect: connect("ONE", "ok"), want: disconnect(0x82), close: true, errIs: auth.ErrProtocol},
		)},
		{"3.1.2-11/data_without_method", auth.Config{}, []step{
			{connect: &auth.Request{ClientID: "c", AuthData: []byte("x")}, want: connack(0x82), close: true, errIs: auth.ErrProtocol},
		}},
		{"bounds/method_too_long_0x8C", auth.Config{MaxMethodLength: 8}, []step{
			{connect: connect("ONE-TOO-LONG", "ok"), want: connack(0x8C), close: true, errIs: auth.ErrBadMethod},
		}},
		{"bounds/data_too_long_0x95", auth.Config{MaxDataLength: 4}, []step{
			{connect: connect("ONE", "ok:bob"), want: connack(0x95), close: true},
		}},
		{"bounds/auth_data_too_long_0x95", auth.Config{MaxDataLength: 6}, []step{
			{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			{auth: authp(0x18, "TWO", "answer-1:bob"), want: connack(0x95), close: true},
		}},
		{"bounds/empty_method_in_auth", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "", "ok"), want: disconnect(0x8C), close: true, errIs: auth.ErrBadMethod},
		)},
		{"expiry/past_at_connect_0x87", auth.Config{}, []step{
			{connect: connect("ONE", "past"), want: connack(0x87), close: true, errIs: auth.ErrExpired},
		}},
		{"expiry/disconnect_0xA0", auth.Config{Authenticator: simple{expiry: time.Minute}}, []step{
			{connect: connect("ONE", "ok"), want: auth.Packet{Type: auth.CONNACK, Method: "ONE"}},
			{advance: 59 * time.Second, user: "alice"},
			{advance: time.Second, final: &auth.Packet{Type: auth.DISCONNECT, Code: 0xA0, Reason: "credential expired"}, user: "-"},
			{auth: authp(0x19, "ONE", "ok"), close: true, errIs: auth.ErrClosed},
		}},
		{"expiry/silent_close_option", auth.Config{Authenticator: simple{expiry: time.Minute}, OnExpiry: auth.CloseOnExpiry}, []step{
			{connect: connect("ONE", "ok"), want: auth.Packet{Type: auth.CONNACK, Method: "ONE"}},
			{advance: time.Minute, final: &auth.Packet{}, user: "-"},
		}},
		{"expiry/reauth_rearms_timer", auth.Config{Authenticator: simple{expiry: time.Minute}}, []step{
			{connect: connect("ONE", "ok"), want: auth.Packet{Type: auth.CONNACK, Method: "ONE"}},
			{advance: 50 * time.Second},
			{auth: authp(0x19, "ONE", "ok"), want: authOut(0, "ONE", "")},
			{advance: 50 * time.Second, user: "alice"}, // past the first expiry
			{advance: 10 * time.Second, final: &auth.Packet{Type: auth.DISCONNECT, Code: 0xA0, Reason: "credential expired"}},
		}},
		{"reauth/unavailable_continue_0x18_keeps_principal", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "down"), want: auth.Packet{Type: auth.AUTH, Code: 0x18, Method: "ONE",
				Reason: "authentication is unavailable; the connection continues, re-authenticate later"}, errIs: auth.ErrUnavailable, user: "alice"},
			step{auth: authp(0x19, "ONE", "ok"), want: authOut(0, "ONE", ""), user: "alice"},
		)},
		{"reauth/answering_unavailable_0x18_is_a_retry", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "down"), want: auth.Packet{Type: auth.AUTH, Code: 0x18, Method: "ONE",
				Reason: "authentication is unavailable; the connection continues, re-authenticate later"}, errIs: auth.ErrUnavailable},
			step{auth: authp(0x18, "ONE", "ok"), want: authOut(0, "ONE", ""), user: "alice"},
			step{auth: authp(0x18, "ONE", "ok"), want: disconnect(0x82), close: true, errIs: auth.ErrProtocol},
		)},
		{"reauth/one_retry_then_silence_no_ping_pong", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "down"), want: auth.Packet{Type: auth.AUTH, Code: 0x18, Method: "ONE",
				Reason: "authentication is unavailable; the connection continues, re-authenticate later"}, errIs: auth.ErrUnavailable},
			step{auth: authp(0x18, "ONE", "down"), want: noPacket, errIs: auth.ErrUnavailable, user: "alice"},
			step{auth: authp(0x19, "ONE", "down"), want: auth.Packet{Type: auth.AUTH, Code: 0x18, Method: "ONE",
				Reason: "authentication is unavailable; the connection continues, re-authenticate later"}, errIs: auth.ErrUnavailable, user: "alice"},
			step{auth: authp(0x18, "ONE", "ok"), want: authOut(0, "ONE", ""), user: "alice"},
		)},
		{"reauth/no_second_retry", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "down"), want: auth.Packet{Type: auth.AUTH, Code: 0x18, Method: "ONE",
				Reason: "authentication is unavailable; the connection continues, re-authenticate later"}, errIs: auth.ErrUnavailable},
			step{auth: authp(0x18, "ONE", "down"), want: noPacket, errIs: auth.ErrUnavailable},
			step{auth: authp(0x18, "ONE", "ok"), want: disconnect(0x82), close: true, errIs: auth.ErrProtocol},
		)},
		{"reauth/unavailable_mid_exchange", auth.Config{}, append(twoOK[:2:2],
			step{auth: authp(0x19, "TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			step{auth: authp(0x18, "TWO", "down"), want: auth.Packet{Type: auth.AUTH, Code: 0x18, Method: "TWO",
				Reason: "authentication is unavailable; the connection continues, re-authenticate later"}, errIs: auth.ErrUnavailable, user: "alice"},
		)},
		{"reauth/identity_change_refused", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "ok:mallory"), want: auth.Packet{Type: auth.DISCONNECT, Code: 0x87, Reason: "re-authentication failed"}, close: true, errIs: auth.ErrIdentityChanged, user: "-"},
		)},
		{"reauth/identity_change_allowed", auth.Config{AllowIdentityChange: true}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "ok:bob"), want: authOut(0, "ONE", ""), user: "bob"},
		)},
		{"reauth/expired_credential_refused", auth.Config{}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "past"), want: auth.Packet{Type: auth.DISCONNECT, Code: 0x87, Reason: "re-authentication failed"}, close: true, errIs: auth.ErrExpired},
		)},
		{"connect/unavailable_0x88", auth.Config{}, []step{
			{connect: connect("ONE", "down"), want: connack(0x88), close: true, errIs: auth.ErrUnavailable},
		}},
		{"connect/unavailable_mid_exchange_0x88", auth.Config{}, []step{
			{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			{auth: authp(0x18, "TWO", "down"), want: connack(0x88), close: true, errIs: auth.ErrUnavailable},
		}},
		{"connect/authorizer_denies_connect", auth.Config{Authorizer: auth.AuthorizerFunc(func(context.Context, *auth.Principal, auth.Action) auth.Decision { return auth.Deny })}, []step{
			{connect: connect("ONE", "ok"), want: connack(0x87), close: true, errIs: auth.ErrNotAuthorized, user: "-"},
		}},
		{"reauth/authorizer_denies_connect_is_a_revocation", auth.Config{AllowIdentityChange: true, Authorizer: auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, _ auth.Action) auth.Decision {
			if p.Username() == "bob" {
				return auth.Deny
			}
			return auth.Allow("alice")
		})}, append(oneOK[:1:1],
			step{auth: authp(0x19, "ONE", "ok:bob"), want: auth.Packet{Type: auth.DISCONNECT, Code: 0x87, Reason: "re-authentication failed"}, close: true, errIs: auth.ErrRevoked, user: "-"},
		)},
		{"timeout/connect_exchange_stalled", auth.Config{ExchangeTimeout: 10 * time.Second}, []step{
			{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			{advance: 9 * time.Second},
			{advance: time.Second, final: &auth.Packet{Type: auth.CONNACK, Code: 0x87}},
			{auth: authp(0x18, "TWO", "answer-1"), close: true, errIs: auth.ErrClosed},
		}},
		{"timeout/reauth_exchange_stalled", auth.Config{ExchangeTimeout: 10 * time.Second}, append(twoOK[:2:2],
			step{auth: authp(0x19, "TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			step{advance: 10 * time.Second, final: &auth.Packet{Type: auth.DISCONNECT, Code: 0x87, Reason: "re-authentication timed out"}, user: "-"},
		)},
		{"timeout/answered_in_time", auth.Config{ExchangeTimeout: 10 * time.Second}, []step{
			{connect: connect("TWO", "hello"), want: authOut(0x18, "TWO", "challenge-1")},
			{advance: 9 * time.Second},
			{auth: authp(0x18, "TWO", "answer-1"), want: auth.Packet{Type: auth.CONNACK, Method: "TWO", Data: []byte("server-final")}},
			{advance: time.Hour, user: "alice"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			ended := false // the session ended the connection through Conn
			for i, st := range tc.steps {
				var r auth.Response
				switch {
				case st.connect != nil:
					r = h.s.Connect(context.Background(), st.connect)
				case st.auth != nil:
					r = h.s.Auth(context.Background(), *st.auth)
				case st.other:
					r = h.s.OtherPacket()
				default:
					h.clock.Advance(st.advance)
				}
				checkInvariants(t, r)
				require.Equal(t, st.want, r.Packet, "step %d packet", i)
				require.Equal(t, st.close, r.Close, "step %d close", i)
				if st.errIs != nil {
					require.ErrorIs(t, r.Err, st.errIs, "step %d", i)
				} else if !st.close && r.Packet.Type != auth.AUTH {
					require.NoError(t, r.Err, "step %d", i)
				}
				final, closed := h.conn.Final()
				switch {
				case st.final != nil:
					require.True(t, closed, "step %d: the session should have ended the connection", i)
					require.Equal(t, *st.final, final, "step %d final packet", i)
					require.True(t, h.s.Closed())
					ended = true
				case !ended:
					require.False(t, closed, "step %d: unexpected close through Conn with %+v", i, final)
				}
				switch st.user {
				case "":
				case "-":
					require.Nil(t, h.s.Principal(), "step %d principal", i)
				default:
					require.NotNil(t, h.s.Principal(), "step %d principal", i)
					require.Equal(t, st.user, h.s.Principal().Username(), "step %d user", i)
				}
				if r.Close {
					require.True(t, h.s.Closed(), "step %d: a closing response ends the session", i)
					require.Zero(t, h.mgr.Len(), "a closed session leaves the registry")
				}
			}
			require.LessOrEqual(t, h.conn.Calls(), 1, "Conn.Close is called at most once")
		})
	}
}

func TestSessionPrincipalDefaults(t *testing.T) {
	h := newHarness(t, auth.Config{})
	r := h.s.Connect(context.Background(), &auth.Request{ClientID: "dev-9", AuthMethod: "ONE", AuthData: []byte("ok")})
	require.Equal(t, auth.Success, r.Packet.Code)
	p := h.s.Principal()
	require.Equal(t, "ONE", p.Method(), "the method defaults to CONNECT's")
	require.Equal(t, "dev-9", p.ClientID(), "the client id defaults to CONNECT's")
	require.Equal(t, 1, h.mgr.Len())
	require.True(t, h.s.Authorize(context.Background(), auth.Action{Kind: auth.Publish, Topic: "a"}).Allowed)
	h.s.Close()
	require.Zero(t, h.mgr.Len())
	require.False(t, h.s.Authorize(context.Background(), auth.Action{Kind: auth.Publish, Topic: "a"}).Allowed, "closed means closed")
	h.s.Close() // idempotent
}

func TestSessionKeepsNoSecrets(t *testing.T) {
	var seen *auth.Request
	spy := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.Reauth {
			seen = req
			return auth.PassResult(req.Current)
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "u"}))
	})
	h := newHarness(t, auth.Config{Authenticator: spy})
	r := h.s.Connect(context.Background(), &auth.Request{ClientID: "c", AuthMethod: "M", AuthData: []byte("token"), Password: []byte("pw"), HasPassword: true})
	require.Equal(t, auth.Success, r.Packet.Code)
	r = h.s.Auth(context.Background(), authPkt(0x19, "M", "token2"))
	require.Equal(t, auth.AUTH, r.Packet.Type)
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Nil(t, seen.Password, "the CONNECT password is not kept for re-authentication")
	require.Equal(t, "token2", string(seen.AuthData))
	require.True(t, seen.HasPassword)
}

func TestSessionRealClockExpiry(t *testing.T) {
	conn := make(chan auth.Packet, 1)
	m, err := auth.NewManager(auth.Config{
		Authenticator: auth.AuthenticatorFunc(func(context.Context, *auth.Request) auth.Result {
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "u", Expiry: time.Now().Add(50 * time.Millisecond)}))
		}),
		Authorizer: auth.AllowAuthenticated,
		Logger:     discard,
	})
	require.NoError(t, err)
	s := m.NewSession(auth.ConnFunc(func(p auth.Packet) { conn <- p }))
	require.Equal(t, auth.Success, s.Connect(context.Background(), &auth.Request{ClientID: "c"}).Packet.Code)
	select {
	case p := <-conn:
		require.Equal(t, auth.MaximumConnectTime, p.Code)
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT at expiry")
	}
	require.True(t, s.Closed())
}

func TestNewManagerValidates(t *testing.T) {
	_, err := auth.NewManager(auth.Config{Authorizer: auth.AllowAuthenticated})
	require.ErrorContains(t, err, "Authenticator")
	_, err = auth.NewManager(auth.Config{Authenticator: simple{}})
	require.ErrorContains(t, err, "AllowAuthenticated")
	_, err = auth.NewManager(auth.Config{Authenticator: simple{}, Authorizer: auth.AllowAuthenticated, OnExpiry: 7})
	require.Error(t, err)
	_, err = auth.NewManager(auth.Config{Authenticator: simple{}, Authorizer: auth.AllowAuthenticated, MaxDataLength: -1})
	require.Error(t, err)
}
