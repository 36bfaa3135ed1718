// Package jwks verifies compact JWS JSON Web Tokens against a JSON Web Key
// Set that is fetched lazily, refetched on an unknown key id (rate-limited,
// concurrent refetches merged into one) and when it is older than a maximum
// age. It is shared by satauth (Kubernetes service account tokens) and
// jwtauth (any OpenID Connect issuer); each wraps the errors of this
// package in its own sentinels (see [Error]).
//
// Only asymmetric algorithms can be allowed ([Asymmetric]): "none" and HMAC
// are refused before any key is looked at, so a public key can never be used
// as an HMAC secret (algorithm confusion).
package jwks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/time/rate"

	"github.com/mqttauth/mqttauth/internal/flight"
)

// Kind classifies an [Error], so that each package maps it to its own
// sentinel.
type Kind uint8

// The kinds of error.
const (
	Malformed   Kind = iota // not a compact JWS JWT, or unreadable claims
	Algorithm               // alg outside the allow-list
	Signature               // no key verifies the signature, or no key has the kid
	Expired                 // exp has passed
	NotYetValid             // nbf or iat in the future (beyond the leeway)
	Audience                // none of the token's audiences is accepted
	NoExpiry                // the token has no exp claim
)

// Error is an error of this package. Err says why without naming the kind;
// the caller wraps it: fmt.Errorf("%w: %w", ErrExpired, err).
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Sentinels are a package's own errors, one per Kind, for [Sentinels.Wrap].
type Sentinels map[Kind]error

// Wrap wraps err, when it is an [*Error], in the sentinel s has for its
// Kind (s[Malformed] for a Kind s lacks); other errors, a fetch's say, are
// returned as they are.
func (s Sentinels) Wrap(err error) error {
	var e *Error
	if err == nil || !errors.As(err, &e) {
		return err
	}
	sentinel, ok := s[e.Kind]
	if !ok {
		sentinel = s[Malformed]
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

func errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}

// ErrUnknownKey is wrapped in a Signature [Error] when no key has the
// token's key id, even after a refetch.
var ErrUnknownKey = errors.New("no key with the token's key id")

// Asymmetric lists the algorithms that may be allowed. HMAC is never
// allowed: a JWKS holds public keys, and accepting HS256 would let anyone
// who knows a public key sign tokens with it.
var Asymmetric = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Algorithms validates an allow-list of algorithm names (def when names is
// empty) and returns it without duplicates.
func Algorithms(names, def []string) ([]jose.SignatureAlgorithm, error) {
	if len(names) == 0 {
		names = def
	}
	var algs []jose.SignatureAlgorithm
	for _, n := range names {
		alg := jose.SignatureAlgorithm(n)
		if !slices.Contains(Asymmetric, alg) {
			return nil, fmt.Errorf("%q is not an allowed asymmetric signature algorithm", n)
		}
		if !slices.Contains(algs, alg) {
			algs = append(algs, alg)
		}
	}
	return algs, nil
}

// header is the part of the JOSE header read before parsing.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// Parse checks the token's shape and algorithm and parses it, without
// verifying the signature. The algorithm is checked on the raw header
// before go-jose sees the token.
func Parse(token string, algs []jose.SignatureAlgorithm) (*jwt.JSONWebToken, error) {
	if strings.Count(token, ".") != 2 {
		return nil, errorf(Malformed, "not a compact JWS")
	}
	seg := token[:strings.IndexByte(token, '.')]
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, errorf(Malformed, "header: %w", err)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, errorf(Malformed, "header: %w", err)
	}
	if !slices.Contains(algs, jose.SignatureAlgorithm(h.Alg)) {
		return nil, errorf(Algorithm, "%q", Truncate(h.Alg, 16))
	}
	tok, err := jwt.ParseSigned(token, algs)
	if err != nil {
		return nil, errorf(Malformed, "%w", err)
	}
	return tok, nil
}

// KeyID returns the kid of the token's (only) signature.
func KeyID(tok *jwt.JSONWebToken) string {
	if len(tok.Headers) > 0 {
		return tok.Headers[0].KeyID
	}
	return ""
}

// Verify verifies the token's signature with the first of keys that
// matches and decodes its claims into out.
func Verify(tok *jwt.JSONWebToken, keys []jose.JSONWebKey, out any) error {
	for i := range keys {
		if err := tok.Claims(keys[i].Key, out); err == nil {
			return nil
		}
	}
	return errorf(Signature, "no key verifies the signature")
}

// CheckTime checks exp (required, strict: the session ends at exp, so a
// leeway there would only let an expired token connect for nothing) and
// nbf and iat (each optional, with leeway for clock skew).
func CheckTime(exp, nbf, iat *jwt.NumericDate, now time.Time, leeway time.Duration) error {
	if exp == nil {
		return errorf(NoExpiry, "no exp claim")
	}
	if t := exp.Time(); !now.Before(t) {
		return errorf(Expired, "exp %s", t.UTC().Format(time.RFC3339))
	}
	if nbf != nil && now.Add(leeway).Before(nbf.Time()) {
		return errorf(NotYetValid, "nbf %s", nbf.Time().UTC().Format(time.RFC3339))
	}
	if iat != nil && now.Add(leeway).Before(iat.Time()) {
		return errorf(NotYetValid, "iat %s", iat.Time().UTC().Format(time.RFC3339))
	}
	return nil
}

// CheckAudience reports whether one of got is in want.
func CheckAudience(got, want []string) error {
	for _, g := range got {
		if slices.Contains(want, g) {
			return nil
		}
	}
	return errorf(Audience, "token audiences %q, want one of %q", TruncateList(got), want)
}

// Decode parses a JSON Web Key Set and keeps the public signing keys whose
// alg (when given) is in algs. Keys go-jose cannot parse, private or
// symmetric ("oct") keys and encryption keys are skipped rather than
// failing the whole set; a set with no usable key is an error.
func Decode(data []byte, algs []jose.SignatureAlgorithm) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decoding the key set: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(r); err != nil {
			continue
		}
		if !key.Valid() || !key.IsPublic() {
			continue
		}
		if key.Algorithm != "" && !slices.Contains(algs, jose.SignatureAlgorithm(key.Algorithm)) {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("the key set holds no usable public signing key")
	}
	return keys, nil
}

// Config configures a [Set].
type Config struct {
	// Fetch reads the keys and the issuer to check. Required.
	Fetch func(ctx context.Context) (keys []jose.JSONWebKey, issuer string, err error)
	// Interval is the least time between two fetches caused by an unknown
	// key id (a token bucket of one, golang.org/x/time/rate). Required.
	Interval time.Duration
	// MaxAge is the age after which known keys are refetched too (still
	// at most once per Interval). Required.
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Fetched, when set, is called after each fetch with its error.
	Fetched func(ctx context.Context, err error)
}

// Set holds an issuer's public signing keys. It is safe for concurrent use.
type Set struct {
	cfg Config
	lim *rate.Limiter

	mu      sync.RWMutex
	keys    []jose.JSONWebKey
	issuer  string
	fetched time.Time
	lastErr error

	flight flight.Group[struct{}, struct{}]
}

// New returns a Set that fetches with cfg.Fetch. It fetches nothing yet.
func New(cfg Config) *Set {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Set{cfg: cfg, lim: rate.NewLimiter(rate.Every(cfg.Interval), 1)}
}

// Lookup returns the keys that may have signed a token with kid (all keys
// when kid is empty) and the issuer to check. An unknown kid causes a
// refetch unless one happened less than Interval ago; callers that find a
// refetch running wait for it. The error is the fetch's when no key was
// ever fetched or the refetch failed, else a Signature [Error] wrapping
// [ErrUnknownKey]. Keys kept from an earlier fetch are used when a
// refetch fails.
func (s *Set) Lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, string, error) {
	if found, iss, ok := s.fresh(kid); ok {
		return found, iss, nil
	}
	_, err, _ := s.flight.Do(ctx, struct{}{}, func(ctx context.Context) (struct{}, error) {
		if _, _, ok := s.fresh(kid); ok {
			return struct{}{}, nil // refreshed meanwhile
		}
		if !s.lim.AllowN(s.cfg.Now(), 1) {
			s.mu.RLock()
			haveKeys, lastErr := len(s.keys) > 0, s.lastErr
			s.mu.RUnlock()
			if !haveKeys {
				return struct{}{}, lastErr
			}
			return struct{}{}, nil // rate limited
		}
		return struct{}{}, s.fetch(ctx)
	})
	s.mu.RLock()
	found, iss := match(s.keys, kid), s.issuer
	s.mu.RUnlock()
	if len(found) > 0 {
		return found, iss, nil // possibly stale keys if the refetch failed
	}
	if err != nil {
		return nil, "", err
	}
	return nil, "", &Error{Kind: Signature, Err: fmt.Errorf("%w %q", ErrUnknownKey, Truncate(kid, 64))}
}

// Refresh fetches the keys now, whatever the rate limit, and counts the
// fetch against it.
func (s *Set) Refresh(ctx context.Context) error {
	s.lim.AllowN(s.cfg.Now(), 1)
	return s.fetch(ctx)
}

// fresh returns the keys for kid if they are known and not too old.
func (s *Set) fresh(kid string) ([]jose.JSONWebKey, string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	found := match(s.keys, kid)
	return found, s.issuer, len(found) > 0 && s.cfg.Now().Sub(s.fetched) < s.cfg.MaxAge
}

// match returns the keys with id kid; all keys when kid is empty.
func match(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	for i := range keys {
		if keys[i].KeyID == kid {
			return keys[i : i+1]
		}
	}
	return nil
}

func (s *Set) fetch(ctx context.Context) error {
	keys, iss, err := s.cfg.Fetch(ctx)
	if s.cfg.Fetched != nil {
		s.cfg.Fetched(ctx, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		return err
	}
	s.keys, s.issuer, s.fetched, s.lastErr = keys, iss, s.cfg.Now(), nil
	return nil
}

// Truncate shortens s to n bytes for an error message.
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// TruncateList shortens a list of strings for an error message.
func TruncateList(l []string) []string {
	if len(l) > 8 {
		l = l[:8]
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = Truncate(s, 64)
	}
	return out
}
