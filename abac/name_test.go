package abac_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// A named policy names itself in every decision, allow and deny, also
// through a session's decision cache, so that a deny record says which
// policy found no rule; an unnamed one leaves Decision.Policy empty.
func TestPolicyName(t *testing.T) {
	const doc = `rules: [{principals: {usernames: [alice]}, brokerResources: [{method: Connect}, {method: Publish, topics: ["a/#"]}]}]`
	ctx := context.Background()
	alice := auth.NewPrincipal(auth.PrincipalInfo{Username: "alice"})
	pub := func(topic string) auth.Action { return auth.Action{Kind: auth.Publish, Topic: topic} }

	x, err := abac.ParseNamed([]byte(doc), "BrokerAuthorization authz")
	require.NoError(t, err)
	require.Equal(t, "BrokerAuthorization authz", x.Name())
	require.Equal(t, auth.Decision{Allowed: true, Rule: "rules[0].brokerResources[1]", Policy: "BrokerAuthorization authz"}, x.Authorize(ctx, alice, pub("a/b")))
	require.Equal(t, auth.Decision{Policy: "BrokerAuthorization authz"}, x.Authorize(ctx, alice, pub("b")))
	cache := x.NewSessionAuthorizer()
	require.Equal(t, auth.Decision{Policy: "BrokerAuthorization authz"}, cache.Authorize(ctx, alice, pub("b")))
	require.Equal(t, auth.Decision{Policy: "BrokerAuthorization authz"}, cache.Authorize(ctx, alice, pub("b")), "cached")

	plain, err := abac.Parse([]byte(doc))
	require.NoError(t, err)
	require.Equal(t, auth.Deny, plain.Authorize(ctx, alice, pub("b")))

	path := filepath.Join(t.TempDir(), "p.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
	w, err := abac.NewWatcher(abac.WatchConfig{Path: path, Name: "authorizationFile p.yaml", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer w.Close()
	require.Equal(t, "authorizationFile p.yaml", w.Authorize(ctx, alice, pub("b")).Policy)
}
