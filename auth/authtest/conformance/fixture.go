package conformance

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// The methods, credentials and topics of the suite's authenticator and
// authorizer, exported so that an adapter's own tests can reuse them with
// [Config].
const (
	// MethodToken is a single-step method. Its Authentication Data is
	// "good" (pass), "bad" (fail, 0x87), "unavailable", or
	// "expire:MILLISECONDS" (pass with an expiry that far ahead).
	MethodToken = "conformance-token"
	// MethodChallenge is a two-round method: CONNECT carries "hello", the
	// server challenges with "round-1" and "round-2", the client answers
	// "answer-1" and "answer-2", and the CONNACK carries "final".
	MethodChallenge = "conformance-challenge"

	// Users of the user name and password path (no method).
	UserAlice    = "alice"   // password PasswordGood
	UserMallory  = "mallory" // always refused with 0x87
	UserDoomed   = "doomed"  // password PasswordGood; loses Connect on revocation
	PasswordGood = "secret"

	// TokenUser is the user name of every MethodToken and MethodChallenge
	// principal.
	TokenUser = "token-user"

	// TopicAllowed prefixes the topics every principal may use; any other
	// topic is denied.
	TopicAllowed = "allowed/"
)

// Fixture is the suite's authorizer state: Revoke makes UserDoomed lose
// Connect permission.
type Fixture struct {
	revoked atomic.Bool
}

// Revoke withdraws UserDoomed's Connect permission; re-check the sessions
// with auth.CheckConnect(f.Authorizer()) to disconnect it.
func (f *Fixture) Revoke() { f.revoked.Store(true) }

// Config returns the suite's auth.Config: the authenticator of MethodToken,
// MethodChallenge and the user names above, and the authorizer of
// TopicAllowed.
func (f *Fixture) Config() auth.Config {
	return auth.Config{
		Authenticator: auth.Chain{auth.AuthenticatorFunc(authenticate)},
		Authorizer:    f.Authorizer(),
	}
}

// Authorizer allows Connect (except UserDoomed after Revoke), and Publish
// and Subscribe on topics that begin with TopicAllowed.
func (f *Fixture) Authorizer() auth.Authorizer {
	return auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if p == nil {
			return auth.Deny
		}
		switch a.Kind {
		case auth.Connect:
			if f.revoked.Load() && p.Username() == UserDoomed {
				return auth.Deny
			}
			return auth.Allow("connect")
		case auth.Publish, auth.Subscribe:
			if strings.HasPrefix(a.Topic, TopicAllowed) {
				return auth.Allow("allowed")
			}
		}
		return auth.Deny
	})
}

var (
	errBadPassword = errors.New("conformance: wrong password")
	errRefused     = errors.New("conformance: user refused")
	errBadToken    = errors.New("conformance: bad token")
	errBackendDown = errors.New("conformance: backend down")
	errBadAnswer   = errors.New("conformance: wrong challenge answer")
)

func authenticate(_ context.Context, req *auth.Request) auth.Result {
	switch req.AuthMethod {
	case "":
		if !req.HasUsername {
			return auth.Result{}
		}
		switch req.Username {
		case UserMallory:
			return auth.FailResult(auth.NotAuthorized, errRefused)
		case UserAlice, UserDoomed:
			if string(req.Password) != PasswordGood {
				return auth.FailResult(auth.BadUserNameOrPassword, errBadPassword)
			}
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "password", Username: req.Username}))
		}
		return auth.FailResult(auth.BadUserNameOrPassword, errBadPassword)
	case MethodToken:
		data := string(req.AuthData)
		switch {
		case data == "good":
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: TokenUser}))
		case data == "unavailable":
			return auth.UnavailableResult(errBackendDown)
		case strings.HasPrefix(data, "expire:"):
			ms, err := strconv.Atoi(strings.TrimPrefix(data, "expire:"))
			if err != nil {
				return auth.FailResult(auth.NotAuthorized, errBadToken)
			}
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{
				Username: TokenUser, Expiry: time.Now().Add(time.Duration(ms) * time.Millisecond)}))
		}
		return auth.FailResult(auth.NotAuthorized, errBadToken)
	case MethodChallenge:
		want := [...]string{"hello", "answer-1", "answer-2"}
		if req.Step >= len(want) || string(req.AuthData) != want[req.Step] {
			return auth.FailResult(auth.NotAuthorized, errBadAnswer)
		}
		switch req.Step {
		case 0:
			return auth.ContinueResult([]byte("round-1"), 1)
		case 1:
			return auth.ContinueResult([]byte("round-2"), 2)
		}
		r := auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: TokenUser}))
		r.Data = []byte("final")
		return r
	}
	return auth.Result{} // NotRelevant: a named method nobody supports is 0x8C
}
