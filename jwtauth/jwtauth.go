package jwtauth

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/internal/jwks"
)

// Defaults for the zero values of Config.
const (
	DefaultMethod             = "JWT"
	DefaultUsernameClaim      = "sub"
	DefaultLeeway             = time.Minute
	DefaultKeyRefreshInterval = 10 * time.Second
	DefaultKeyMaxAge          = time.Hour
	DefaultRequestTimeout     = 10 * time.Second
	DefaultMaxTokenSize       = 16 << 10
)

// DefaultAlgorithms are the algorithms allowed when Config.Algorithms is
// empty.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// maxResponse bounds the discovery document and the key set.
const maxResponse = 1 << 20

// TokenSource says where the client puts its token.
type TokenSource uint8

const (
	// FromMethod: the token is the Authentication Data of a CONNECT (or
	// AUTH 0x19) that names Config.Method: single-step MQTT v5 enhanced
	// authentication, with re-authentication.
	FromMethod TokenSource = iota
	// FromPassword: the token is the CONNECT Password, for MQTT 3.1.1
	// clients and v5 clients without enhanced authentication. There is no
	// re-authentication (MQTT ties it to an Authentication Method); the
	// client reconnects with a fresh token before exp.
	FromPassword
)

// Config configures an [Authenticator].
type Config struct {
	// Issuer is the issuer URL; the token's iss claim must equal it
	// exactly. Required.
	Issuer string
	// DiscoveryURL is where the OpenID Connect discovery document is read
	// from when JWKSURL is empty; empty means
	// Issuer + "/.well-known/openid-configuration". The document's issuer
	// must equal Issuer (OpenID Connect Discovery 1.0, section 4.3), and
	// its jwks_uri gives the key set.
	DiscoveryURL string
	// JWKSURL is the key set URL. When set, no discovery is done.
	JWKSURL string
	// Audiences are the accepted audiences: one of the token's aud
	// values must be among them. Required.
	Audiences []string
	// Algorithms are the allowed signature algorithms; empty means
	// DefaultAlgorithms. Only asymmetric algorithms may be listed (RS*,
	// PS*, ES*, EdDSA): "none" and HMAC are refused by New, so a public
	// key can never serve as an HMAC secret.
	Algorithms []string
	// Leeway is the clock skew allowed on nbf and iat; zero means
	// DefaultLeeway, negative means none. exp gets no leeway: the session
	// ends at exp.
	Leeway time.Duration
	// UsernameClaim names the claim that is the principal's user name (a
	// non-empty string); empty means "sub".
	UsernameClaim string
	// ClaimsToAttributes maps claim names (top-level claims of the token)
	// to principal attribute names, for ABAC. String claims map as they
	// are, numbers as their JSON text ("42", "1.5"), booleans as "true"
	// or "false". Arrays, objects and null are not mapped: the attribute
	// is absent, so an ABAC rule that needs it does not match (fail
	// closed); a Debug record names the claim. An absent claim is absent
	// too.
	ClaimsToAttributes map[string]string
	// TokenFrom says where the token is: FromMethod (the default) or
	// FromPassword.
	TokenFrom TokenSource
	// Method is the MQTT Authentication Method (FromMethod) and, in every
	// case, the method name of the Principal; empty means "JWT".
	Method string
	// PasswordUsername, with FromPassword, is the CONNECT User Name that
	// marks a token in the password field; the request is NotRelevant for
	// any other user name. Empty means any user name (or none); then a
	// password that does not look like a JWT (three dot-separated parts,
	// the first beginning with "eyJ") is NotRelevant, so a chain can try
	// another password method.
	PasswordUsername string
	// KeyRefreshInterval is the least time between two key set fetches
	// caused by a token with an unknown key id (rotation); zero means
	// DefaultKeyRefreshInterval. A flood of tokens with invented key ids
	// thus costs the issuer one fetch per interval.
	KeyRefreshInterval time.Duration
	// KeyMaxAge is the age after which the key set is fetched again even
	// for a known key id; zero means DefaultKeyMaxAge.
	KeyMaxAge time.Duration
	// RequestTimeout bounds each fetch; zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxTokenSize bounds the token; zero means DefaultMaxTokenSize.
	MaxTokenSize int
	// HTTPClient fetches the discovery document and the key set; nil means
	// a client of its own. Its redirects and TLS settings apply.
	HTTPClient *http.Client
	// InsecureAllowHTTP allows http:// URLs for the issuer, discovery and
	// key set. Only for tests and loopback issuers.
	InsecureAllowHTTP bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives Debug records of refused tokens (never the token:
	// a SHA-256 prefix, key "token_sha256") and Warn records of failed
	// fetches; nil means slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told of each key set fetch (discovery and
	// JWKS, one call): a ComponentJWKS Call event with its latency and
	// whether it failed.
	Observer auth.Observer
}

// Authenticator verifies JSON Web Tokens of one OpenID Connect issuer. It
// is an [auth.Authenticator]: NotRelevant unless the request carries a
// token where Config.TokenFrom says, Pass with the token's identity as
// principal (expiry = exp), Fail for a token that is not valid,
// Unavailable when the issuer's keys cannot be fetched.
//
// It is safe for concurrent use.
type Authenticator struct {
	issuer    string
	discovery string
	jwksURL   string
	audiences []string
	algs      []jose.SignatureAlgorithm
	leeway    time.Duration
	userClaim string
	attrs     map[string]string
	from      TokenSource
	method    string
	pwUser    string
	timeout   time.Duration
	maxToken  int
	insecure  bool
	hc        *http.Client
	ownClient bool
	nowFn     func() time.Time
	log       *slog.Logger
	keys      *jwks.Set
}

// New validates cfg and returns an Authenticator. It fetches nothing: the
// keys are fetched on first use, or by [Authenticator.Refresh].
func New(cfg Config) (*Authenticator, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("jwtauth: Config.Issuer is required")
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("jwtauth: Config.Audiences needs at least one non-empty audience")
	}
	if cfg.TokenFrom > FromPassword {
		return nil, fmt.Errorf("jwtauth: invalid Config.TokenFrom %d", cfg.TokenFrom)
	}
	algs, err := jwks.Algorithms(cfg.Algorithms, DefaultAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("jwtauth: Config.Algorithms: %w", err)
	}
	a := &Authenticator{
		issuer:    cfg.Issuer,
		discovery: cfg.DiscoveryURL,
		jwksURL:   cfg.JWKSURL,
		audiences: slices.Clone(cfg.Audiences),
		algs:      algs,
		leeway:    cmp.Or(cfg.Leeway, DefaultLeeway),
		userClaim: cmp.Or(cfg.UsernameClaim, DefaultUsernameClaim),
		from:      cfg.TokenFrom,
		method:    cmp.Or(cfg.Method, DefaultMethod),
		pwUser:    cfg.PasswordUsername,
		timeout:   cmp.Or(cfg.RequestTimeout, DefaultRequestTimeout),
		maxToken:  cmp.Or(cfg.MaxTokenSize, DefaultMaxTokenSize),
		insecure:  cfg.InsecureAllowHTTP,
		hc:        cfg.HTTPClient,
		nowFn:     cfg.Now,
		log:       cfg.Logger,
	}
	if a.leeway < 0 {
		a.leeway = 0
	}
	if a.nowFn == nil {
		a.nowFn = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.hc == nil {
		a.hc = &http.Client{Timeout: a.timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
		a.ownClient = true
	}
	if a.jwksURL == "" && a.discovery == "" {
		a.discovery = strings.TrimSuffix(a.issuer, "/") + "/.well-known/openid-configuration"
	}
	for _, u := range []struct{ name, url string }{{"Issuer", a.issuer}, {"DiscoveryURL", a.discovery}, {"JWKSURL", a.jwksURL}} {
		if u.url == "" {
			continue
		}
		if err := a.checkURL(u.url); err != nil {
			return nil, fmt.Errorf("jwtauth: Config.%s: %w", u.name, err)
		}
	}
	if len(cfg.ClaimsToAttributes) > 0 {
		a.attrs = make(map[string]string, len(cfg.ClaimsToAttributes))
		for claim, attr := range cfg.ClaimsToAttributes {
			if claim == "" || attr == "" {
				return nil, errors.New("jwtauth: Config.ClaimsToAttributes: empty claim or attribute name")
			}
			a.attrs[claim] = attr
		}
	}
	fetch := a.fetch
	if obs := cfg.Observer; obs != nil {
		fetch = func(ctx context.Context) ([]jose.JSONWebKey, string, error) {
			start := time.Now()
			keys, iss, err := a.fetch(ctx)
			obs.Component(auth.ComponentEvent{Component: auth.ComponentJWKS, Kind: auth.Call, Failed: err != nil, Latency: time.Since(start)})
			return keys, iss, err
		}
	}
	a.keys = jwks.New(jwks.Config{
		Fetch:    fetch,
		Interval: cmp.Or(cfg.KeyRefreshInterval, DefaultKeyRefreshInterval),
		MaxAge:   cmp.Or(cfg.KeyMaxAge, DefaultKeyMaxAge),
		Now:      a.nowFn,
		Fetched: func(ctx context.Context, err error) {
			if err != nil {
				a.log.LogAttrs(ctx, slog.LevelWarn, "jwtauth: fetching the issuer's keys failed; keeping the last good keys",
					slog.String("method", a.method), slog.Any("err", err))
			}
		},
	})
	return a, nil
}

func (a *Authenticator) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && a.insecure:
	default:
		return fmt.Errorf("%q: scheme must be https (http needs InsecureAllowHTTP)", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: no host", raw)
	}
	return nil
}

// Close releases the idle connections of the authenticator's own HTTP
// client (none when Config.HTTPClient was given). The authenticator stays
// usable.
func (a *Authenticator) Close() {
	if a.ownClient {
		a.hc.CloseIdleConnections()
	}
}

// Method returns the Authentication Method (and the Principal's method
// name).
func (a *Authenticator) Method() string { return a.method }

// Refresh fetches the issuer's keys now. New fetches nothing, so a broker
// may call Refresh at start to fail early on a wrong URL; Authenticate
// fetches on first use anyway.
func (a *Authenticator) Refresh(ctx context.Context) error {
	return a.keys.Refresh(ctx)
}

// token returns the token the request carries and whether the request is
// for this authenticator.
func (a *Authenticator) token(req *auth.Request) ([]byte, bool) {
	if a.from == FromMethod {
		return req.AuthData, req.AuthMethod == a.method
	}
	if req.AuthMethod != "" || req.Reauth || !req.HasPassword {
		return nil, false
	}
	if a.pwUser != "" {
		return req.Password, req.HasUsername && req.Username == a.pwUser
	}
	return req.Password, looksLikeJWT(req.Password)
}

// looksLikeJWT reports whether p has the shape of a compact JWS whose
// header is a JSON object ("eyJ" is the base64url of `{"`).
func looksLikeJWT(p []byte) bool {
	return bytes.HasPrefix(p, []byte("eyJ")) && bytes.Count(p, []byte(".")) == 2
}

// Authenticate verifies the token in req. See [Authenticator].
func (a *Authenticator) Authenticate(ctx context.Context, req *auth.Request) auth.Result {
	raw, ok := a.token(req)
	if !ok {
		return auth.Result{}
	}
	code := auth.NotAuthorized
	if a.from == FromPassword {
		code = auth.BadUserNameOrPassword
	}
	if req.Step > 0 {
		return auth.FailResult(auth.ProtocolError, fmt.Errorf("%w: single-step method answered with AUTH", ErrMalformed))
	}
	if len(raw) == 0 {
		return auth.FailResult(code, fmt.Errorf("%w: empty token", ErrMalformed))
	}
	if len(raw) > a.maxToken {
		return auth.FailResult(code, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(raw), a.maxToken))
	}
	info, err := a.Verify(ctx, string(raw))
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			a.log.LogAttrs(ctx, slog.LevelDebug, "jwtauth: token not verified: issuer unavailable",
				slog.String("method", a.method), slog.String("client_id", req.ClientID),
				slog.String("token_sha256", shortHash(raw)), slog.Any("err", err))
			return auth.UnavailableResult(err)
		}
		a.log.LogAttrs(ctx, slog.LevelDebug, "jwtauth: token refused",
			slog.String("method", a.method), slog.String("client_id", req.ClientID),
			slog.String("token_sha256", shortHash(raw)), slog.Any("err", err))
		return auth.FailResult(code, err)
	}
	if req.Reauth && req.Current != nil && req.Current.Username() != info.Username {
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: from %q to %q", ErrIdentityChanged, req.Current.Username(), info.Username))
	}
	info.ClientID = req.ClientID
	return auth.PassResult(auth.NewPrincipal(info))
}

// shortHash is the first 12 hex digits of the token's SHA-256, for logs.
func shortHash(raw []byte) string {
	h := sha256.Sum256(raw)
	return hex.EncodeToString(h[:6])
}

// Verify verifies token (a compact JWS) and returns the principal it
// describes: Method, Username (the identity claim), Attributes (mapped
// claims) and Expiry (exp). Errors wrap the package's sentinels;
// ErrUnavailable when the keys could not be fetched.
func (a *Authenticator) Verify(ctx context.Context, token string) (auth.PrincipalInfo, error) {
	tok, err := jwks.Parse(token, a.algs)
	if err != nil {
		return auth.PrincipalInfo{}, mapErr(err)
	}
	// Cheap refusals first, on the unverified claims: an expired token or
	// one for another audience costs no key lookup and no fetch.
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return auth.PrincipalInfo{}, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	if err := a.checkClaims(&c); err != nil {
		return auth.PrincipalInfo{}, err
	}
	keys, iss, err := a.keys.Lookup(ctx, jwks.KeyID(tok))
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return auth.PrincipalInfo{}, fmt.Errorf("%w: waiting for the keys: %w", ErrUnavailable, err)
		}
		return auth.PrincipalInfo{}, mapErr(err)
	}
	var verified jwt.Claims
	var all map[string]json.RawMessage
	found := false
	for i := range keys {
		if tok.Claims(keys[i].Key, &verified, &all) == nil {
			found = true
			break
		}
	}
	if !found {
		return auth.PrincipalInfo{}, fmt.Errorf("%w: no key of the issuer verifies the signature", ErrSignature)
	}
	// The verified claims are checked again: the unverified ones were
	// read by the same parser from the same bytes, but nothing is trusted
	// that was not verified.
	if err := a.checkClaims(&verified); err != nil {
		return auth.PrincipalInfo{}, err
	}
	if verified.Issuer != iss {
		return auth.PrincipalInfo{}, fmt.Errorf("%w: %q, want %q", ErrIssuer, jwks.Truncate(verified.Issuer, 128), iss)
	}
	user, ok := stringClaim(all[a.userClaim])
	if !ok || user == "" {
		return auth.PrincipalInfo{}, fmt.Errorf("%w: %q (a non-empty string)", ErrMissingClaim, a.userClaim)
	}
	info := auth.PrincipalInfo{Method: a.method, Username: user, Expiry: verified.Expiry.Time()}
	if len(a.attrs) > 0 {
		info.Attributes = make(map[string]string, len(a.attrs))
		for claim, attr := range a.attrs {
			v, present := all[claim]
			if !present {
				continue
			}
			s, ok := scalar(v)
			if !ok {
				a.log.LogAttrs(ctx, slog.LevelDebug, "jwtauth: claim not mapped: not a string, number or boolean",
					slog.String("method", a.method), slog.String("username", user), slog.String("claim", claim))
				continue
			}
			info.Attributes[attr] = s
		}
	}
	return info, nil
}

// checkClaims checks the registered claims that need no key: iss and aud
// present, exp present and not passed, nbf and iat not in the future, an
// accepted audience, the configured issuer.
func (a *Authenticator) checkClaims(c *jwt.Claims) error {
	switch {
	case c.Issuer == "":
		return fmt.Errorf("%w: iss", ErrMissingClaim)
	case len(c.Audience) == 0:
		return fmt.Errorf("%w: aud", ErrMissingClaim)
	case c.Expiry == nil:
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	if c.Issuer != a.issuer {
		return fmt.Errorf("%w: %q, want %q", ErrIssuer, jwks.Truncate(c.Issuer, 128), a.issuer)
	}
	if err := jwks.CheckTime(c.Expiry, c.NotBefore, c.IssuedAt, a.nowFn(), a.leeway); err != nil {
		return mapErr(err)
	}
	return mapErr(jwks.CheckAudience(c.Audience, a.audiences))
}

// stringClaim returns a JSON string's value.
func stringClaim(v json.RawMessage) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// scalar returns a string, number or boolean claim as an attribute value.
func scalar(v json.RawMessage) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", false
	}
	switch c := v[0]; {
	case c == '"':
		return stringClaim(v)
	case c == 't' || c == 'f':
		var b bool
		if json.Unmarshal(v, &b) != nil {
			return "", false
		}
		return fmt.Sprint(b), true
	case c == '-' || (c >= '0' && c <= '9'):
		var n json.Number
		if json.Unmarshal(v, &n) != nil {
			return "", false
		}
		return n.String(), true
	}
	return "", false // null, array, object
}

// mapErr wraps an internal/jwks error in this package's sentinel for its
// kind; other errors (the fetch's, already wrapping ErrUnavailable) are
// returned as they are.
var mapErr = jwks.Sentinels{
	jwks.Malformed:   ErrMalformed,
	jwks.Algorithm:   ErrAlgorithm,
	jwks.Signature:   ErrSignature,
	jwks.Expired:     ErrExpired,
	jwks.NotYetValid: ErrNotYetValid,
	jwks.Audience:    ErrAudience,
	jwks.NoExpiry:    ErrMissingClaim,
}.Wrap

// discoveryDoc is the part of the OpenID Connect discovery document read.
type discoveryDoc struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// fetch reads the key set (through discovery unless JWKSURL is set).
func (a *Authenticator) fetch(ctx context.Context) ([]jose.JSONWebKey, string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	jwksURL := a.jwksURL
	if jwksURL == "" {
		var d discoveryDoc
		body, err := a.get(ctx, a.discovery)
		if err != nil {
			return nil, "", err
		}
		if err := json.Unmarshal(body, &d); err != nil {
			return nil, "", fmt.Errorf("%w: discovery document: %w", ErrUnavailable, err)
		}
		if d.Issuer != a.issuer {
			return nil, "", fmt.Errorf("%w: the discovery document names issuer %q, Config.Issuer is %q",
				ErrUnavailable, jwks.Truncate(d.Issuer, 256), a.issuer)
		}
		if err := a.checkURL(d.JWKSURI); err != nil {
			return nil, "", fmt.Errorf("%w: discovery document jwks_uri: %w", ErrUnavailable, err)
		}
		jwksURL = d.JWKSURI
	}
	body, err := a.get(ctx, jwksURL)
	if err != nil {
		return nil, "", err
	}
	keys, err := jwks.Decode(body, a.algs)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %w", ErrUnavailable, jwksURL, err)
	}
	return keys, a.issuer, nil
}

// get reads a JSON document of at most maxResponse bytes.
func (a *Authenticator) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: reading the answer: %w", ErrUnavailable, u, err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("%w: %s: answer larger than %d bytes", ErrUnavailable, u, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("%w: %s: HTTP %d", ErrUnavailable, u, resp.StatusCode)
	}
	return body, nil
}
