package abac_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// TestSessionAuthorizer: a Policy given to auth.Config gives each Session
// its own Cache, which answers as the policy does and forgets on Reset.
func TestSessionAuthorizer(t *testing.T) {
	x, err := abac.Parse([]byte(`{"rules": [{"principals": {"usernames": ["alice"]}, "brokerResources": [
	  {"method": "Connect"}, {"method": "Publish", "topics": ["a/#"]}]}]}`))
	require.NoError(t, err)
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{}, Authorizer: x})
	require.NoError(t, err)
	s1, s2 := m.NewSession(nil), m.NewSession(nil)
	c1, ok := s1.Authorizer().(*abac.Cache)
	require.True(t, ok, "a Policy gives each session an abac.Cache")
	require.NotSame(t, c1, s2.Authorizer())

	p := auth.NewPrincipal(auth.PrincipalInfo{Username: "alice"})
	for _, a := range []auth.Action{{Kind: auth.Publish, Topic: "a/1"}, {Kind: auth.Publish, Topic: "b"}} {
		require.Equal(t, x.Authorize(ctx, p, a), c1.Authorize(ctx, p, a))
	}
	require.Equal(t, 2, c1.Len())
	c1.Reset()
	require.Zero(t, c1.Len())
	require.True(t, c1.Authorize(ctx, p, auth.Action{Kind: auth.Publish, Topic: "a/1"}).Allowed)
}
