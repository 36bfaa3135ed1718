package jwtauth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/jwtauth"
	"github.com/mqttauth/mqttauth/jwtauth/jwttest"
)

const aud = "mqtt-broker"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newAuth returns an authenticator for iss with a fake clock at the
// current second.
func newAuth(t testing.TB, iss *jwttest.Issuer, edit func(*jwtauth.Config)) (*jwtauth.Authenticator, *authtest.Clock) {
	t.Helper()
	clock := authtest.NewClock(time.Now().Truncate(time.Second))
	cfg := iss.Config(aud)
	cfg.Now = clock.Now
	cfg.Logger = quiet
	if edit != nil {
		edit(&cfg)
	}
	a, err := jwtauth.New(cfg)
	require.NoError(t, err)
	return a, clock
}

func connect(a auth.Authenticator, token string) auth.Result {
	return a.Authenticate(context.Background(), &auth.Request{ClientID: "c1", AuthMethod: "JWT", AuthData: []byte(token), ProtocolVersion: 5})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// hs256 signs payload with HMAC-SHA256 keyed by secret (the algorithm
// confusion attack when secret is the issuer's public key).
func hs256(t *testing.T, kid string, secret []byte, payload map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	require.NoError(t, err)
	body, err := json.Marshal(payload)
	require.NoError(t, err)
	jws, err := sig.Sign(body)
	require.NoError(t, err)
	tok, err := jws.CompactSerialize()
	require.NoError(t, err)
	return tok
}

func TestVerify(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	a, clock := newAuth(t, iss, func(c *jwtauth.Config) {
		c.ClaimsToAttributes = map[string]string{"site": "site", "floor": "floor", "admin": "admin", "groups": "groups", "missing": "missing"}
	})
	now := clock.Now()
	valid := jwttest.Claims{Audience: []string{aud}, IssuedAt: now, Expiry: now.Add(time.Hour),
		Extra: map[string]any{"site": "berlin", "floor": 3, "admin": false, "groups": []string{"a", "b"}}}

	t.Run("valid", func(t *testing.T) {
		r := connect(a, iss.Mint(t, valid))
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
		p := r.Principal
		require.Equal(t, "device-1", p.Username())
		require.Equal(t, "JWT", p.Method())
		require.Equal(t, "c1", p.ClientID())
		require.True(t, p.Expiry().Equal(now.Add(time.Hour)), "the principal expires at exp")
		for k, want := range map[string]string{"site": "berlin", "floor": "3", "admin": "false"} {
			v, ok := p.Attribute(k)
			require.True(t, ok, k)
			require.Equal(t, want, v, k)
		}
		_, ok := p.Attribute("groups")
		require.False(t, ok, "an array claim is not mapped")
		_, ok = p.Attribute("missing")
		require.False(t, ok)
	})

	pub, err := x509.MarshalPKIXPublicKey(iss.PublicKey())
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	claims := map[string]any{"iss": iss.URL(), "sub": "mallory", "aud": aud, "exp": now.Add(time.Hour).Unix()}
	tok := iss.Mint(t, valid)
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + b64(`{"iss":"`+iss.URL()+`","sub":"admin","aud":"`+aud+`","exp":`+
		jsonNum(now.Add(time.Hour).Unix())+`}`) + "." + parts[2]
	sigBytes, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sigBytes[0] ^= 1
	flipped := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sigBytes)
	none := b64(`{"alg":"none","typ":"JWT","kid":"`+iss.KeyID()+`"}`) + "." + parts[1] + "."
	noneSig := b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "." + parts[2]

	with := func(edit func(c *jwttest.Claims)) string {
		c := valid
		c.Extra = map[string]any{}
		edit(&c)
		return iss.Mint(t, c)
	}
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"expired", with(func(c *jwttest.Claims) { c.IssuedAt, c.Expiry = now.Add(-2*time.Hour), now.Add(-time.Second) }), jwtauth.ErrExpired},
		{"expires_now", with(func(c *jwttest.Claims) { c.Expiry = now }), jwtauth.ErrExpired},
		{"not_yet_valid_nbf", with(func(c *jwttest.Claims) { c.NotBefore = now.Add(2 * time.Minute) }), jwtauth.ErrNotYetValid},
		{"not_yet_valid_iat", with(func(c *jwttest.Claims) { c.IssuedAt = now.Add(2 * time.Minute); c.Expiry = now.Add(time.Hour) }), jwtauth.ErrNotYetValid},
		{"wrong_audience", with(func(c *jwttest.Claims) { c.Audience = []string{"other"} }), jwtauth.ErrAudience},
		{"wrong_issuer", with(func(c *jwttest.Claims) { c.Issuer = "https://evil.example" }), jwtauth.ErrIssuer},
		{"alg_none", none, jwtauth.ErrAlgorithm},
		{"alg_none_with_signature", noneSig, jwtauth.ErrAlgorithm},
		{"hs256_with_public_key_pem", hs256(t, iss.KeyID(), pubPEM, claims), jwtauth.ErrAlgorithm},
		{"hs256_with_public_key_der", hs256(t, iss.KeyID(), pub, claims), jwtauth.ErrAlgorithm},
		{"tampered_payload", tampered, jwtauth.ErrSignature},
		{"tampered_signature", flipped, jwtauth.ErrSignature},
		{"missing_exp", with(func(c *jwttest.Claims) { c.Extra["exp"] = nil }), jwtauth.ErrMissingClaim},
		{"missing_iss", with(func(c *jwttest.Claims) { c.Extra["iss"] = nil }), jwtauth.ErrMissingClaim},
		{"missing_aud", with(func(c *jwttest.Claims) { c.Extra["aud"] = nil }), jwtauth.ErrMissingClaim},
		{"missing_sub", with(func(c *jwttest.Claims) { c.Extra["sub"] = nil }), jwtauth.ErrMissingClaim},
		{"sub_not_a_string", with(func(c *jwttest.Claims) { c.Extra["sub"] = 42 }), jwtauth.ErrMalformed},
		{"exp_not_a_number", with(func(c *jwttest.Claims) { c.Extra["exp"] = "tomorrow" }), jwtauth.ErrMalformed},
		{"malformed_garbage", "not a token", jwtauth.ErrMalformed},
		{"malformed_two_parts", parts[0] + "." + parts[1], jwtauth.ErrMalformed},
		{"malformed_header", "!!!." + parts[1] + "." + parts[2], jwtauth.ErrMalformed},
		{"malformed_payload", parts[0] + ".%%%." + parts[2], jwtauth.ErrMalformed},
		{"empty", "", jwtauth.ErrMalformed},
		{"too_large", strings.Repeat("a", jwtauth.DefaultMaxTokenSize+1), jwtauth.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := connect(a, tc.token)
			require.Equal(t, auth.Fail, r.Outcome, "%v", r.Err)
			require.Equal(t, auth.NotAuthorized, r.Code)
			require.ErrorIs(t, r.Err, tc.want)
			if len(tc.token) > 40 {
				require.NotContains(t, r.Err.Error(), tc.token[len(tc.token)-20:], "the error does not carry the token")
			}
		})
	}
	t.Run("leeway_accepts_small_skew", func(t *testing.T) {
		r := connect(a, with(func(c *jwttest.Claims) { c.NotBefore = now.Add(30 * time.Second) }))
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	})
	t.Run("other_method_not_relevant", func(t *testing.T) {
		r := a.Authenticate(context.Background(), &auth.Request{AuthMethod: "SCRAM-SHA-256", AuthData: []byte(iss.Mint(t, valid))})
		require.Equal(t, auth.NotRelevant, r.Outcome)
		r = a.Authenticate(context.Background(), &auth.Request{HasPassword: true, Password: []byte(iss.Mint(t, valid))})
		require.Equal(t, auth.NotRelevant, r.Outcome, "FromMethod ignores the password")
	})
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestRotation: a token signed by a new key is accepted after one refetch
// of the key set.
func TestRotation(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	a, clock := newAuth(t, iss, nil)
	c := jwttest.Claims{Audience: []string{aud}, IssuedAt: clock.Now(), Expiry: clock.Now().Add(24 * time.Hour)}
	require.Equal(t, auth.Pass, connect(a, iss.Mint(t, c)).Outcome)
	require.EqualValues(t, 1, iss.JWKSFetches())

	t.Run("unknown_kid_then_rotation", func(t *testing.T) {
		iss.Rotate(t, false)
		clock.Advance(jwtauth.DefaultKeyRefreshInterval)
		r := connect(a, iss.Mint(t, c))
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
		require.EqualValues(t, 2, iss.JWKSFetches())
	})
	t.Run("withdrawn_key_refused", func(t *testing.T) {
		old := iss.Mint(t, c)
		iss.Rotate(t, false)
		clock.Advance(jwtauth.DefaultKeyMaxAge)
		r := connect(a, old)
		require.Equal(t, auth.Fail, r.Outcome)
		require.ErrorIs(t, r.Err, jwtauth.ErrSignature)
	})
	t.Run("unknown_kid_not_published", func(t *testing.T) {
		clock.Advance(jwtauth.DefaultKeyRefreshInterval)
		r := connect(a, iss.Mint(t, jwttest.Claims{Audience: []string{aud}, IssuedAt: clock.Now(), KeyID: "nobody"}))
		require.Equal(t, auth.Fail, r.Outcome)
		require.ErrorIs(t, r.Err, jwtauth.ErrSignature)
	})
}

// TestRefetchRateLimited: a flood of tokens with invented key ids costs the
// issuer one key set fetch per KeyRefreshInterval, however many arrive.
func TestRefetchRateLimited(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	a, clock := newAuth(t, iss, nil)
	c := jwttest.Claims{Audience: []string{aud}, IssuedAt: clock.Now()}
	require.Equal(t, auth.Pass, connect(a, iss.Mint(t, c)).Outcome)
	tokens := make([]string, 200)
	for i := range tokens {
		c.KeyID = "invented-" + jsonNum(int64(i))
		tokens[i] = iss.Mint(t, c)
	}
	for round := range 3 {
		var wg sync.WaitGroup
		for _, tok := range tokens {
			wg.Go(func() {
				r := connect(a, tok)
				require.Equal(t, auth.Fail, r.Outcome)
				require.ErrorIs(t, r.Err, jwtauth.ErrSignature)
			})
		}
		wg.Wait()
		// One fetch at start, at most one more per interval.
		require.LessOrEqual(t, iss.JWKSFetches(), int64(2+round), "round %d", round)
		clock.Advance(jwtauth.DefaultKeyRefreshInterval)
	}
	require.GreaterOrEqual(t, iss.JWKSFetches(), int64(2), "an unknown kid does cause a refetch")
}

// TestIssuerDown: no keys, no decision: Unavailable (the chain moves on, a
// Session answers CONNACK 0x88). Keys fetched before the outage keep
// working.
func TestIssuerDown(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	c := jwttest.Claims{Audience: []string{aud}}
	t.Run("never_fetched", func(t *testing.T) {
		a, _ := newAuth(t, iss, nil)
		iss.SetDown(true)
		defer iss.SetDown(false)
		r := connect(a, iss.Mint(t, c))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, jwtauth.ErrUnavailable)
		r = auth.Chain{a}.Authenticate(context.Background(), &auth.Request{AuthMethod: "JWT", AuthData: []byte(iss.Mint(t, c))})
		require.Equal(t, auth.Unavailable, r.Outcome)
	})
	t.Run("last_good_keys_kept", func(t *testing.T) {
		a, clock := newAuth(t, iss, nil)
		c.IssuedAt = clock.Now()
		require.Equal(t, auth.Pass, connect(a, iss.Mint(t, c)).Outcome)
		iss.SetDown(true)
		defer iss.SetDown(false)
		clock.Advance(jwtauth.DefaultKeyMaxAge)
		c.IssuedAt = clock.Now()
		r := connect(a, iss.Mint(t, c))
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	})
	t.Run("unreachable", func(t *testing.T) {
		a, err := jwtauth.New(jwtauth.Config{Issuer: "https://127.0.0.1:1", Audiences: []string{aud}, Logger: quiet, RequestTimeout: time.Second})
		require.NoError(t, err)
		defer a.Close()
		r := connect(a, iss.Mint(t, jwttest.Claims{Issuer: "https://127.0.0.1:1", Audience: []string{aud}}))
		require.Equal(t, auth.Unavailable, r.Outcome, "%v", r.Err)
		require.ErrorIs(t, r.Err, jwtauth.ErrUnavailable)
	})
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	cfg := iss.Config(aud)
	cfg.Issuer = iss.URL() + "/"
	cfg.DiscoveryURL = iss.URL() + jwttest.DiscoveryPath
	cfg.Logger = quiet
	a, err := jwtauth.New(cfg)
	require.NoError(t, err)
	err = a.Refresh(context.Background())
	require.ErrorIs(t, err, jwtauth.ErrUnavailable)
	require.Contains(t, err.Error(), "discovery document names issuer")
}

func TestJWKSURL(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	a, _ := newAuth(t, iss, func(c *jwtauth.Config) { c.JWKSURL = iss.URL() + jwttest.JWKSPath })
	r := connect(a, iss.Mint(t, jwttest.Claims{Audience: []string{aud}}))
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
}

func TestUsernameClaim(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	a, _ := newAuth(t, iss, func(c *jwtauth.Config) { c.UsernameClaim = "email" })
	r := connect(a, iss.Mint(t, jwttest.Claims{Audience: []string{aud}, Extra: map[string]any{"email": "d1@example.com"}}))
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	require.Equal(t, "d1@example.com", r.Principal.Username())
	r = connect(a, iss.Mint(t, jwttest.Claims{Audience: []string{aud}}))
	require.ErrorIs(t, r.Err, jwtauth.ErrMissingClaim)
}

func TestPassword(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	tok := iss.Mint(t, jwttest.Claims{Audience: []string{aud}})
	pw := func(user, pass string) *auth.Request {
		return &auth.Request{ClientID: "c1", Username: user, HasUsername: user != "", Password: []byte(pass), HasPassword: true, ProtocolVersion: 4}
	}
	t.Run("any_username", func(t *testing.T) {
		a, _ := newAuth(t, iss, func(c *jwtauth.Config) { c.TokenFrom = jwtauth.FromPassword })
		r := a.Authenticate(context.Background(), pw("whatever", tok))
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
		require.Equal(t, "device-1", r.Principal.Username(), "the identity is the token's, not the user name")
		r = a.Authenticate(context.Background(), pw("alice", "hunter2"))
		require.Equal(t, auth.NotRelevant, r.Outcome, "a password that is no JWT is for another method")
		r = a.Authenticate(context.Background(), pw("alice", tok[:len(tok)-4]+"AAAA"))
		require.Equal(t, auth.Fail, r.Outcome)
		require.Equal(t, auth.BadUserNameOrPassword, r.Code)
		r = a.Authenticate(context.Background(), &auth.Request{AuthMethod: "JWT", AuthData: []byte(tok)})
		require.Equal(t, auth.NotRelevant, r.Outcome, "FromPassword ignores the method")
	})
	t.Run("configured_username", func(t *testing.T) {
		a, _ := newAuth(t, iss, func(c *jwtauth.Config) { c.TokenFrom = jwtauth.FromPassword; c.PasswordUsername = "$jwt" })
		require.Equal(t, auth.Pass, a.Authenticate(context.Background(), pw("$jwt", tok)).Outcome)
		require.Equal(t, auth.NotRelevant, a.Authenticate(context.Background(), pw("other", tok)).Outcome)
		r := a.Authenticate(context.Background(), pw("$jwt", "not a token"))
		require.Equal(t, auth.Fail, r.Outcome)
		require.ErrorIs(t, r.Err, jwtauth.ErrMalformed)
	})
}

// TestReauth: AUTH 0x19 with a fresh token moves the principal's expiry;
// a token for another identity is refused [MQTT-4.12.1-2 keeps the method].
func TestReauth(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	a, clock := newAuth(t, iss, nil)
	now := clock.Now()
	first := connect(a, iss.Mint(t, jwttest.Claims{Audience: []string{aud}, IssuedAt: now, Expiry: now.Add(time.Minute)}))
	require.Equal(t, auth.Pass, first.Outcome)
	reauth := func(tok string) auth.Result {
		return a.Authenticate(context.Background(), &auth.Request{ClientID: "c1", AuthMethod: "JWT", AuthData: []byte(tok),
			Reauth: true, Current: first.Principal, ProtocolVersion: 5})
	}
	r := reauth(iss.Mint(t, jwttest.Claims{Audience: []string{aud}, IssuedAt: now, Expiry: now.Add(time.Hour)}))
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	require.True(t, r.Principal.Expiry().Equal(now.Add(time.Hour)))
	r = reauth(iss.Mint(t, jwttest.Claims{Audience: []string{aud}, Subject: "device-2"}))
	require.Equal(t, auth.Fail, r.Outcome)
	require.ErrorIs(t, r.Err, jwtauth.ErrIdentityChanged)
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  jwtauth.Config
	}{
		{"no_issuer", jwtauth.Config{Audiences: []string{aud}}},
		{"no_audience", jwtauth.Config{Issuer: "https://i.example"}},
		{"alg_none", jwtauth.Config{Issuer: "https://i.example", Audiences: []string{aud}, Algorithms: []string{"none"}}},
		{"alg_hs256", jwtauth.Config{Issuer: "https://i.example", Audiences: []string{aud}, Algorithms: []string{"RS256", "HS256"}}},
		{"http_issuer", jwtauth.Config{Issuer: "http://i.example", Audiences: []string{aud}}},
		{"http_jwks", jwtauth.Config{Issuer: "https://i.example", JWKSURL: "http://i.example/keys", Audiences: []string{aud}}},
		{"bad_token_from", jwtauth.Config{Issuer: "https://i.example", Audiences: []string{aud}, TokenFrom: 7}},
		{"empty_attribute", jwtauth.Config{Issuer: "https://i.example", Audiences: []string{aud}, ClaimsToAttributes: map[string]string{"x": ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jwtauth.New(tc.cfg)
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "jwtauth: "), err.Error())
		})
	}
	_, err := jwtauth.New(jwtauth.Config{Issuer: "http://127.0.0.1:8080", Audiences: []string{aud}, InsecureAllowHTTP: true})
	require.NoError(t, err)
}

// fetches is an auth.Observer that keeps the component events.
type fetches struct {
	auth.NopObserver
	mu     sync.Mutex
	events []auth.ComponentEvent
}

func (f *fetches) Component(ev auth.ComponentEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
}

// TestObserverFetches: each key set fetch is one ComponentJWKS Call event,
// failed while the issuer is down.
func TestObserverFetches(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	obs := &fetches{}
	a, clock := newAuth(t, iss, func(c *jwtauth.Config) { c.Observer = obs })
	c := jwttest.Claims{Audience: []string{aud}, IssuedAt: clock.Now()}
	require.Equal(t, auth.Pass, connect(a, iss.Mint(t, c)).Outcome)
	require.Equal(t, auth.Pass, connect(a, iss.Mint(t, c)).Outcome, "the keys are cached: no second fetch")
	iss.SetDown(true)
	defer iss.SetDown(false)
	clock.Advance(jwtauth.DefaultKeyMaxAge)
	c.IssuedAt = clock.Now()
	connect(a, iss.Mint(t, c))
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Len(t, obs.events, 2)
	for i, failed := range []bool{false, true} {
		ev := obs.events[i]
		require.Equal(t, auth.ComponentJWKS, ev.Component)
		require.Equal(t, auth.Call, ev.Kind)
		require.Equal(t, failed, ev.Failed, "event %d", i)
		require.Positive(t, ev.Latency)
	}
}

// methodLog is an auth.Observer that keeps the method labels it is told.
type methodLog struct {
	auth.NopObserver
	mu     sync.Mutex
	labels []string
}

func (m *methodLog) Authenticated(e auth.AuthnEvent) {
	m.mu.Lock()
	m.labels = append(m.labels, e.Method)
	m.mu.Unlock()
}

// Metrics label the method with its name, not a Go type
// (authentication_total{method="*jwtauth.Authenticator"} before).
func TestMethodNameInMetrics(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	for _, tc := range []struct {
		name string
		edit func(*jwtauth.Config)
		want string
	}{
		{"default", nil, "JWT"},
		{"password", func(c *jwtauth.Config) { c.TokenFrom = jwtauth.FromPassword; c.PasswordUsername = "jwt" }, "JWT"},
		{"custom_method", func(c *jwtauth.Config) { c.Method = "OIDC" }, "OIDC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newAuth(t, iss, tc.edit)
			log := &methodLog{}
			observed := auth.ObserveMethods(auth.Chain{a}, log)
			observed.Authenticate(context.Background(), &auth.Request{ClientID: "c"})
			require.Equal(t, []string{tc.want}, log.labels)
		})
	}
}
