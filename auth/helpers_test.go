package auth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	t0         = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	errBackend = errors.New("backend down")
	discard    = slog.New(slog.DiscardHandler)
)

// twoStep is a two-round method "TWO": CONNECT data must be "hello", the
// challenge is "challenge-<n>", the answer "answer-<n>" passes as user
// "alice" (or the user after "answer-<n>:"), anything else fails. Data "down"
// at any step is Unavailable. Re-authentication runs the same exchange.
type twoStep struct{ expiry time.Duration }

func (a twoStep) Authenticate(_ context.Context, req *auth.Request) auth.Result {
	if req.AuthMethod != "TWO" {
		return auth.Result{}
	}
	if string(req.AuthData) == "down" {
		return auth.UnavailableResult(errBackend)
	}
	if req.Step == 0 {
		if string(req.AuthData) != "hello" {
			return auth.FailResult(auth.NotAuthorized, errors.New("bad greeting"))
		}
		return auth.ContinueResult([]byte("challenge-1"), 1)
	}
	n, _ := req.State.(int)
	user, ok := bytes.CutPrefix(req.AuthData, []byte("answer-1"))
	if n != 1 || !ok {
		return auth.FailResult(auth.NotAuthorized, errors.New("wrong answer"))
	}
	name := "alice"
	if u, ok := bytes.CutPrefix(user, []byte(":")); ok {
		name = string(u)
	}
	info := auth.PrincipalInfo{Method: "TWO", Username: name, Attributes: map[string]string{"group": "a"}}
	if a.expiry > 0 {
		info.Expiry = nowOf(req).Add(a.expiry)
	}
	r := auth.PassResult(auth.NewPrincipal(info))
	r.Data = []byte("server-final")
	r.State = "two-pass"
	return r
}

// clockNow is set by newHarness so authenticators can compute expiries.
var clockNow func() time.Time

func nowOf(*auth.Request) time.Time { return clockNow() }

// simple is a single-step method "ONE": data "ok[:user][+expiry]" passes,
// "down" is Unavailable, "past" passes with an expiry in the past, anything
// else fails with the code of the first byte when it is >= 0x80.
type simple struct{ expiry time.Duration }

func (a simple) Authenticate(_ context.Context, req *auth.Request) auth.Result {
	if req.AuthMethod != "ONE" {
		return auth.Result{}
	}
	d := string(req.AuthData)
	switch {
	case d == "down":
		return auth.UnavailableResult(errBackend)
	case d == "past":
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "alice", Expiry: clockNow().Add(-time.Second)}))
	case len(d) >= 2 && d[:2] == "ok":
		user := "alice"
		if len(d) > 3 && d[2] == ':' {
			user = d[3:]
		}
		info := auth.PrincipalInfo{Username: user}
		if a.expiry > 0 {
			info.Expiry = clockNow().Add(a.expiry)
		}
		return auth.PassResult(auth.NewPrincipal(info))
	case len(d) > 0 && d[0] >= 0x80:
		return auth.FailResult(auth.ReasonCode(d[0]), errors.New("refused"))
	}
	return auth.FailResult(auth.NotAuthorized, errors.New("bad credential"))
}

// password passes user "alice" with password "secret"; relevant when a user
// name is present and no method is named.
var password = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
	if !req.HasUsername || req.AuthMethod != "" {
		return auth.Result{}
	}
	if req.Username == "alice" && string(req.Password) == "secret" {
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "password", Username: "alice"}))
	}
	return auth.FailResult(auth.BadUserNameOrPassword, errors.New("wrong password"))
})

// certificate stands for an authenticator that verifies something other
// than the Authentication Data (a client certificate) and, wrongly, passes
// whatever method the client named.
var certificate = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
	return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "X.509", Username: "device"}))
})

// standInAtReauth passes CONNECT as method ONE, and re-authentication with
// a principal of another method, whatever the data.
var standInAtReauth = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
	method := "ONE"
	if req.Reauth {
		method = "X.509"
	}
	return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: method, Username: "alice"}))
})

// harness is one Session with a fake clock and a recording Conn.
type harness struct {
	t     *testing.T
	clock *authtest.Clock
	conn  *authtest.Conn
	mgr   *auth.Manager
	s     *auth.Session
}

func newHarness(t *testing.T, cfg auth.Config) *harness {
	t.Helper()
	clock := authtest.NewClock(t0)
	clockNow = clock.Now
	if cfg.Authenticator == nil {
		cfg.Authenticator = auth.Chain{simple{}, twoStep{}, password}
	}
	if cfg.Authorizer == nil {
		cfg.Authorizer = auth.AllowAuthenticated
	}
	cfg.Clock = clock
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	m, err := auth.NewManager(cfg)
	require.NoError(t, err)
	conn := authtest.NewConn()
	h := &harness{t: t, clock: clock, conn: conn, mgr: m, s: m.NewSession(conn)}
	t.Cleanup(h.s.Close)
	return h
}

func connectReq(method, data string) *auth.Request {
	r := &auth.Request{ClientID: "dev-1", AuthMethod: method, ProtocolVersion: 5}
	if data != "" {
		r.AuthData = []byte(data)
	}
	return r
}

func authPkt(code auth.ReasonCode, method, data string) auth.Packet {
	p := auth.Packet{Type: auth.AUTH, Code: code, Method: method}
	if data != "" {
		p.Data = []byte(data)
	}
	return p
}

// checkInvariants holds for every Response: a failure code in a CONNACK or
// DISCONNECT closes [MQTT-4.13.2-1], and an AUTH never carries a failure.
func checkInvariants(t *testing.T, r auth.Response) {
	t.Helper()
	switch r.Packet.Type {
	case auth.CONNACK, auth.DISCONNECT:
		if r.Packet.Code.IsFailure() {
			require.True(t, r.Close, "a %v with %v must close [MQTT-4.13.2-1]", r.Packet.Type, r.Packet.Code)
			require.Error(t, r.Err)
		}
	case auth.AUTH:
		require.False(t, r.Close)
		require.Contains(t, []auth.ReasonCode{auth.Success, auth.ContinueAuthentication}, r.Packet.Code)
		require.NotEmpty(t, r.Packet.Method, "AUTH carries the method [MQTT-4.12.0-5]")
	}
	if r.Packet.Type == auth.DISCONNECT {
		require.True(t, r.Packet.Code.ValidDisconnect(), "%v is not a valid DISCONNECT code", r.Packet.Code)
	}
	if r.Packet.Type == auth.CONNACK && r.Packet.Code.IsFailure() {
		require.True(t, r.Packet.Code.ValidConnackFailure(), "%v is not a valid CONNACK code", r.Packet.Code)
	}
}
