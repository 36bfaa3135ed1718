package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAlgorithms(t *testing.T) {
	algs, err := Algorithms(nil, []string{"RS256", "ES256", "RS256"})
	require.NoError(t, err)
	require.Equal(t, []jose.SignatureAlgorithm{jose.RS256, jose.ES256}, algs)
	for _, bad := range []string{"none", "HS256", "HS512", "", "rs256"} {
		_, err := Algorithms([]string{"RS256", bad}, nil)
		require.Error(t, err, bad)
	}
}

// TestDecode: only public signing keys with an allowed (or no) alg are kept.
func TestDecode(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub := jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "ok", Algorithm: "ES256", Use: "sig"}
	enc := jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "enc", Use: "enc"}
	otherAlg := jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "wrong-alg", Algorithm: "ES384"}
	private := jose.JSONWebKey{Key: priv, KeyID: "private", Algorithm: "ES256"}
	oct := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct", Algorithm: "HS256"}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub, enc, otherAlg, private, oct}})
	require.NoError(t, err)
	keys, err := Decode(set, []jose.SignatureAlgorithm{jose.ES256})
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Equal(t, "ok", keys[0].KeyID)

	only, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{oct, private}})
	require.NoError(t, err)
	_, err = Decode(only, []jose.SignatureAlgorithm{jose.ES256})
	require.ErrorContains(t, err, "no usable public signing key")
	_, err = Decode([]byte("{"), nil)
	require.Error(t, err)
}

// TestLookupRateLimited: unknown key ids cause at most one fetch per
// Interval, and a failed refetch keeps the last good keys.
func TestLookupRateLimited(t *testing.T) {
	var fetches atomic.Int64
	var fail atomic.Bool
	var clock atomic.Int64
	clock.Store(time.Unix(1_700_000_000, 0).UnixNano())
	s := New(Config{
		Fetch: func(context.Context) ([]jose.JSONWebKey, string, error) {
			fetches.Add(1)
			if fail.Load() {
				return nil, "", errors.New("down")
			}
			return []jose.JSONWebKey{{KeyID: "k1"}}, "iss", nil
		},
		Interval: 10 * time.Second,
		MaxAge:   time.Hour,
		Now:      func() time.Time { return time.Unix(0, clock.Load()) },
	})
	keys, iss, err := s.Lookup(context.Background(), "k1")
	require.NoError(t, err)
	require.Equal(t, "iss", iss)
	require.Len(t, keys, 1)
	require.EqualValues(t, 1, fetches.Load())
	for range 100 {
		_, _, err := s.Lookup(context.Background(), "unknown")
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, Signature, e.Kind)
		require.ErrorIs(t, err, ErrUnknownKey)
	}
	require.EqualValues(t, 1, fetches.Load(), "the first fetch used the token")
	clock.Add(int64(10 * time.Second))
	_, _, _ = s.Lookup(context.Background(), "unknown")
	_, _, _ = s.Lookup(context.Background(), "unknown2")
	require.EqualValues(t, 2, fetches.Load())

	fail.Store(true)
	clock.Add(int64(2 * time.Hour))
	keys, _, err = s.Lookup(context.Background(), "k1")
	require.NoError(t, err, "stale keys are used when the refetch fails")
	require.Len(t, keys, 1)
	require.EqualValues(t, 3, fetches.Load())
}

func TestSentinelsWrap(t *testing.T) {
	errExpired := errors.New("expired")
	errBad := errors.New("bad")
	s := Sentinels{Malformed: errBad, Expired: errExpired}
	require.ErrorIs(t, s.Wrap(&Error{Kind: Expired, Err: errors.New("exp passed")}), errExpired)
	require.ErrorIs(t, s.Wrap(&Error{Kind: Audience, Err: errors.New("aud")}), errBad, "a kind without a sentinel is malformed")
	other := errors.New("fetch failed")
	require.Same(t, other, s.Wrap(other))
	require.NoError(t, s.Wrap(nil))
}
