package auth_test

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

// A Chain tries its authenticators in order: the first relevant one decides.
func ExampleChain() {
	token := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.AuthMethod != "TOKEN" {
			return auth.Result{} // NotRelevant: let the next method try
		}
		if subtle.ConstantTimeCompare(req.AuthData, []byte("s3cret")) != 1 {
			return auth.FailResult(auth.NotAuthorized, fmt.Errorf("token: unknown token"))
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "TOKEN", Username: "device-7"}))
	})
	chain := auth.Chain{token}

	for _, req := range []*auth.Request{
		{AuthMethod: "TOKEN", AuthData: []byte("s3cret")},
		{AuthMethod: "TOKEN", AuthData: []byte("guess")},
		{AuthMethod: "KERBEROS"},
	} {
		r := chain.Authenticate(context.Background(), req)
		fmt.Println(req.AuthMethod, r.Outcome, r.Code)
	}
	// Output:
	// TOKEN Pass Success (0x00)
	// TOKEN Fail Not authorized (0x87)
	// KERBEROS Fail Bad authentication method (0x8c)
}

// A Session turns CONNECT and AUTH packets into the packets to send, here a
// two-step exchange, a re-authentication and an expiry.
func ExampleSession() {
	clock := authtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	challenge := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.AuthMethod != "DEMO" {
			return auth.Result{}
		}
		if req.Step == 0 {
			return auth.ContinueResult([]byte("nonce"), nil)
		}
		if string(req.AuthData) != "signed-nonce" {
			return auth.FailResult(auth.NotAuthorized, nil)
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "dev", Expiry: clock.Now().Add(time.Hour)}))
	})
	m, err := auth.NewManager(auth.Config{
		Authenticator: challenge,
		Authorizer:    auth.AllowAuthenticated,
		Clock:         clock,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	s := m.NewSession(auth.ConnFunc(func(final auth.Packet) {
		fmt.Println("session ends:", final.Type, final.Code, final.Reason)
	}))
	show := func(r auth.Response) { fmt.Println(r.Packet.Type, r.Packet.Code, string(r.Packet.Data), r.Close) }

	show(s.Connect(context.Background(), &auth.Request{ClientID: "dev", AuthMethod: "DEMO"}))
	show(s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "DEMO", Data: []byte("signed-nonce")}))
	clock.Advance(50 * time.Minute)
	show(s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: "DEMO"}))
	show(s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "DEMO", Data: []byte("signed-nonce")}))
	clock.Advance(time.Hour)
	// Output:
	// AUTH Continue authentication (0x18) nonce false
	// CONNACK Success (0x00)  false
	// AUTH Continue authentication (0x18) nonce false
	// AUTH Success (0x00)  false
	// session ends: DISCONNECT Maximum connect time (0xa0) credential expired
}

// A Manager re-checks live sessions after a change of trust or policy and
// disconnects those that lost access.
func ExampleManager_Recheck() {
	banned := map[string]bool{}
	m, _ := auth.NewManager(auth.Config{
		Authenticator: auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username}))
		}),
		Authorizer: auth.AllowAuthenticated,
		Logger:     slog.New(slog.DiscardHandler),
	})
	for _, user := range []string{"a", "b", "c"} {
		s := m.NewSession(auth.ConnFunc(func(final auth.Packet) { fmt.Println(user, "disconnected:", final.Code) }))
		s.Connect(context.Background(), &auth.Request{Username: user, HasUsername: true})
	}
	banned["b"] = true
	report := m.Recheck(context.Background(), func(_ context.Context, s *auth.Session) error {
		if banned[s.Principal().Username()] {
			return auth.ErrRevoked
		}
		return nil
	})
	fmt.Printf("%+v\n", report)
	// Output:
	// b disconnected: Not authorized (0x87)
	// {Checked:3 Disconnected:1}
}
