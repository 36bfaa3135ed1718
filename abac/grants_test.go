package abac_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

const grantsPolicy = `
rules:
  - principals: {attributes: [{role: device}]}
    brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["clients/{principal.clientId}/#", "telemetry/{principal.attributes.site}/+"]}
      - {method: Subscribe, topics: ["commands/{principal.clientId}", "broadcast/#"]}
  - principals: {usernames: [alice]}
    brokerResources:
      - {method: Publish, topics: ["users/{principal.username}/out", "clients/{principal.clientId}/#"]}
      - {method: Subscribe, topics: ["users/{principal.username}/in/+", "a/+/c"]}
  - principals: {clientIds: [other]}
    brokerResources:
      - {method: Publish, topics: ["never/for/alice"]}
`

func TestGrants(t *testing.T) {
	x, err := abac.Parse([]byte(grantsPolicy))
	require.NoError(t, err)
	alice := auth.NewPrincipal(auth.PrincipalInfo{Username: "alice", ClientID: "c1",
		Attributes: map[string]string{"role": "device", "site": "north"}})

	require.Equal(t, []abac.Grant{
		{Filter: "clients/c1/#", Rule: "rules[0].brokerResources[1]"},
		{Filter: "telemetry/north/+", Rule: "rules[0].brokerResources[1]"},
		{Filter: "users/alice/out", Rule: "rules[1].brokerResources[0]"},
	}, x.Grants(alice, auth.Publish), "clients/c1/# is granted by both rules: the first names it")
	require.Equal(t, []abac.Grant{
		{Filter: "broadcast/#", Rule: "rules[0].brokerResources[2]"},
		{Filter: "commands/c1", Rule: "rules[0].brokerResources[2]"},
		{Filter: "a/+/c", Rule: "rules[1].brokerResources[1]"},
		{Filter: "users/alice/in/+", Rule: "rules[1].brokerResources[1]"},
	}, x.Grants(alice, auth.Subscribe))
	require.Nil(t, x.Grants(alice, auth.Connect))
	require.Nil(t, x.Grants(nil, auth.Publish))

	t.Run("unusable_value_grants_nothing", func(t *testing.T) {
		// A site attribute holding '/' could add a level: the filter that
		// uses it is left out, as Authorize never matches it.
		p := auth.NewPrincipal(auth.PrincipalInfo{ClientID: "c2",
			Attributes: map[string]string{"role": "device", "site": "a/b"}})
		require.Equal(t, []abac.Grant{{Filter: "clients/c2/#", Rule: "rules[0].brokerResources[1]"}}, x.Grants(p, auth.Publish))
		noAttr := auth.NewPrincipal(auth.PrincipalInfo{ClientID: "c3", Attributes: map[string]string{"role": "device"}})
		require.Equal(t, []abac.Grant{{Filter: "clients/c3/#", Rule: "rules[0].brokerResources[1]"}}, x.Grants(noAttr, auth.Publish))
	})

	t.Run("unselected_principal_has_none", func(t *testing.T) {
		p := auth.NewPrincipal(auth.PrincipalInfo{Username: "bob", ClientID: "c4"})
		require.Empty(t, x.Grants(p, auth.Publish))
		require.Empty(t, x.Grants(p, auth.Subscribe))
	})
}

// The grants of a principal, written back as a policy of literal filters
// for that principal alone, decide every publish and subscribe exactly as
// the original policy does: they are all it allows, and nothing more.
func TestGrantsDecideAsAuthorize(t *testing.T) {
	x, err := abac.Parse([]byte(grantsPolicy))
	require.NoError(t, err)
	principals := []*auth.Principal{
		auth.NewPrincipal(auth.PrincipalInfo{Username: "alice", ClientID: "c1", Attributes: map[string]string{"role": "device", "site": "north"}}),
		auth.NewPrincipal(auth.PrincipalInfo{Username: "alice", ClientID: "other"}),
		auth.NewPrincipal(auth.PrincipalInfo{ClientID: "c2", Attributes: map[string]string{"role": "device", "site": "+"}}),
		auth.NewPrincipal(auth.PrincipalInfo{ClientID: "dev", Attributes: map[string]string{"role": "device"}}),
	}
	topics := []string{
		"clients/c1", "clients/c1/x", "clients/c1/x/y", "clients/c2/x", "clients/other/a", "clients/dev/z",
		"telemetry/north/t", "telemetry/north", "telemetry/north/t/u", "telemetry/+/t", "telemetry/south/t",
		"users/alice/out", "users/alice/in/1", "users/alice/in/+", "users/alice/in/#", "users/bob/out",
		"commands/c1", "commands/c2", "commands/+", "broadcast", "broadcast/a/b", "broadcast/#", "#", "+",
		"a/b/c", "a/+/c", "a/#", "a/b/c/d", "never/for/alice", "$SYS/x", "/clients/c1",
	}
	ctx := context.Background()
	for i, p := range principals {
		var pub, sub []string
		for _, g := range x.Grants(p, auth.Publish) {
			pub = append(pub, fmt.Sprintf("%q", g.Filter))
		}
		for _, g := range x.Grants(p, auth.Subscribe) {
			sub = append(sub, fmt.Sprintf("%q", g.Filter))
		}
		doc := "rules:\n  - principals: {clientIds: [" + fmt.Sprintf("%q", p.ClientID()) + "]}\n    brokerResources:\n      - {method: Connect}\n"
		if len(pub) > 0 {
			doc += fmt.Sprintf("      - {method: Publish, topics: %v}\n", join(pub))
		}
		if len(sub) > 0 {
			doc += fmt.Sprintf("      - {method: Subscribe, topics: %v}\n", join(sub))
		}
		back, err := abac.Parse([]byte(doc))
		require.NoError(t, err, doc)
		for _, topic := range topics {
			for _, kind := range []auth.ActionKind{auth.Publish, auth.Subscribe} {
				a := auth.Action{Kind: kind, Topic: topic}
				require.Equal(t, x.Authorize(ctx, p, a).Allowed, back.Authorize(ctx, p, a).Allowed,
					"principal %d, %v %q\n%s", i, kind, topic, doc)
			}
		}
	}
}

func join(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out + "]"
}

func BenchmarkGrants(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			spec := abac.Spec{}
			for i := range n {
				spec.Rules = append(spec.Rules, abac.Rule{
					Principals: abac.Principals{ClientIDs: []string{fmt.Sprintf("dev-%d", i)}},
					BrokerResources: []abac.BrokerResource{
						{Method: abac.MethodConnect},
						{Method: abac.MethodPublish, Topics: []string{"clients/{principal.clientId}/#", fmt.Sprintf("telemetry/%d", i)}},
						{Method: abac.MethodSubscribe, Topics: []string{"commands/{principal.clientId}"}},
					},
				})
			}
			x, err := abac.Compile(spec)
			require.NoError(b, err)
			p := auth.NewPrincipal(auth.PrincipalInfo{ClientID: fmt.Sprintf("dev-%d", n/2)})
			require.Len(b, x.Grants(p, auth.Publish), 2)
			runtime.GC() // the compiled policy is marked before timing, not during it
			b.ReportAllocs()
			for b.Loop() {
				_ = x.Grants(p, auth.Publish)
				_ = x.Grants(p, auth.Subscribe)
			}
		})
	}
}
