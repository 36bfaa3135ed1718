package satauth

import (
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mqttauth/mqttauth/internal/jwks"
)

// asymmetric lists the algorithms that may be allowed (internal/jwks):
// HMAC and "none" never are.
var asymmetric = jwks.Asymmetric

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

// parseToken checks the token's shape and algorithm and parses it, without
// verifying the signature.
func parseToken(token string, algs []jose.SignatureAlgorithm) (*jwt.JSONWebToken, *claims, error) {
	tok, err := jwks.Parse(token, algs)
	if err != nil {
		return nil, nil, mapErr(err)
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
	return mapErr(jwks.CheckTime(c.Expiry, c.NotBefore, c.IssuedAt, now, leeway))
}

// checkAudience reports whether one of got is in want.
func checkAudience(got, want []string) error {
	return mapErr(jwks.CheckAudience(got, want))
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

func truncate(s string, n int) string { return jwks.Truncate(s, n) }
