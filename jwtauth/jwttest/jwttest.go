// Package jwttest runs a local OpenID Connect issuer for tests, as
// net/http/httptest runs a server and go-oidc's oidctest an issuer: an
// httptest TLS server that serves the discovery document and the JSON Web
// Key Set, mints RS256 tokens, rotates its keys and can be taken down. It
// counts the key set fetches it serves, so a test can bound them.
//
// It is for tests only: its keys are generated per Issuer and never leave
// the process.
package jwttest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/jwtauth"
)

// Paths the Issuer serves.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/keys"
)

// Issuer is a local OpenID Connect issuer.
type Issuer struct {
	srv *httptest.Server

	mu        sync.Mutex
	signer    *rsa.PrivateKey
	kid       string
	published []jose.JSONWebKey
	serial    int

	down        atomic.Bool
	jwksFetches atomic.Int64
	discoveries atomic.Int64
}

// NewIssuer starts an issuer with one RS256 key. It is closed by
// tb.Cleanup.
func NewIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	i := &Issuer{}
	i.Rotate(tb, false)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DiscoveryPath, func(w http.ResponseWriter, r *http.Request) {
		if i.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		i.discoveries.Add(1)
		writeJSON(w, map[string]any{
			"issuer":                                i.URL(),
			"jwks_uri":                              i.URL() + JWKSPath,
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		if i.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		i.jwksFetches.Add(1)
		i.mu.Lock()
		set := jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), i.published...)}
		i.mu.Unlock()
		writeJSON(w, set)
	})
	i.srv = httptest.NewTLSServer(mux)
	tb.Cleanup(i.srv.Close)
	return i
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// URL returns the issuer URL (the iss of its tokens).
func (i *Issuer) URL() string { return i.srv.URL }

// Client returns an HTTP client that trusts the issuer's TLS certificate.
func (i *Issuer) Client() *http.Client { return i.srv.Client() }

// Certificate returns the issuer's self-signed TLS certificate, the CA to
// trust for its HTTPS URLs (write it as PEM for a configuration file).
func (i *Issuer) Certificate() *x509.Certificate { return i.srv.Certificate() }

// Config returns a jwtauth.Config for this issuer (discovery, its HTTP
// client) accepting audiences.
func (i *Issuer) Config(audiences ...string) jwtauth.Config {
	return jwtauth.Config{Issuer: i.URL(), Audiences: audiences, HTTPClient: i.Client()}
}

// Rotate makes a new signing key with a new key id. The old key stays
// published when keepOld is true (a graceful rotation), else it is
// withdrawn. It returns the new key id.
func (i *Issuer) Rotate(tb testing.TB, keepOld bool) string {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(tb, err)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.serial++
	i.signer, i.kid = k, "key-"+strconv.Itoa(i.serial)
	pub := jose.JSONWebKey{Key: &k.PublicKey, KeyID: i.kid, Algorithm: "RS256", Use: "sig"}
	if keepOld {
		i.published = append(i.published, pub)
	} else {
		i.published = []jose.JSONWebKey{pub}
	}
	return i.kid
}

// KeyID returns the id of the current signing key.
func (i *Issuer) KeyID() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.kid
}

// PublicKey returns the current signing key's public half.
func (i *Issuer) PublicKey() *rsa.PublicKey {
	i.mu.Lock()
	defer i.mu.Unlock()
	return &i.signer.PublicKey
}

// SetDown makes the issuer answer 503 to every request (down) or serve
// again.
func (i *Issuer) SetDown(down bool) { i.down.Store(down) }

// JWKSFetches returns how many times the key set was served.
func (i *Issuer) JWKSFetches() int64 { return i.jwksFetches.Load() }

// Claims describe a token to mint. Zero fields get defaults: Issuer the
// issuer's URL, Subject "device-1", IssuedAt now, Expiry IssuedAt + 1h.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	IssuedAt  time.Time
	NotBefore time.Time // zero: no nbf
	Expiry    time.Time
	// Extra are further claims, or replacements of the registered ones;
	// a nil value removes the claim.
	Extra map[string]any
	// KeyID overrides the kid header (the key that signs stays the
	// current one).
	KeyID string
}

// Mint returns a token for c signed with the current key.
func (i *Issuer) Mint(tb testing.TB, c Claims) string {
	tb.Helper()
	if c.Issuer == "" {
		c.Issuer = i.URL()
	}
	if c.Subject == "" {
		c.Subject = "device-1"
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if c.Expiry.IsZero() {
		c.Expiry = c.IssuedAt.Add(time.Hour)
	}
	payload := map[string]any{
		"iss": c.Issuer,
		"sub": c.Subject,
		"aud": c.Audience,
		"iat": c.IssuedAt.Unix(),
		"exp": c.Expiry.Unix(),
	}
	if !c.NotBefore.IsZero() {
		payload["nbf"] = c.NotBefore.Unix()
	}
	for k, v := range c.Extra {
		if v == nil {
			delete(payload, k)
			continue
		}
		payload[k] = v
	}
	return i.Sign(tb, payload, c.KeyID)
}

// Sign signs payload as it is with the current key (RS256); kid, when not
// empty, replaces the key id in the header.
func (i *Issuer) Sign(tb testing.TB, payload map[string]any, kid string) string {
	tb.Helper()
	i.mu.Lock()
	key, cur := i.signer, i.kid
	i.mu.Unlock()
	if kid == "" {
		kid = cur
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	require.NoError(tb, err)
	body, err := json.Marshal(payload)
	require.NoError(tb, err)
	jws, err := sig.Sign(body)
	require.NoError(tb, err)
	tok, err := jws.CompactSerialize()
	require.NoError(tb, err)
	return tok
}
