package satauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet holds the cluster's public signing keys for local verification.
// Keys are fetched lazily, refetched when a token names an unknown key id
// (at most once per refresh interval, concurrent refetches merged into one)
// and when they are older than the maximum age.
type keySet struct {
	a        *Authenticator
	interval time.Duration
	maxAge   time.Duration

	mu      sync.RWMutex
	keys    []jose.JSONWebKey
	issuer  string // the configured or discovered issuer
	fetched time.Time
	tried   time.Time // last refetch attempt
	lastErr error

	flight flight[struct{}, struct{}]
}

// errUnknownKey is wrapped in ErrSignature when no key has the token's id.
var errUnknownKey = errors.New("no key with the token's key id")

// key returns the keys that may have signed a token with kid, and the
// issuer to check.
func (k *keySet) key(ctx context.Context, kid string) ([]jose.JSONWebKey, string, error) {
	if found, iss, ok := k.fresh(kid); ok {
		return found, iss, nil
	}
	// One refresh at a time, at most one per interval: callers that find
	// a refresh running wait for it.
	_, err, _ := k.flight.do(ctx, struct{}{}, func(ctx context.Context) (struct{}, error) {
		if _, _, ok := k.fresh(kid); ok {
			return struct{}{}, nil // refreshed meanwhile
		}
		k.mu.RLock()
		tried, haveKeys, lastErr := k.tried, len(k.keys) > 0, k.lastErr
		k.mu.RUnlock()
		if !tried.IsZero() && k.a.now().Sub(tried) < k.interval {
			if !haveKeys {
				return struct{}{}, lastErr
			}
			return struct{}{}, nil // rate limited
		}
		return struct{}{}, k.refresh(ctx)
	})
	k.mu.RLock()
	found, iss := match(k.keys, kid), k.issuer
	k.mu.RUnlock()
	if len(found) > 0 {
		return found, iss, nil // possibly stale keys if the refresh failed
	}
	if err != nil {
		return nil, "", err
	}
	return nil, "", fmt.Errorf("%w: %w %q", ErrSignature, errUnknownKey, truncate(kid, 64))
}

// fresh returns the keys for kid if they are known and not too old.
func (k *keySet) fresh(kid string) ([]jose.JSONWebKey, string, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	found := match(k.keys, kid)
	return found, k.issuer, len(found) > 0 && k.a.now().Sub(k.fetched) < k.maxAge
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

// refresh fetches the keys (and the issuer, when discovered) once.
func (k *keySet) refresh(ctx context.Context) error {
	k.mu.Lock()
	k.tried = k.a.now()
	k.mu.Unlock()
	keys, iss, err := k.fetch(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.a.stats.keyFetches.Add(1)
	if err != nil {
		k.lastErr = err
		k.a.logAPIError(ctx, "satauth: fetching the cluster's signing keys failed; keeping the last good keys", err)
		return err
	}
	k.keys, k.issuer, k.fetched, k.lastErr = keys, iss, k.a.now(), nil
	return nil
}

// jwks is a JSON Web Key Set as served by Kubernetes. Keys go-jose cannot
// parse are skipped rather than failing the whole set.
type jwks struct {
	Keys []json.RawMessage `json:"keys"`
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, string, error) {
	a := k.a
	var raw jwks
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
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, "", fmt.Errorf("%w: Config.JWKSFile: %w", ErrUnavailable, err)
		}
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
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(r); err != nil {
			continue
		}
		// Public asymmetric keys only: an "oct" key in a JWKS is refused.
		if !key.Valid() || !key.IsPublic() {
			continue
		}
		if key.Algorithm != "" && !slices.Contains(a.algs, jose.SignatureAlgorithm(key.Algorithm)) {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, "", fmt.Errorf("%w: the key set holds no usable public signing key", ErrUnavailable)
	}
	return keys, iss, nil
}
