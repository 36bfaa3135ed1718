package scramauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/auth"
)

// Config configures an [Authenticator].
type Config struct {
	// Store holds the users' credentials. Required.
	Store Store
	// Mechanisms are the Authentication Methods to answer; nil means both
	// SCRAM-SHA-256 and SCRAM-SHA-512. Other methods are NotRelevant.
	Mechanisms []Mechanism
	// UnknownUserKey is the secret from which the fake salt of an unknown
	// user is derived (HMAC-SHA-256 of the mechanism and user name), so that
	// the server-first-message of an unknown user is stable, like a real
	// user's, and cannot be told from one. Give every broker node of a
	// cluster the same key, at least 32 random bytes, kept secret and
	// stable across restarts; nil means a random key per Authenticator,
	// which is stable only for the life of the process.
	UnknownUserKey []byte
	// UnknownUserIterations is the iteration count announced for unknown
	// users; zero means DefaultIterations. Set it to the count your
	// credentials use, so that it gives nothing away.
	UnknownUserIterations int
}

// Authenticator is an [auth.Authenticator] for the Authentication Methods
// SCRAM-SHA-256 and SCRAM-SHA-512. See the package documentation for the
// exchange and the reason codes.
type Authenticator struct {
	store     Store
	sha256    bool
	sha512    bool
	key       []byte
	fakeIters int
	// fakeStored and fakeServer are the keys of unknown users: random, so
	// no password and no proof matches them.
	fakeStored map[Mechanism][]byte
	fakeServer map[Mechanism][]byte
}

var _ auth.Authenticator = (*Authenticator)(nil)

// New validates cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Store == nil {
		return nil, errors.New("scramauth: Config.Store is required")
	}
	a := &Authenticator{
		store:      cfg.Store,
		key:        cfg.UnknownUserKey,
		fakeIters:  cfg.UnknownUserIterations,
		fakeStored: make(map[Mechanism][]byte, 2),
		fakeServer: make(map[Mechanism][]byte, 2),
	}
	mechs := cfg.Mechanisms
	if mechs == nil {
		mechs = Mechanisms
	}
	if len(mechs) == 0 {
		return nil, errors.New("scramauth: Config.Mechanisms is empty")
	}
	for _, m := range mechs {
		switch m {
		case SHA256:
			a.sha256 = true
		case SHA512:
			a.sha512 = true
		default:
			return nil, fmt.Errorf("scramauth: unsupported mechanism %q", m)
		}
	}
	switch {
	case a.key == nil:
		a.key = make([]byte, 32)
		_, _ = rand.Read(a.key) // crypto/rand.Read does not fail (Go 1.24+)
	case len(a.key) < 16:
		return nil, errors.New("scramauth: Config.UnknownUserKey must be at least 16 bytes (32 recommended)")
	default:
		a.key = append([]byte(nil), a.key...)
	}
	switch {
	case a.fakeIters == 0:
		a.fakeIters = DefaultIterations
	case a.fakeIters < MinIterations:
		return nil, fmt.Errorf("scramauth: Config.UnknownUserIterations %d is below %d", a.fakeIters, MinIterations)
	}
	for _, m := range Mechanisms {
		a.fakeStored[m] = make([]byte, m.keySize())
		a.fakeServer[m] = make([]byte, m.keySize())
		_, _ = rand.Read(a.fakeStored[m])
		_, _ = rand.Read(a.fakeServer[m])
	}
	return a, nil
}

// exchange is the state of one SCRAM exchange, kept by the auth.Session
// between the server-first-message and the client-final-message. It holds
// the library's ServerConversation, which holds the stored keys of the user
// (never a password), and is dropped when the exchange ends.
type exchange struct {
	mech        Mechanism
	conv        *scram.ServerConversation
	username    string
	gs2Header   string
	clientNonce string
	nonce       string // client nonce + server nonce
	cred        Credential
	known       bool
	used        bool
}

// Authenticate runs one step of a SCRAM exchange:
//
//   - Step 0 (CONNECT or AUTH 0x19): AuthData is the client-first-message;
//     the result is Continue with the server-first-message.
//   - Step 1 (AUTH 0x18): AuthData is the client-final-message; the result
//     is Pass with the server-final-message as Result.Data, or Fail.
//
// Methods other than the configured mechanisms are NotRelevant.
func (a *Authenticator) Authenticate(_ context.Context, req *auth.Request) auth.Result {
	mech := Mechanism(req.AuthMethod)
	if !a.enabled(mech) {
		return auth.Result{}
	}
	switch req.Step {
	case 0:
		return a.first(mech, req)
	case 1:
		return a.final(mech, req)
	}
	return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: step %d of a two-step exchange", ErrOutOfOrder, req.Step))
}

func (a *Authenticator) enabled(m Mechanism) bool {
	return (m == SHA256 && a.sha256) || (m == SHA512 && a.sha512)
}

// first answers a client-first-message with a server-first-message.
func (a *Authenticator) first(mech Mechanism, req *auth.Request) auth.Result {
	m, err := parseClientFirst(req.AuthData)
	if err != nil {
		if errors.Is(err, ErrChannelBinding) {
			return auth.FailResult(auth.BadAuthenticationMethod, err)
		}
		return auth.FailResult(auth.NotAuthorized, err)
	}
	if m.authzID != "" && m.authzID != m.username {
		return auth.FailResult(auth.NotAuthorized, ErrAuthzID)
	}
	if req.Reauth && req.Current != nil && req.Current.Username() != m.username {
		return auth.FailResult(auth.NotAuthorized,
			fmt.Errorf("%w: %w: connection is %q", ErrUserChanged, auth.ErrIdentityChanged, req.Current.Username()))
	}
	cred, known, err := a.lookup(mech, m.username)
	if err != nil {
		return auth.UnavailableResult(err)
	}
	ex := &exchange{
		mech:        mech,
		username:    m.username,
		gs2Header:   m.gs2Header,
		clientNonce: m.nonce,
		cred:        cred,
		known:       known,
	}
	// One scram.Server per exchange: its lookup callback hands the library
	// the credential found above, for the user name parsed above. The
	// server nonce is the library's: 24 bytes from crypto/rand, base64.
	srv, err := mech.hashFunc().NewServer(ex.lookup)
	if err != nil {
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("scramauth: %w", err))
	}
	ex.conv = srv.NewConversation()
	s1, err := ex.conv.Step(string(req.AuthData))
	if err != nil {
		// The library's parse errors quote the offending field: keep them
		// out of the logs.
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: rejected by xdg-go/scram", ErrMalformed))
	}
	nonce, ok := serverFirstNonce(s1)
	if !ok || len(nonce) <= len(m.nonce) || !strings.HasPrefix(nonce, m.nonce) {
		return auth.FailResult(auth.NotAuthorized, errors.New("scramauth: the library's server-first-message does not extend the client nonce"))
	}
	ex.nonce = nonce
	return auth.ContinueResult([]byte(s1), ex)
}

// lookup returns the user's credential or, for an unknown user, a fake one
// whose salt is derived from the user name with the secret key. The HMAC runs
// for every user, so the time a lookup takes does not tell them apart.
func (a *Authenticator) lookup(mech Mechanism, username string) (Credential, bool, error) {
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(mech))
	mac.Write([]byte{0})
	mac.Write([]byte(username))
	fakeSalt := mac.Sum(nil)[:SaltLength]
	cred, ok := a.store.Lookup(mech, username)
	if ok {
		if err := cred.Validate(mech); err != nil {
			return Credential{}, false, fmt.Errorf("scramauth: stored credential of %q: %w", username, err)
		}
		return cred, true, nil
	}
	return Credential{
		Salt:       fakeSalt,
		Iterations: a.fakeIters,
		StoredKey:  a.fakeStored[mech],
		ServerKey:  a.fakeServer[mech],
	}, false, nil
}

// lookup is the exchange's scram.CredentialLookup.
func (ex *exchange) lookup(name string) (scram.StoredCredentials, error) {
	if name != ex.username {
		return scram.StoredCredentials{}, errors.New("scramauth: the library parsed another user name")
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(ex.cred.Salt), Iters: ex.cred.Iterations},
		StoredKey:  ex.cred.StoredKey,
		ServerKey:  ex.cred.ServerKey,
	}, nil
}

// final checks a client-final-message and answers with the
// server-final-message.
func (a *Authenticator) final(mech Mechanism, req *auth.Request) auth.Result {
	ex, ok := req.State.(*exchange)
	if !ok || ex == nil || ex.conv == nil || ex.used || ex.mech != mech {
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: client-final-message without a server-first-message", ErrOutOfOrder))
	}
	ex.used = true // one client-final-message per exchange
	m, err := parseClientFinal(req.AuthData, mech.keySize())
	if err != nil {
		return auth.FailResult(auth.NotAuthorized, err)
	}
	if subtle.ConstantTimeCompare(m.cbind, []byte(ex.gs2Header)) != 1 {
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: c= does not repeat the gs2 header", ErrMalformed))
	}
	// The nonce must be this exchange's: the client's nonce followed by the
	// server's fresh one. A client-final-message replayed from another
	// exchange carries another server nonce.
	if !strings.HasPrefix(m.nonce, ex.clientNonce) || subtle.ConstantTimeCompare([]byte(m.nonce), []byte(ex.nonce)) != 1 {
		return auth.FailResult(auth.NotAuthorized, ErrNonce)
	}
	s2, err := ex.conv.Step(string(req.AuthData))
	if err != nil || !ex.conv.Valid() || !ex.known {
		if !ex.known {
			return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w (%w)", ErrInvalidProof, ErrUnknownUser))
		}
		return auth.FailResult(auth.NotAuthorized, ErrInvalidProof)
	}
	p := auth.NewPrincipal(auth.PrincipalInfo{
		Method:     string(mech),
		Username:   ex.username,
		Attributes: ex.cred.Attributes,
	})
	r := auth.PassResult(p)
	r.Data = []byte(s2)
	return r
}
