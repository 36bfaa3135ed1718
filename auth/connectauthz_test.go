package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// jsonRecords parses the JSON lines of buf.
func jsonRecords(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
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

// namedPolicy allows user alice only, and names itself in its decisions
// as an abac policy built by aioconfig does.
var namedPolicy = auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	if p != nil && p.Username() == "alice" {
		return auth.Decision{Allowed: true, Rule: "rules[0].brokerResources[0]", Policy: "BrokerAuthorization authz"}
	}
	return auth.Decision{Policy: "BrokerAuthorization authz"}
})

// The Connect decision at CONNECT goes through the observed path, as
// Publish and Subscribe do: the Observer counts it (allow and deny), and
// a deny writes an authorize_deny record that names the method, the user
// name, the listener, the policy and why; the refusal's deny record names
// the method and the user name too. (Before: Connect was never counted and
// the refusal said method="" without a user name.)
func TestConnectAuthorizationIsObserved(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	var buf bytes.Buffer
	mk := func() *harness {
		return newHarness(t, auth.Config{Observer: rec, Authorizer: namedPolicy,
			Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	}
	ok := connect("ONE", "ok:alice")
	ok.Listener = "obs:8883"
	require.False(t, mk().s.Connect(ctx, ok).Close)
	bad := connect("ONE", "ok:mallory")
	bad.Listener = "obs:8883"
	r := mk().s.Connect(ctx, bad)
	require.True(t, r.Close)
	require.Equal(t, auth.NotAuthorized, r.Packet.Code)
	require.ErrorIs(t, r.Err, auth.ErrNotAuthorized)
	require.ErrorContains(t, r.Err, "Connect denied by BrokerAuthorization authz: no rule matched")

	require.Equal(t, []auth.AuthzEvent{
		{Kind: auth.Connect, Result: auth.AuthzAllow},
		{Kind: auth.Connect, Result: auth.AuthzDeny},
	}, rec.authz)

	recs := jsonRecords(t, &buf)
	require.Len(t, recs, 3, "pass, then the Connect deny and the refusal")
	require.Equal(t, "pass", recs[0]["decision"])
	az, deny := recs[1], recs[2]
	require.Equal(t, "authorize_deny", az["decision"])
	require.Equal(t, "Connect", az["action"])
	require.NotContains(t, az, "topic", "Connect has no topic")
	require.Equal(t, "ONE", az["method"])
	require.Equal(t, "mallory", az["username"])
	require.Equal(t, "obs:8883", az["listener"])
	require.Equal(t, "BrokerAuthorization authz", az["policy"])
	require.Equal(t, "no rule matched", az["err"])
	require.Equal(t, "deny", deny["decision"])
	require.Equal(t, "ONE", deny["method"])
	require.Equal(t, "mallory", deny["username"])
	require.Contains(t, deny["err"], "BrokerAuthorization authz: no rule matched")
}

// An expired credential is refused with a record that names who it was.
func TestRefusedExpiredPrincipalIsNamed(t *testing.T) {
	var buf bytes.Buffer
	h := newHarness(t, auth.Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	require.True(t, h.s.Connect(context.Background(), connect("ONE", "past")).Close)
	recs := jsonRecords(t, &buf)
	require.Len(t, recs, 1)
	require.Equal(t, "deny", recs[0]["decision"])
	require.Equal(t, "alice", recs[0]["username"])
	require.Equal(t, "ONE", recs[0]["method"])
}

// Publish and Subscribe denies say why and which policy decided.
func TestAuthorizeDenyRecordSaysWhy(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	pol := auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if a.Kind == auth.Connect {
			return auth.Decision{Allowed: true, Rule: "rules[0]", Policy: "authorizationFile p.yaml"}
		}
		return auth.Decision{Policy: "authorizationFile p.yaml"}
	})
	h := newHarness(t, auth.Config{Authorizer: pol, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	req := connect("ONE", "ok:bob")
	req.Listener = "local:1883"
	require.False(t, h.s.Connect(ctx, req).Close)
	require.False(t, h.s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "x/y"}).Allowed)
	h.s.Close()
	require.False(t, h.s.Authorize(ctx, auth.Action{Kind: auth.Subscribe, Topic: "x/#"}).Allowed)
	recs := jsonRecords(t, &buf)
	require.Len(t, recs, 3)
	pub := recs[1]
	require.Equal(t, "authorize_deny", pub["decision"])
	require.Equal(t, "x/y", pub["topic"])
	require.Equal(t, "bob", pub["username"])
	require.Equal(t, "local:1883", pub["listener"])
	require.Equal(t, "authorizationFile p.yaml", pub["policy"])
	require.Equal(t, "no rule matched", pub["err"])
	require.Equal(t, "no principal: not authenticated, or the session has ended", recs[2]["err"])
}

// A re-authentication that passes is routine (a token renewed every few
// minutes): its record is at Debug, while a CONNECT's pass stays at the
// audit Level.
func TestReauthPassIsDebug(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	h := newHarness(t, auth.Config{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
	require.False(t, h.s.Auth(ctx, authPkt(auth.ReAuthenticate, "ONE", "ok")).Close)
	recs := jsonRecords(t, &buf)
	require.Len(t, recs, 2)
	require.Equal(t, "pass", recs[0]["decision"])
	require.Equal(t, "INFO", recs[0]["level"])
	require.Equal(t, "reauth_pass", recs[1]["decision"])
	require.Equal(t, "DEBUG", recs[1]["level"])
}

// A method that names itself is labelled with its name; one that does
// not, by its position in the chain: never by its Go type.
func TestUnnamedMethodLabel(t *testing.T) {
	rec := &recorder{}
	fail := auth.AuthenticatorFunc(func(context.Context, *auth.Request) auth.Result { return auth.Result{} })
	h := newHarness(t, auth.Config{
		Authenticator: auth.Chain{named{simple{}}, auth.Chain{fail, password}},
		Observer:      rec,
	})
	require.False(t, h.s.Connect(context.Background(), &auth.Request{ClientID: "c", Username: "alice", HasUsername: true,
		Password: []byte("secret"), HasPassword: true}).Close)
	var labels []string
	for _, e := range rec.authn {
		labels = append(labels, e.Method)
	}
	require.Equal(t, []string{"ONE", "unnamed-2.1", "unnamed-2.2"}, labels)
	for _, l := range labels {
		require.NotContains(t, l, ".Authenticator", "a Go type is never a label")
	}
	h2 := newHarness(t, auth.Config{Authenticator: password, Observer: rec})
	rec.authn = nil
	require.False(t, h2.s.Connect(context.Background(), &auth.Request{ClientID: "c", Username: "alice", HasUsername: true,
		Password: []byte("secret"), HasPassword: true}).Close)
	require.Equal(t, auth.UnnamedMethod, rec.authn[0].Method)
}

// A policy change that takes Connect away disconnects with a record that
// says which policy and why, cause policy for the Observer.
func TestPolicyRecheckRecordSaysWhy(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	rec := &recorder{}
	allow := true
	pol := auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if allow {
			return auth.Decision{Allowed: true, Rule: "rules[0]", Policy: "BrokerAuthorization authz"}
		}
		return auth.Decision{Policy: "BrokerAuthorization authz"}
	})
	h := newHarness(t, auth.Config{Authorizer: pol, Observer: rec, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	require.False(t, h.s.Connect(ctx, connect("ONE", "ok")).Close)
	allow = false
	require.Equal(t, 1, h.mgr.Recheck(ctx, auth.CheckConnect(pol)).Disconnected)
	var disconnect map[string]any
	for _, r := range jsonRecords(t, &buf) {
		if r["decision"] == "disconnect" {
			disconnect = r
		}
	}
	require.NotNil(t, disconnect, buf.String())
	require.Contains(t, disconnect["err"], "BrokerAuthorization authz: no rule matched")
	require.Contains(t, rec.session, auth.SessionEvent{Kind: auth.SessionDisconnected, Cause: auth.CausePolicy, Code: auth.NotAuthorized})
}
