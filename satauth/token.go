package satauth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// asymmetric lists the algorithms that may be allowed. HMAC is never
// allowed: a JWKS holds public keys, and accepting HS256 would let anyone
// who knows a public key sign tokens with it.
var asymmetric = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// DefaultAlgorithms are the algorithms allowed when Config.Algorithms is
// empty: those Kubernetes signs service account tokens with.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// claims are the claims of a bound service account token.
type claims struct {
	Issuer     string           `json:"iss"`
	Subject    string           `json:"sub"`
	Audience   jwt.Audience     `json:"aud"`
	Expiry     *jwt.NumericDate `json:"exp"`
	NotBefore  *jwt.NumericDate `json:"nbf"`
	IssuedAt   *jwt.NumericDate `json:"iat"`
	Kubernetes *struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
		Pod *struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// header is the part of the JOSE header read before parsing.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// parseToken checks the token's shape and algorithm and parses it, without
// verifying the signature.
func parseToken(token string, algs []jose.SignatureAlgorithm) (*jwt.JSONWebToken, *claims, error) {
	if strings.Count(token, ".") != 2 {
		return nil, nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	seg := token[:strings.IndexByte(token, '.')]
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if !slices.Contains(algs, jose.SignatureAlgorithm(h.Alg)) {
		return nil, nil, fmt.Errorf("%w: %q", ErrAlgorithm, truncate(h.Alg, 16))
	}
	tok, err := jwt.ParseSigned(token, algs)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	var c claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, nil, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	return tok, &c, nil
}

// identity is a verified service account token: what the caches keep.
type identity struct {
	username  string // system:serviceaccount:NS:NAME
	namespace string
	name      string
	uid       string // the service account's UID, when known
	pod       string // the pod the token is bound to, if any
	podUID    string
	expiry    time.Time
}

const saPrefix = "system:serviceaccount:"

// splitUsername splits system:serviceaccount:NS:NAME.
func splitUsername(u string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(u, saPrefix)
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return ns, name, true
}

// checkTime checks exp (required, strict) and nbf/iat (with leeway).
func checkTime(c *claims, now time.Time, leeway time.Duration) error {
	if c.Expiry == nil {
		return fmt.Errorf("%w: no exp claim (legacy non-expiring tokens are refused)", ErrMalformed)
	}
	if exp := c.Expiry.Time(); !now.Before(exp) {
		return fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil && now.Add(leeway).Before(c.NotBefore.Time()) {
		return fmt.Errorf("%w: nbf %s", ErrNotYetValid, c.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	if c.IssuedAt != nil && now.Add(leeway).Before(c.IssuedAt.Time()) {
		return fmt.Errorf("%w: iat %s", ErrNotYetValid, c.IssuedAt.Time().UTC().Format(time.RFC3339))
	}
	return nil
}

// checkAudience reports whether one of got is in want.
func checkAudience(got, want []string) error {
	for _, g := range got {
		if slices.Contains(want, g) {
			return nil
		}
	}
	return fmt.Errorf("%w: token audiences %q, want one of %q", ErrAudience, truncateList(got), want)
}

// kubeIdentity checks the Kubernetes claims of locally verified claims.
func kubeIdentity(c *claims) (identity, error) {
	ns, name, ok := splitUsername(c.Subject)
	if !ok {
		return identity{}, fmt.Errorf("%w: subject %q", ErrNotServiceAccount, truncate(c.Subject, 128))
	}
	k := c.Kubernetes
	if k == nil || k.Namespace != ns || k.ServiceAccount.Name != name || k.ServiceAccount.UID == "" {
		return identity{}, fmt.Errorf("%w: the kubernetes.io claim does not match the subject", ErrNotServiceAccount)
	}
	id := identity{
		username:  c.Subject,
		namespace: ns,
		name:      name,
		uid:       k.ServiceAccount.UID,
		expiry:    c.Expiry.Time(),
	}
	if k.Pod != nil {
		id.pod, id.podUID = k.Pod.Name, k.Pod.UID
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func truncateList(l []string) []string {
	if len(l) > 8 {
		l = l[:8]
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = truncate(s, 64)
	}
	return out
}
