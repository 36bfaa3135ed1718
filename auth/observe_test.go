package auth_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

// recorder is an auth.Observer that keeps every event.
type recorder struct {
	mu      sync.Mutex
	authn   []auth.AuthnEvent
	authz   []auth.AuthzEvent
	session []auth.SessionEvent
	comp    []auth.ComponentEvent
}

func (r *recorder) Authenticated(e auth.AuthnEvent) {
	r.mu.Lock()
	e.Latency = 0 // not compared
	r.authn = append(r.authn, e)
	r.mu.Unlock()
}
func (r *recorder) Authorized(e auth.AuthzEvent) {
	r.mu.Lock()
	r.authz = append(r.authz, e)
	r.mu.Unlock()
}
func (r *recorder) Session(e auth.SessionEvent) {
	r.mu.Lock()
	r.session = append(r.session, e)
	r.mu.Unlock()
}
func (r *recorder) Component(e auth.ComponentEvent) {
	r.mu.Lock()
	e.Latency = 0
	r.comp = append(r.comp, e)
	r.mu.Unlock()
}

// named is an authenticator that names its method.
type named struct{ auth.Authenticator }

func (named) MethodName() string { return "ONE" }

func TestObserverReportsEachMethodOfTheChain(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, auth.Config{
		Authenticator: auth.Chain{named{simple{}}, twoStep{}, password},
		Observer:      rec,
	})
	r := h.s.Connect(context.Background(), &auth.Request{ClientID: "c", Username: "alice", HasUsername: true, Password: []byte("secret"), HasPassword: true})
	require.False(t, r.Close)
	require.Equal(t, []auth.AuthnEvent{
		{Method: "ONE", Outcome: auth.NotRelevant},
		{Method: "unnamed-2", Outcome: auth.NotRelevant},
		{Method: "unnamed-3", Outcome: auth.Pass},
	}, rec.authn)
	require.Equal(t, []auth.SessionEvent{{Kind: auth.SessionConnected}}, rec.session)
}

func TestObserverSessionLife(t *testing.T) {
	policyAllows := true
	az := auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if p == nil || (a.Kind == auth.Connect && !policyAllows) || a.Topic == "denied" {
			return auth.Deny
		}
		return auth.Allow("rule-1")
	})
	ctx := context.Background()
	t.Run("authorize_allow_deny_error", func(t *testing.T) {
		rec := &recorder{}
		h := newHarness(t, auth.Config{Observer: rec, Authorizer: az})
		require.Equal(t, auth.Deny, h.s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "t"}))
		require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
		require.True(t, h.s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "t"}).Allowed)
		require.False(t, h.s.Authorize(ctx, auth.Action{Kind: auth.Subscribe, Topic: "denied"}).Allowed)
		require.Equal(t, []auth.AuthzEvent{
			{Kind: auth.Publish, Result: auth.AuthzError},
			{Kind: auth.Connect, Result: auth.AuthzAllow},
			{Kind: auth.Publish, Result: auth.AuthzAllow},
			{Kind: auth.Subscribe, Result: auth.AuthzDeny},
		}, rec.authz)
	})
	t.Run("refused", func(t *testing.T) {
		rec := &recorder{}
		h := newHarness(t, auth.Config{Observer: rec, Authorizer: az})
		require.True(t, h.s.Connect(ctx, connect("ONE", "bad")).Close)
		require.Equal(t, []auth.SessionEvent{{Kind: auth.SessionRefused, Code: auth.NotAuthorized}}, rec.session)
		require.Equal(t, []auth.AuthnEvent{{Method: "unnamed-1", Outcome: auth.Fail, Code: auth.NotAuthorized}}, rec.authn)
	})
	t.Run("expiry", func(t *testing.T) {
		rec := &recorder{}
		h := newHarness(t, auth.Config{Observer: rec, Authorizer: az, Authenticator: auth.Chain{simple{expiry: time.Minute}}})
		require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
		h.clock.Advance(2 * time.Minute)
		require.Equal(t, []auth.SessionEvent{
			{Kind: auth.SessionConnected},
			{Kind: auth.SessionDisconnected, Cause: auth.CauseExpiry, Code: auth.MaximumConnectTime},
			{Kind: auth.SessionClosed},
		}, rec.session)
	})
	t.Run("reauth_pass_then_fail", func(t *testing.T) {
		rec := &recorder{}
		h := newHarness(t, auth.Config{Observer: rec, Authorizer: az})
		require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
		require.False(t, h.s.Auth(ctx, authPkt(auth.ReAuthenticate, "ONE", "ok")).Close)
		require.True(t, h.s.Auth(ctx, authPkt(auth.ReAuthenticate, "ONE", "bad")).Close)
		require.Equal(t, []auth.SessionEvent{
			{Kind: auth.SessionConnected},
			{Kind: auth.SessionReauthenticated},
			{Kind: auth.SessionReauthFailed, Cause: auth.CauseReauth, Code: auth.NotAuthorized},
			{Kind: auth.SessionClosed},
		}, rec.session)
		require.Len(t, rec.authn, 3)
		require.True(t, rec.authn[1].Reauth)
	})
	t.Run("recheck_policy_and_revocation", func(t *testing.T) {
		rec := &recorder{}
		h := newHarness(t, auth.Config{Observer: rec, Authorizer: az})
		require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
		policyAllows = false
		defer func() { policyAllows = true }()
		rep := h.mgr.Recheck(ctx, auth.CheckConnect(az))
		require.Equal(t, 1, rep.Disconnected)
		require.Contains(t, rec.session, auth.SessionEvent{Kind: auth.SessionDisconnected, Cause: auth.CausePolicy, Code: auth.NotAuthorized})
		require.Equal(t, []auth.ComponentEvent{{Component: auth.ComponentManager, Kind: auth.Recheck, Count: 1, Disconnected: 1}}, rec.comp)

		rec2 := &recorder{}
		h2 := newHarness(t, auth.Config{Observer: rec2, Authorizer: auth.AllowAuthenticated})
		require.False(t, h2.s.Connect(ctx, connect("ONE", "ok")).Close)
		h2.mgr.Recheck(ctx, func(context.Context, *auth.Session) error { return auth.ErrRevoked })
		require.Contains(t, rec2.session, auth.SessionEvent{Kind: auth.SessionDisconnected, Cause: auth.CauseRevocation, Code: auth.NotAuthorized})
	})
	t.Run("protocol_error", func(t *testing.T) {
		rec := &recorder{}
		h := newHarness(t, auth.Config{Observer: rec})
		require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
		require.True(t, h.s.Auth(ctx, authPkt(auth.ContinueAuthentication, "ONE", "")).Close)
		require.Equal(t, auth.SessionEvent{Kind: auth.SessionDisconnected, Cause: auth.CauseProtocol, Code: auth.ProtocolError}, rec.session[1])
	})
}

// counter is an Observer that counts without allocating, as an exporter does.
type counter struct{ authz [4][3]int }

func (c *counter) Authenticated(auth.AuthnEvent) {}
func (c *counter) Authorized(e auth.AuthzEvent)  { c.authz[e.Kind][e.Result]++ }
func (c *counter) Session(auth.SessionEvent)     {}
func (c *counter) Component(auth.ComponentEvent) {}

func TestObserverAuthorizeAllocatesNothing(t *testing.T) {
	c := &counter{}
	h := newHarness(t, auth.Config{Observer: c})
	ctx := context.Background()
	require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
	a := auth.Action{Kind: auth.Publish, Topic: "a/b"}
	allocs := testing.AllocsPerRun(1000, func() { h.s.Authorize(ctx, a) })
	require.Zero(t, allocs)
	require.Equal(t, 1001, c.authz[auth.Publish][auth.AuthzAllow])
}

func TestAuditLog(t *testing.T) {
	ca := authtest.NewRootCA(t, "root")
	leaf := ca.Leaf(t, "dev-1", authtest.WithSerial(0x1234))
	ctx := context.Background()
	az := auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if a.Topic == "denied" {
			return auth.Deny
		}
		return auth.Allow("rules[0]")
	})
	records := func(buf *bytes.Buffer) []map[string]any {
		var out []map[string]any
		for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &m))
			out = append(out, m)
		}
		return out
	}
	t.Run("pass_and_deny_with_certificate", func(t *testing.T) {
		var buf bytes.Buffer
		h := newHarness(t, auth.Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), Authorizer: az})
		req := connect("ONE", "ok:dev-user")
		req.TLS = &tls.ConnectionState{PeerCertificates: leaf.Chain}
		require.False(t, h.s.Connect(ctx, req).Close)
		require.True(t, h.s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "allowed"}).Allowed)
		require.False(t, h.s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "denied"}).Allowed)
		recs := records(&buf)
		require.Len(t, recs, 2, "a pass and a deny; allows are not sampled by default")
		require.Equal(t, "pass", recs[0]["decision"])
		require.Equal(t, "dev-user", recs[0]["username"])
		require.Equal(t, "dev-1", recs[0]["client_id"])
		require.Equal(t, "1234", recs[0]["serial"])
		require.Regexp(t, `^([0-9A-F]{2}:){31}[0-9A-F]{2}$`, recs[0]["fingerprint_sha256"])
		require.Equal(t, "authorize_deny", recs[1]["decision"])
		require.Equal(t, "Publish", recs[1]["action"])
		require.Equal(t, "denied", recs[1]["topic"])
		require.Equal(t, recs[0]["fingerprint_sha256"], recs[1]["fingerprint_sha256"])
		require.NotContains(t, buf.String(), "ok:dev-user", "authentication data is never logged")
	})
	t.Run("levels_and_sampling", func(t *testing.T) {
		var buf bytes.Buffer
		h := newHarness(t, auth.Config{
			Logger:     slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Authorizer: az,
			Audit:      auth.AuditConfig{Level: slog.LevelDebug, DenyLevel: slog.LevelWarn, SampleAllows: 2},
		})
		require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
		for range 4 {
			h.s.Authorize(ctx, auth.Action{Kind: auth.Subscribe, Topic: "allowed"})
		}
		h.s.Authorize(ctx, auth.Action{Kind: auth.Subscribe, Topic: "denied"})
		recs := records(&buf)
		require.Len(t, recs, 4, "pass, two sampled allows of four, the deny")
		require.Equal(t, "DEBUG", recs[0]["level"])
		require.Equal(t, "authorize_allow", recs[1]["decision"])
		require.Equal(t, "rules[0]", recs[1]["rule"])
		require.Equal(t, "DEBUG", recs[1]["level"])
		require.Equal(t, "WARN", recs[3]["level"])
		require.Nil(t, recs[0]["serial"], "no certificate, no serial")
	})
}
