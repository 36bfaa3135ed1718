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

	// UserFailPrefix followed by a reason code in hex, as in "fail:0x95",
	// is a user name (any password) that the authenticator fails with
	// that code (auth.FailResult): the Session refuses with it, or with
	// 0x87 when it is not a CONNACK code.
	UserFailPrefix = "fail:"
	// UserUnavailable is a user name (any password) for which the
	// authenticator is unavailable (auth.UnavailableResult): CONNACK 0x88.
	UserUnavailable = "unavailable"

	// TopicAllowed prefixes the topics every principal may publish and
	// subscribe to.
	TopicAllowed = "allowed/"

	// TopicWill prefixes the topics of the Will cases: every principal may
	// subscribe to them ("will/#" included), so a subscriber sees whatever
	// the broker publishes there, allowed or not. Who may publish depends
	// on the prefixes below; any other "will/" topic may not be published.
	TopicWill = "will/"
	// TopicWillAllowed prefixes Will topics every principal may publish.
	TopicWillAllowed = "will/allowed/"
	// TopicWillForbidden prefixes Will topics no principal may publish.
	TopicWillForbidden = "will/forbidden/"
	// TopicWillRevocable prefixes Will topics every principal may publish
	// until [Fixture.RevokeWillTopic] (a policy reload) removes the right;
	// Connect stays allowed.
	TopicWillRevocable = "will/revocable/"
)

// Fixture is the suite's authorizer state: Revoke makes UserDoomed lose
// Connect permission, RevokeWillTopic removes the Publish right on
// TopicWillRevocable. Its zero value is ready to use.
type Fixture struct {
	revoked     atomic.Bool
	willRevoked atomic.Bool
}

// Revoke withdraws UserDoomed's Connect permission; re-check the sessions
// with auth.CheckConnect(f.Authorizer()) to disconnect it.
func (f *Fixture) Revoke() { f.revoked.Store(true) }

// RevokeWillTopic is a policy reload that withdraws every principal's
// Publish permission on TopicWillRevocable topics and keeps the rest:
// Connect stays allowed, so auth.CheckConnect(f.Authorizer()) disconnects
// nobody, and a Will on such a topic may no longer be published.
func (f *Fixture) RevokeWillTopic() { f.willRevoked.Store(true) }

// Config returns the suite's auth.Config: the authenticator of MethodToken,
// MethodChallenge and the user names above, and the authorizer of
// TopicAllowed.
func (f *Fixture) Config() auth.Config {
	return auth.Config{
		Authenticator: auth.Chain{auth.AuthenticatorFunc(authenticate)},
		Authorizer:    f.Authorizer(),
	}
}

// Authorizer allows Connect (except UserDoomed after Revoke); Publish and
// Subscribe on topics that begin with TopicAllowed; Subscribe on topics
// and filters that begin with TopicWill; Publish on TopicWillAllowed, and
// on TopicWillRevocable until RevokeWillTopic. Everything else is denied.
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
			switch {
			case strings.HasPrefix(a.Topic, TopicAllowed):
				return auth.Allow("allowed")
			case a.Kind == auth.Subscribe && strings.HasPrefix(a.Topic, TopicWill):
				return auth.Allow("will-subscribe")
			case strings.HasPrefix(a.Topic, TopicWillAllowed):
				return auth.Allow("will-allowed")
			case strings.HasPrefix(a.Topic, TopicWillRevocable) && !f.willRevoked.Load():
				return auth.Allow("will-revocable")
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
	errFailUser    = errors.New("conformance: user fails with the code it names")
)

func authenticate(_ context.Context, req *auth.Request) auth.Result {
	switch req.AuthMethod {
	case "":
		if !req.HasUsername {
			return auth.Result{}
		}
		if code, ok := strings.CutPrefix(req.Username, UserFailPrefix); ok {
			c, err := strconv.ParseUint(strings.TrimPrefix(code, "0x"), 16, 8)
			if err != nil {
				return auth.FailResult(auth.BadUserNameOrPassword, errBadPassword)
			}
			return auth.FailResult(auth.ReasonCode(c), errFailUser)
		}
		switch req.Username {
		case UserUnavailable:
			return auth.UnavailableResult(errBackendDown)
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
