package satauth_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

var annotations = map[string]string{
	"aio-broker-auth/group":     "authz-sat",
	"aio-broker-auth/floor":     "floor1",
	"kubernetes.io/description": "not an attribute",
}

func TestPass(t *testing.T) {
	modes(t, func(t *testing.T, mode satauth.Mode) {
		srv := sattest.NewServer(t, sattest.Options{})
		uid := srv.AddServiceAccount("default", "sensor", annotations)
		require.NotEmpty(t, uid)
		a, _ := newAuth(t, srv, func(c *satauth.Config) { c.Mode = mode })
		iat := time.Now().Truncate(time.Second)
		tok := srv.Token("default", "sensor", sattest.TokenOptions{IssuedAt: iat, Lifetime: 10 * time.Minute})

		r := connect(a, tok)
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
		p := r.Principal
		require.Equal(t, "system:serviceaccount:default:sensor", p.Username())
		require.Equal(t, satauth.Method, p.Method())
		require.Equal(t, "client-1", p.ClientID())
		require.Equal(t, iat.Add(10*time.Minute), p.Expiry())
		require.Equal(t, map[string]string{"group": "authz-sat", "floor": "floor1"}, attrs(p))

		if mode == satauth.ModeLocal {
			require.Zero(t, srv.Calls(sattest.TokenReview))
			require.Equal(t, 1, srv.Calls(sattest.JWKS))
		} else {
			require.Equal(t, 1, srv.Calls(sattest.TokenReview))
		}
		require.Equal(t, 1, srv.Calls(sattest.ServiceAccountGet))
	})
}

func TestRelevance(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	tok := srv.Token("default", "sensor", sattest.TokenOptions{})
	off, _ := newAuth(t, srv, nil)
	on, _ := newAuth(t, srv, func(c *satauth.Config) { c.AllowUsernameFallback = true })

	fallback := &auth.Request{ClientID: "c", Username: "K8S-SAT-anything", HasUsername: true,
		Password: []byte(tok), HasPassword: true, ProtocolVersion: 4}
	for _, tc := range []struct {
		name    string
		a       *satauth.Authenticator
		req     *auth.Request
		outcome auth.Outcome
	}{
		{"other_method", off, &auth.Request{AuthMethod: "SCRAM-SHA-256", AuthData: []byte(tok)}, auth.NotRelevant},
		{"no_method", off, &auth.Request{}, auth.NotRelevant},
		{"method_case_matters", off, &auth.Request{AuthMethod: "k8s-sat", AuthData: []byte(tok)}, auth.NotRelevant},
		{"username_fallback_off", off, fallback, auth.NotRelevant},
		{"username_fallback_on", on, fallback, auth.Pass},
		{"fallback_other_username", on, &auth.Request{Username: "sensor", HasUsername: true, Password: []byte(tok)}, auth.NotRelevant},
		{"fallback_not_with_a_method", on, &auth.Request{AuthMethod: "X", Username: "K8S-SAT", HasUsername: true, Password: []byte(tok)}, auth.NotRelevant},
		{"empty_token", off, &auth.Request{AuthMethod: satauth.Method}, auth.Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.a.Authenticate(context.Background(), tc.req)
			require.Equal(t, tc.outcome, r.Outcome, "%v", r.Err)
			if r.Outcome == auth.Pass {
				// The CONNECT username is never the identity.
				require.Equal(t, "system:serviceaccount:default:sensor", r.Principal.Username())
			}
		})
	}
}

// TestBadTokens: every refusal is Fail 0x87 with its sentinel, in both
// modes, and nothing of the token reaches the logs.
func TestBadTokens(t *testing.T) {
	modes(t, func(t *testing.T, mode satauth.Mode) {
		srv := sattest.NewServer(t, sattest.Options{})
		uid := srv.AddServiceAccount("default", "sensor", annotations)
		srv.AddServiceAccount("default", "gone", nil)
		gone := srv.Token("default", "gone", sattest.TokenOptions{})
		srv.DeleteServiceAccount("default", "gone")
		srv.AddServiceAccount("default", "recreated", nil)
		recreated := srv.Token("default", "recreated", sattest.TokenOptions{})
		srv.AddServiceAccount("default", "recreated", nil) // new UID
		other := sattest.NewServer(t, sattest.Options{})
		other.AddServiceAccount("default", "sensor", nil)

		now := time.Now()
		good := srv.Token("default", "sensor", sattest.TokenOptions{})
		parts := strings.Split(good, ".")
		hmac := hmacWithPublicKey(t, srv, parts[1])
		none := b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "."

		// Expected sentinel per mode: the TokenReview API says "not
		// authenticated" where the local mode can tell why.
		byMode := func(local, review error) error {
			if mode == satauth.ModeLocal {
				return local
			}
			return review
		}
		cases := []struct {
			name  string
			token string
			want  error
		}{
			{"alg_none", none, satauth.ErrAlgorithm},
			{"hmac_signed_with_public_key", hmac, satauth.ErrAlgorithm},
			{"wrong_audience", srv.Token("default", "sensor", sattest.TokenOptions{Audiences: []string{"other"}}), satauth.ErrAudience},
			{"no_audience", srv.Token("default", "sensor", sattest.TokenOptions{Audiences: []string{}}), satauth.ErrAudience},
			{"wrong_issuer", srv.Token("default", "sensor", sattest.TokenOptions{Issuer: "https://evil.example"}),
				byMode(satauth.ErrIssuer, satauth.ErrNotAuthenticated)},
			{"expired", srv.Token("default", "sensor", sattest.TokenOptions{IssuedAt: now.Add(-2 * time.Hour)}), satauth.ErrExpired},
			{"not_yet_valid", srv.Token("default", "sensor", sattest.TokenOptions{IssuedAt: now.Add(10 * time.Minute)}),
				byMode(satauth.ErrNotYetValid, satauth.ErrNotAuthenticated)},
			{"nbf_in_future", srv.Token("default", "sensor", sattest.TokenOptions{NotBefore: now.Add(time.Hour)}),
				byMode(satauth.ErrNotYetValid, satauth.ErrNotAuthenticated)},
			{"other_cluster_key", other.Token("default", "sensor", sattest.TokenOptions{}),
				byMode(satauth.ErrSignature, satauth.ErrNotAuthenticated)},
			{"tampered_payload", parts[0] + "." + b64(`{"sub":"system:serviceaccount:kube-system:admin","aud":["aio-mq"],"exp":9999999999}`) + "." + parts[2],
				byMode(satauth.ErrSignature, satauth.ErrNotAuthenticated)},
			{"deleted_service_account", gone, byMode(satauth.ErrServiceAccountNotFound, satauth.ErrNotAuthenticated)},
			{"recreated_service_account", recreated, byMode(satauth.ErrServiceAccountNotFound, satauth.ErrNotAuthenticated)},
			{"subject_not_service_account", srv.Sign(map[string]any{"iss": srv.Issuer(), "sub": "alice", "aud": []string{"aio-mq"},
				"exp": now.Add(time.Hour).Unix()}, ""), byMode(satauth.ErrNotServiceAccount, satauth.ErrNotAuthenticated)},
			{"kubernetes_claim_mismatch", srv.Token("default", "sensor", sattest.TokenOptions{Subject: "system:serviceaccount:kube-system:sensor", UID: uid}),
				byMode(satauth.ErrNotServiceAccount, satauth.ErrNotAuthenticated)},
			{"no_exp", srv.Sign(map[string]any{"iss": srv.Issuer(), "sub": "system:serviceaccount:default:sensor", "aud": []string{"aio-mq"}}, ""), satauth.ErrMalformed},
			{"malformed_garbage", "not a token", satauth.ErrMalformed},
			{"malformed_two_parts", parts[0] + "." + parts[1], satauth.ErrMalformed},
			{"malformed_header", "!!!." + parts[1] + "." + parts[2], satauth.ErrMalformed},
			{"malformed_json_header", b64("[1,2]") + "." + parts[1] + "." + parts[2], satauth.ErrMalformed},
			{"malformed_payload", parts[0] + ".%%%." + parts[2], satauth.ErrMalformed},
			{"oversized", parts[0] + "." + strings.Repeat("A", satauth.DefaultMaxTokenSize) + "." + parts[2], satauth.ErrTooLarge},
		}
		a, logs := newAuth(t, srv, func(c *satauth.Config) { c.Mode = mode })
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := connect(a, tc.token)
				require.Equal(t, auth.Fail, r.Outcome, "%v", r.Err)
				require.Equal(t, auth.NotAuthorized, r.Code)
				require.ErrorIs(t, r.Err, tc.want)
				require.NotContains(t, r.Err.Error(), tc.token)
			})
		}
		require.Equal(t, auth.Pass, connect(a, good).Outcome)
		for _, tc := range cases {
			require.NotContains(t, logs.String(), tc.token)
		}
		require.NotContains(t, logs.String(), good)
	})
}

func TestAPIFailuresAreUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*sattest.Server)
		want  error
		log   string
	}{
		{"500", func(s *sattest.Server) { s.Fail(http.StatusInternalServerError) }, satauth.ErrUnavailable, "500"},
		{"503", func(s *sattest.Server) { s.Fail(http.StatusServiceUnavailable) }, satauth.ErrUnavailable, "503"},
		{"429", func(s *sattest.Server) { s.Fail(http.StatusTooManyRequests) }, satauth.ErrUnavailable, "429"},
		{"401_broker_token", func(s *sattest.Server) { s.Fail(http.StatusUnauthorized) }, satauth.ErrBrokerUnauthorized, "TokenFile"},
		{"403_no_tokenreview_rbac", func(s *sattest.Server) { s.Forbid(sattest.TokenReview, true) }, satauth.ErrBrokerForbidden, "system:auth-delegator"},
		{"403_no_serviceaccount_rbac", func(s *sattest.Server) { s.Forbid(sattest.ServiceAccountGet, true) }, satauth.ErrBrokerForbidden, "get on serviceaccounts"},
		// Which of the request's timers fires first (the client's, the
		// context's or the transport's response-header timeout, all set to
		// RequestTimeout) decides the wording: "deadline exceeded" or
		// "timeout awaiting response headers". Either says it timed out.
		{"hang", func(s *sattest.Server) { s.Hang(true) }, satauth.ErrUnavailable, "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := sattest.NewServer(t, sattest.Options{})
			srv.AddServiceAccount("default", "sensor", nil)
			a, logs := newAuth(t, srv, func(c *satauth.Config) { c.RequestTimeout = 300 * time.Millisecond })
			tok := srv.Token("default", "sensor", sattest.TokenOptions{})
			tc.setup(srv)
			start := time.Now()
			r := connect(a, tok)
			require.Less(t, time.Since(start), 5*time.Second)
			require.Equal(t, auth.Unavailable, r.Outcome, "%v", r.Err)
			require.ErrorIs(t, r.Err, tc.want)
			require.ErrorIs(t, r.Err, satauth.ErrUnavailable)
			if tc.log == "timed out" {
				require.Regexp(t, `deadline exceeded|timeout awaiting response headers`, logs.String())
			} else {
				require.Contains(t, logs.String(), tc.log)
			}
			require.NotContains(t, logs.String(), tok)
			require.NotContains(t, logs.String(), srv.BrokerToken())
			if tc.want == satauth.ErrBrokerForbidden {
				require.Contains(t, logs.String(), "level=ERROR")
				var apiErr *satauth.APIError
				require.ErrorAs(t, r.Err, &apiErr)
				require.Equal(t, http.StatusForbidden, apiErr.StatusCode)
			}
			// Recovery: the next connect works and nothing bad was cached.
			srv.Hang(false)
			srv.Fail(0)
			srv.Forbid(sattest.TokenReview, false)
			srv.Forbid(sattest.ServiceAccountGet, false)
			require.Equal(t, auth.Pass, connect(a, tok).Outcome)
		})
	}
	t.Run("connection_refused", func(t *testing.T) {
		srv := sattest.NewServer(t, sattest.Options{})
		srv.AddServiceAccount("default", "sensor", nil)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		dead := "https://" + l.Addr().String()
		require.NoError(t, l.Close())
		a, _ := newAuth(t, srv, func(c *satauth.Config) { c.APIServer = dead })
		r := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{}))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, satauth.ErrUnavailable)
	})
	t.Run("context_cancelled", func(t *testing.T) {
		srv := sattest.NewServer(t, sattest.Options{})
		srv.AddServiceAccount("default", "sensor", nil)
		a, _ := newAuth(t, srv, nil)
		srv.Hang(true)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		r := a.Authenticate(ctx, &auth.Request{AuthMethod: satauth.Method, AuthData: []byte(srv.Token("default", "sensor", sattest.TokenOptions{}))})
		require.Equal(t, auth.Unavailable, r.Outcome)
		srv.Hang(false)
	})
}

func TestCache(t *testing.T) {
	clock := authtest.NewClock(time.Now().Truncate(time.Second))
	srv := sattest.NewServer(t, sattest.Options{Now: clock.Now})
	srv.AddServiceAccount("default", "sensor", annotations)
	a, _ := newAuth(t, srv, func(c *satauth.Config) {
		c.Now = clock.Now
		c.CacheTTL = 2 * time.Minute
		c.AttributeTTL = time.Minute
	})
	tok := srv.Token("default", "sensor", sattest.TokenOptions{Lifetime: 3 * time.Minute})
	for range 5 {
		require.Equal(t, auth.Pass, connect(a, tok).Outcome)
	}
	require.Equal(t, 1, srv.Calls(sattest.TokenReview))
	require.Equal(t, 1, srv.Calls(sattest.ServiceAccountGet))

	// Annotations are re-read after AttributeTTL; the review stays cached.
	srv.SetAnnotations("default", "sensor", map[string]string{"aio-broker-auth/group": "moved"})
	clock.Advance(61 * time.Second)
	r := connect(a, tok)
	require.Equal(t, auth.Pass, r.Outcome)
	require.Equal(t, map[string]string{"group": "moved"}, attrs(r.Principal))
	require.Equal(t, 1, srv.Calls(sattest.TokenReview))
	require.Equal(t, 2, srv.Calls(sattest.ServiceAccountGet))

	// After CacheTTL the token is reviewed again.
	clock.Advance(time.Minute)
	require.Equal(t, auth.Pass, connect(a, tok).Outcome)
	require.Equal(t, 2, srv.Calls(sattest.TokenReview))

	// The entry never outlives exp: at exp the token fails without a call.
	clock.Advance(time.Minute)
	r = connect(a, tok)
	require.Equal(t, auth.Fail, r.Outcome)
	require.ErrorIs(t, r.Err, satauth.ErrExpired)
	require.Equal(t, 2, srv.Calls(sattest.TokenReview))
}

func TestCacheBounded(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.CacheSize = 3 })
	for range 10 {
		require.Equal(t, auth.Pass, connect(a, srv.Token("default", "sensor", sattest.TokenOptions{})).Outcome)
	}
	require.Equal(t, 3, a.CacheLen())

	off, _ := newAuth(t, srv, func(c *satauth.Config) { c.CacheSize = -1 })
	tok := srv.Token("default", "sensor", sattest.TokenOptions{})
	srv.ResetCalls()
	connect(off, tok)
	connect(off, tok)
	require.Equal(t, 2, srv.Calls(sattest.TokenReview))
	require.Zero(t, off.CacheLen())
}

// TestConcurrentReviewsMerged: many clients presenting one token at once
// make one TokenReview and one ServiceAccount read.
func TestConcurrentReviewsMerged(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	a, _ := newAuth(t, srv, nil)
	tok := srv.Token("default", "sensor", sattest.TokenOptions{})
	srv.Hang(true) // hold the first call until every client waits
	var wg sync.WaitGroup
	results := make([]auth.Result, 50)
	for i := range results {
		wg.Go(func() { results[i] = connect(a, tok) })
	}
	time.Sleep(200 * time.Millisecond)
	srv.Hang(false)
	wg.Wait()
	for _, r := range results {
		require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	}
	require.Equal(t, 1, srv.Calls(sattest.TokenReview))
	require.Equal(t, 1, srv.Calls(sattest.ServiceAccountGet))
}

func TestKeyRotation(t *testing.T) {
	clock := authtest.NewClock(time.Now())
	srv := sattest.NewServer(t, sattest.Options{Now: clock.Now})
	srv.AddServiceAccount("default", "sensor", nil)
	a, _ := newAuth(t, srv, func(c *satauth.Config) {
		c.Mode = satauth.ModeLocal
		c.Now = clock.Now
		c.KeyRefreshInterval = 10 * time.Second
	})
	require.Equal(t, auth.Pass, connect(a, srv.Token("default", "sensor", sattest.TokenOptions{})).Outcome)
	require.Equal(t, 1, srv.Calls(sattest.JWKS))

	// A token signed by a new key: one refetch, merged across clients.
	clock.Advance(11 * time.Second)
	srv.RotateKey(true)
	tok := srv.Token("default", "sensor", sattest.TokenOptions{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { require.Equal(t, auth.Pass, connect(a, tok).Outcome) })
	}
	wg.Wait()
	require.Equal(t, 2, srv.Calls(sattest.JWKS))

	// Unknown key ids do not make a refetch storm: at most one per interval.
	for i := range 50 {
		r := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{KeyID: "unknown-" + string(rune('a'+i%26))}))
		require.Equal(t, auth.Fail, r.Outcome)
		require.ErrorIs(t, r.Err, satauth.ErrSignature)
	}
	require.Equal(t, 2, srv.Calls(sattest.JWKS))
	clock.Advance(11 * time.Second)
	connect(a, srv.Token("default", "sensor", sattest.TokenOptions{KeyID: "unknown"}))
	require.Equal(t, 3, srv.Calls(sattest.JWKS))

	// Old keys keep working while published, and stop when removed.
	srv.RotateKey(false)
	clock.Advance(11 * time.Second)
	r := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{}))
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
}

func TestLocalKeysUnavailable(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	srv.Fail(http.StatusServiceUnavailable)
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.Mode = satauth.ModeLocal; c.KeyRefreshInterval = time.Millisecond })
	tok := srv.Token("default", "sensor", sattest.TokenOptions{})
	r := connect(a, tok)
	require.Equal(t, auth.Unavailable, r.Outcome, "%v", r.Err)
	srv.Fail(0)
	time.Sleep(2 * time.Millisecond)
	require.Equal(t, auth.Pass, connect(a, tok).Outcome)
}

func TestLocalIssuerMismatch(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.Mode = satauth.ModeLocal; c.Issuer = "https://other.example" })
	r := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{}))
	require.Equal(t, auth.Unavailable, r.Outcome)
	require.ErrorIs(t, r.Err, satauth.ErrUnavailable)
	require.Contains(t, r.Err.Error(), "discovery")

	// Empty Issuer: the discovered one.
	b, _ := newAuth(t, srv, func(c *satauth.Config) { c.Mode = satauth.ModeLocal; c.Issuer = "" })
	require.Equal(t, auth.Pass, connect(b, srv.Token("default", "sensor", sattest.TokenOptions{})).Outcome)
}

// TestJWKSFileOffline: with a JWKS file and no attributes, local mode makes
// no API call at all.
func TestJWKSFileOffline(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", annotations)
	file := srv.JWKSFile()
	a, err := satauth.New(context.Background(), satauth.Config{
		Audiences: []string{"aio-mq"}, Mode: satauth.ModeLocal, JWKSFile: file, Issuer: srv.Issuer(),
		DisableAttributes: true, KeyRefreshInterval: time.Millisecond,
	})
	require.NoError(t, err)
	defer a.Close()
	r := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{}))
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
	require.Zero(t, r.Principal.NumAttributes())
	for e := range 4 {
		require.Zero(t, srv.Calls(sattest.Endpoint(e)))
	}
	// A rotated key is picked up from the rewritten file.
	srv.RotateKey(false)
	srv.JWKSFile()
	time.Sleep(2 * time.Millisecond)
	require.Equal(t, auth.Pass, connect(a, srv.Token("default", "sensor", sattest.TokenOptions{})).Outcome)
}

func TestBrokerTokenRotation(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	a, _ := newAuth(t, srv, nil)
	require.Equal(t, auth.Pass, connect(a, srv.Token("default", "sensor", sattest.TokenOptions{})).Outcome)
	srv.RotateBrokerToken()
	r := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{}))
	require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
}

func TestInCluster(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	u, err := url.Parse(srv.URL())
	require.NoError(t, err)
	t.Setenv("KUBERNETES_SERVICE_HOST", u.Hostname())
	t.Setenv("KUBERNETES_SERVICE_PORT", u.Port())
	t.Cleanup(satauth.SetInClusterPaths(srv.TokenFile(), srv.CAFile()))
	a, err := satauth.New(context.Background(), satauth.Config{Audiences: []string{"aio-mq"}})
	require.NoError(t, err)
	defer a.Close()
	require.Equal(t, auth.Pass, connect(a, srv.Token("default", "sensor", sattest.TokenOptions{})).Outcome)

	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, err = satauth.New(context.Background(), satauth.Config{Audiences: []string{"aio-mq"}})
	require.ErrorContains(t, err, "KUBERNETES_SERVICE_HOST")
}

func TestWrongCA(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	// (Every httptest server shares one certificate: use another CA.)
	ca := authtest.NewRootCA(t, "Some Other CA")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caFile, authtest.CertsPEM(ca.Cert), 0o600))
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.CAFile = caFile })
	r := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{}))
	require.Equal(t, auth.Unavailable, r.Outcome)
	require.ErrorContains(t, r.Err, "certificate")
}

func TestConfigValidation(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	for _, tc := range []struct {
		name string
		mut  func(*satauth.Config)
		want string
	}{
		{"no_audience", func(c *satauth.Config) { c.Audiences = nil }, "Audiences"},
		{"empty_audience", func(c *satauth.Config) { c.Audiences = []string{""} }, "Audiences"},
		{"hmac_algorithm", func(c *satauth.Config) { c.Algorithms = []string{"HS256"} }, "HS256"},
		{"none_algorithm", func(c *satauth.Config) { c.Algorithms = []string{"none"} }, "none"},
		{"http_url", func(c *satauth.Config) { c.APIServer = "http://127.0.0.1:1" }, "https"},
		{"jwks_file_without_issuer", func(c *satauth.Config) {
			c.Mode, c.JWKSFile, c.Issuer = satauth.ModeLocal, "x", ""
		}, "Issuer"},
		{"missing_ca", func(c *satauth.Config) { c.CAFile = filepath.Join(dir, "nope") }, "CA"},
		{"empty_token_file", func(c *satauth.Config) { c.TokenFile = empty }, "token file"},
		{"bad_mode", func(c *satauth.Config) { c.Mode = 7 }, "Mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := srv.Config("aio-mq")
			tc.mut(&cfg)
			_, err := satauth.New(context.Background(), cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestSession runs the authenticator under auth.Session: the expiry is the
// token's exp, re-authentication with a refreshed token moves it, a token of
// another service account is refused, an API outage answers AUTH 0x18.
func TestSession(t *testing.T) {
	clock := authtest.NewClock(time.Now().Truncate(time.Second))
	srv := sattest.NewServer(t, sattest.Options{Now: clock.Now})
	srv.AddServiceAccount("default", "sensor", annotations)
	srv.AddServiceAccount("default", "intruder", nil)
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.Now = clock.Now })
	m, err := auth.NewManager(auth.Config{
		Authenticator: auth.Chain{a}, Authorizer: auth.AllowAuthenticated, Clock: clock,
		Logger: newDiscardLogger(),
	})
	require.NoError(t, err)
	ctx := context.Background()
	conn := authtest.NewConn()
	s := m.NewSession(conn)
	defer s.Close()

	first := srv.Token("default", "sensor", sattest.TokenOptions{Lifetime: 10 * time.Minute})
	resp := s.Connect(ctx, &auth.Request{ClientID: "c1", AuthMethod: satauth.Method, AuthData: []byte(first), ProtocolVersion: 5})
	require.Equal(t, auth.CONNACK, resp.Packet.Type)
	require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
	require.Equal(t, clock.Now().Add(10*time.Minute), s.Principal().Expiry())

	reauth := func(tok string) auth.Response {
		return s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: satauth.Method, Data: []byte(tok)})
	}
	// Refreshed token after 8 minutes: the expiry moves.
	clock.Advance(8 * time.Minute)
	second := srv.Token("default", "sensor", sattest.TokenOptions{Lifetime: 10 * time.Minute})
	resp = reauth(second)
	require.Equal(t, auth.AUTH, resp.Packet.Type)
	require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
	require.Equal(t, clock.Now().Add(10*time.Minute), s.Principal().Expiry())

	// The API is down: AUTH 0x18, still connected.
	srv.Fail(http.StatusServiceUnavailable)
	resp = reauth(srv.Token("default", "sensor", sattest.TokenOptions{Lifetime: 10 * time.Minute}))
	require.Equal(t, auth.ContinueAuthentication, resp.Packet.Code)
	require.False(t, resp.Close)
	srv.Fail(0)

	// Past the first token's exp, the connection lives on the second.
	clock.Advance(5 * time.Minute)
	_, closed := conn.Final()
	require.False(t, closed)

	// Another service account's token: DISCONNECT 0x87.
	resp = reauth(srv.Token("default", "intruder", sattest.TokenOptions{}))
	require.Equal(t, auth.DISCONNECT, resp.Packet.Type)
	require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
	require.True(t, resp.Close)
}

// TestReauthOtherAccount checks satauth's own refusal, independent of the
// Session's identity rule.
func TestReauthOtherAccount(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	srv.AddServiceAccount("default", "intruder", nil)
	a, _ := newAuth(t, srv, nil)
	cur := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{})).Principal
	require.NotNil(t, cur)
	r := a.Authenticate(context.Background(), &auth.Request{AuthMethod: satauth.Method, Reauth: true, Current: cur,
		AuthData: []byte(srv.Token("default", "intruder", sattest.TokenOptions{}))})
	require.Equal(t, auth.Fail, r.Outcome)
	require.Equal(t, auth.NotAuthorized, r.Code)
	require.ErrorIs(t, r.Err, satauth.ErrIdentityChanged)

	r = a.Authenticate(context.Background(), &auth.Request{AuthMethod: satauth.Method, Reauth: true, Current: cur,
		AuthData: []byte(srv.Token("default", "sensor", sattest.TokenOptions{}))})
	require.Equal(t, auth.Pass, r.Outcome)
}

func TestSessionExpiry(t *testing.T) {
	clock := authtest.NewClock(time.Now().Truncate(time.Second))
	srv := sattest.NewServer(t, sattest.Options{Now: clock.Now})
	srv.AddServiceAccount("default", "sensor", nil)
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.Now = clock.Now })
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Clock: clock, Logger: newDiscardLogger()})
	require.NoError(t, err)
	conn := authtest.NewConn()
	s := m.NewSession(conn)
	defer s.Close()
	resp := s.Connect(context.Background(), &auth.Request{ClientID: "c1", AuthMethod: satauth.Method,
		AuthData: []byte(srv.Token("default", "sensor", sattest.TokenOptions{Lifetime: 10 * time.Minute})), ProtocolVersion: 5})
	require.Equal(t, auth.Success, resp.Packet.Code)
	clock.Advance(10*time.Minute - time.Second)
	_, closed := conn.Final()
	require.False(t, closed)
	clock.Advance(time.Second)
	_, closed = conn.Final()
	require.True(t, closed)
}

// TestOversizedAPIAnswer: answers are read up to 1 MiB, then refused.
func TestOversizedAPIAnswer(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	huge := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":{"error":"`))
		_, _ = w.Write(bytes.Repeat([]byte("x"), 2<<20))
		_, _ = w.Write([]byte(`"}}`))
	}))
	defer huge.Close()
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.APIServer = huge.URL; c.HTTPClient = huge.Client() })
	r := connect(a, srv.Token("default", "sensor", sattest.TokenOptions{}))
	require.Equal(t, auth.Unavailable, r.Outcome)
	require.ErrorContains(t, r.Err, "larger than")
	huge.Client().CloseIdleConnections()
}
