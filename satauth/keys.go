package satauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mqttauth/mqttauth/internal/jwks"
)

// keySet holds the cluster's public signing keys for local verification:
// an internal/jwks Set (fetched lazily, refetched when a token names an
// unknown key id at most once per refresh interval with concurrent
// refetches merged into one, and when older than the maximum age) whose
// fetch reads the API server's discovery and JWKS, or Config.JWKSFile.
type keySet struct {
	a        *Authenticator
	interval time.Duration
	maxAge   time.Duration

	once sync.Once
	set  *jwks.Set
}

// keys returns the underlying set, built on first use from the fields.
func (k *keySet) keys() *jwks.Set {
	k.once.Do(func() {
		k.set = jwks.New(jwks.Config{
			Fetch:    k.fetch,
			Interval: k.interval,
			MaxAge:   k.maxAge,
			Now:      k.a.now,
			Fetched: func(ctx context.Context, err error) {
				k.a.stats.keyFetches.Add(1)
				if err != nil {
					k.a.logAPIError(ctx, "satauth: fetching the cluster's signing keys failed; keeping the last good keys", err)
				}
			},
		})
	})
	return k.set
}

// key returns the keys that may have signed a token with kid, and the
// issuer to check.
func (k *keySet) key(ctx context.Context, kid string) ([]jose.JSONWebKey, string, error) {
	keys, iss, err := k.keys().Lookup(ctx, kid)
	return keys, iss, mapErr(err)
}

// refresh fetches the keys (and the issuer, when discovered) once.
func (k *keySet) refresh(ctx context.Context) error {
	return k.keys().Refresh(ctx)
}

// jwksDoc is a JSON Web Key Set as served by Kubernetes, read raw and
// decoded by jwks.Decode.
type jwksDoc = json.RawMessage

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, string, error) {
	a := k.a
	var raw jwksDoc
	iss := a.issuer
	switch {
	case a.jwksFile != "":
		b, err := os.ReadFile(a.jwksFile)
		if err != nil {
			return nil, "", fmt.Errorf("%w: reading Config.JWKSFile: %w", ErrUnavailable, err)
		}
		if len(b) > maxResponse {
			return nil, "", fmt.Errorf("%w: Config.JWKSFile larger than %d bytes", ErrUnavailable, maxResponse)
		}
		raw = b
	default:
		// Discovery comes from the API server the broker talks to, not
		// from the issuer URL, which usually does not resolve from the
		// broker (https://kubernetes.default.svc.cluster.local).
		var d discovery
		if err := a.kube.do(ctx, opDiscovery, http.MethodGet, "/.well-known/openid-configuration", nil, &d, nil); err != nil {
			return nil, "", err
		}
		if iss == "" {
			iss = d.Issuer
		} else if d.Issuer != iss {
			return nil, "", fmt.Errorf("%w: the API server's discovery names issuer %q, Config.Issuer is %q",
				ErrUnavailable, truncate(d.Issuer, 256), iss)
		}
		if iss == "" {
			return nil, "", fmt.Errorf("%w: the discovery document names no issuer", ErrUnavailable)
		}
		if err := a.kube.do(ctx, opJWKS, http.MethodGet, a.jwksPath, nil, &raw, nil); err != nil {
			return nil, "", err
		}
	}
	// Public asymmetric keys only: an "oct" key in a JWKS is refused.
	keys, err := jwks.Decode(raw, a.algs)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return keys, iss, nil
}

// mapErr wraps an internal/jwks error in the satauth sentinel for its kind;
// other errors (the fetch's, already satauth's) are returned as they are.
var mapErr = jwks.Sentinels{
	jwks.Malformed:   ErrMalformed,
	jwks.Algorithm:   ErrAlgorithm,
	jwks.Signature:   ErrSignature,
	jwks.Expired:     ErrExpired,
	jwks.NotYetValid: ErrNotYetValid,
	jwks.Audience:    ErrAudience,
	jwks.NoExpiry:    errNoExpiry,
}.Wrap

// errNoExpiry refuses a token without exp.
var errNoExpiry = fmt.Errorf("%w: legacy non-expiring tokens are refused", ErrMalformed)
