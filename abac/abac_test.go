package abac_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ctx = context.Background()

func principal(clientID, username string, attrs map[string]string) *auth.Principal {
	return auth.NewPrincipal(auth.PrincipalInfo{Method: "test", ClientID: clientID, Username: username, Attributes: attrs})
}

func mustParse(t testing.TB, doc string) *abac.Policy {
	t.Helper()
	p, err := abac.Parse([]byte(doc))
	require.NoError(t, err)
	return p
}

func pub(topic string) auth.Action { return auth.Action{Kind: auth.Publish, Topic: topic} }
func sub(topic string) auth.Action { return auth.Action{Kind: auth.Subscribe, Topic: topic} }

var connect = auth.Action{Kind: auth.Connect}

func TestTutorialPolicy(t *testing.T) {
	x := mustParse(t, authtest.TutorialPolicy)
	// The tutorial's x509-auth maps CN=thermostat to group=thermostat_group
	// and the Fabrikam intermediate CA to manufacturer=fabrikam; every
	// device certificate is issued by that intermediate.
	thermostat := principal("thermostat", "thermostat", map[string]string{"group": "thermostat_group", "manufacturer": "fabrikam"})
	hygrometer := principal("hygrometer", "hygrometer", map[string]string{"group": "hygrometer_group", "manufacturer": "fabrikam"})
	heater := principal("heater", "heater", map[string]string{"manufacturer": "fabrikam"})
	lightbulb := principal("lightbulb", "lightbulb", map[string]string{"manufacturer": "fabrikam"})
	stranger := principal("stranger", "stranger", nil)

	tests := []struct {
		name string
		p    *auth.Principal
		a    auth.Action
		rule string // empty: denied
	}{
		{"thermostat_connects", thermostat, connect, "rules[0].brokerResources[0]"},
		{"thermostat_publishes_temperature", thermostat, pub("telemetry/temperature"), "rules[0].brokerResources[1]"},
		{"thermostat_publish_humidity_denied_RC135", thermostat, pub("telemetry/humidity"), ""},
		{"thermostat_publishes_heartbeat_as_fabrikam", thermostat, pub("health/heartbeat"), "rules[2].brokerResources[1]"},
		{"hygrometer_publishes_humidity", hygrometer, pub("telemetry/humidity"), "rules[1].brokerResources[1]"},
		{"hygrometer_publish_temperature_denied", hygrometer, pub("telemetry/temperature"), ""},
		{"heater_subscribe_heartbeat_denied_RC135", heater, sub("health/heartbeat"), ""},
		{"heater_subscribes_temperature", heater, sub("telemetry/temperature"), "rules[3].brokerResources[1]"},
		{"heater_subscribes_humidity", heater, sub("telemetry/humidity"), "rules[3].brokerResources[1]"},
		{"heater_subscribe_wildcard_denied", heater, sub("telemetry/+"), ""},
		{"lightbulb_publishes_heartbeat", lightbulb, pub("health/heartbeat"), "rules[2].brokerResources[1]"},
		{"lightbulb_connects_as_fabrikam", lightbulb, connect, "rules[2].brokerResources[0]"},
		{"lightbulb_publish_temperature_denied", lightbulb, pub("telemetry/temperature"), ""},
		{"lightbulb_subscribe_denied", lightbulb, sub("health/heartbeat"), ""},
		{"stranger_connect_denied", stranger, connect, ""},
		{"thermostat_subscribe_denied", thermostat, sub("telemetry/temperature"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := x.Authorize(ctx, tt.p, tt.a)
			require.Equal(t, tt.rule != "", d.Allowed)
			require.Equal(t, tt.rule, d.Rule)
			if !d.Allowed {
				require.Equal(t, auth.NotAuthorized, d.Code())
			}
			require.Equal(t, d, x.Explain(tt.p, tt.a).Decision)
		})
	}
}

func TestSemantics(t *testing.T) {
	x := mustParse(t, `
rules:
  - principals:
      clientIds: [dev-1]
      usernames: [alice]
    brokerResources:
      - method: Connect
        clientIds: [dev-1, "alice-*"]
      - method: Publish
        topics: ["devices/{principal.clientId}/telemetry", "users/{principal.username}/+/x"]
  - principals:
      attributes:
        - {building: b22, floor: "3"}
        - {role: admin}
    brokerResources:
      - method: Connect
        clientIds: ["{principal.attributes.building}*"]
      - method: Subscribe
        topics: ["sites/{principal.attributes.building}/#", "$SYS/broker/+"]
      - method: Publish
        topics: ["#"]
`)
	dev1 := principal("dev-1", "", nil)
	alice := principal("alice-phone", "alice", nil)
	Alice := principal("alice-phone", "Alice", nil)
	b22 := principal("b22-sensor", "", map[string]string{"building": "b22", "floor": "3"})
	b22wrongFloor := principal("b22-sensor", "", map[string]string{"building": "b22", "floor": "4"})
	admin := principal("b22-admin", "", map[string]string{"role": "admin"})
	adminOtherID := principal("x", "", map[string]string{"role": "admin", "building": "b22"})

	tests := []struct {
		name string
		p    *auth.Principal
		a    auth.Action
		rule string
	}{
		{"clientid_principal_connects", dev1, connect, "rules[0].brokerResources[0]"},
		{"username_principal_connect_prefix_glob", alice, connect, "rules[0].brokerResources[0]"},
		{"username_is_case_sensitive", Alice, connect, ""},
		{"publish_own_clientid_topic", dev1, pub("devices/dev-1/telemetry"), "rules[0].brokerResources[1]"},
		{"publish_other_clientid_topic_denied", dev1, pub("devices/dev-2/telemetry"), ""},
		{"publish_username_topic_plus", alice, pub("users/alice/anything/x"), "rules[0].brokerResources[1]"},
		{"publish_username_topic_wrong_user", alice, pub("users/bob/anything/x"), ""},
		{"publish_username_missing_variable_no_match", dev1, pub("users//a/x"), ""},
		{"attribute_map_all_pairs_AND", b22, connect, "rules[1].brokerResources[0]"},
		{"attribute_map_one_pair_wrong_denied", b22wrongFloor, connect, ""},
		{"attribute_maps_OR", admin, pub("anything/at/all"), "rules[1].brokerResources[2]"},
		{"connect_clientid_variable_prefix_denied", adminOtherID, connect, ""},
		{"admin_without_building_cannot_use_variable", admin, sub("sites/b22/x"), ""},
		{"subscribe_variable_hash", b22, sub("sites/b22/#"), "rules[1].brokerResources[1]"},
		{"subscribe_variable_other_site_denied", b22, sub("sites/b23/#"), ""},
		{"subscribe_broader_than_allowed_denied_0x87", b22, sub("sites/#"), ""},
		{"subscribe_hash_when_only_prefix_allowed_denied", b22, sub("#"), ""},
		{"subscribe_parent_of_hash_allowed", b22, sub("sites/b22"), "rules[1].brokerResources[1]"},
		{"subscribe_shared_checked_on_filter", b22, sub("$share/g1/sites/b22/+/t"), "rules[1].brokerResources[1]"},
		{"subscribe_shared_broader_denied", b22, sub("$share/g1/sites/+/t"), ""},
		{"subscribe_shared_without_filter_denied", b22, sub("$share/g1"), ""},
		{"subscribe_shared_empty_group_denied", b22, sub("$share//sites/b22/x"), ""},
		{"subscribe_dollar_literal_allowed", b22, sub("$SYS/broker/load"), "rules[1].brokerResources[1]"},
		{"subscribe_dollar_plus_allowed", b22, sub("$SYS/broker/+"), "rules[1].brokerResources[1]"},
		{"subscribe_dollar_hash_broader_denied", b22, sub("$SYS/broker/#"), ""},
		{"publish_hash_policy_allows_ordinary_topic", admin, pub("a/b"), "rules[1].brokerResources[2]"},
		{"publish_hash_policy_does_not_reach_dollar_topics_4_7_2", admin, pub("$SYS/x"), ""},
		{"publish_invalid_topic_with_wildcard_denied", admin, pub("a/+"), ""},
		{"publish_empty_topic_denied", admin, pub(""), ""},
		{"publish_nul_topic_denied", admin, pub("a\x00b"), ""},
		{"subscribe_invalid_filter_denied", b22, sub("sites/b22/#/x"), ""},
		{"subscribe_invalid_mixed_wildcard_denied", b22, sub("sites/b22/a+"), ""},
		{"unknown_action_denied", admin, auth.Action{Kind: 9, Topic: "a"}, ""},
		{"nil_principal_denied", nil, connect, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := x.Authorize(ctx, tt.p, tt.a)
			require.Equal(t, tt.rule != "", d.Allowed, "rule %q", d.Rule)
			require.Equal(t, tt.rule, d.Rule)
			require.Equal(t, d, x.Explain(tt.p, tt.a).Decision)
		})
	}
}

// TestInjection proves that a principal value that is empty or holds '+',
// '#', '/' or NUL never widens access through a variable.
func TestInjection(t *testing.T) {
	x := mustParse(t, `
rules:
  - principals:
      attributes: [{role: device}]
    brokerResources:
      - method: Connect
        clientIds: ["{principal.clientId}", "{principal.username}*"]
      - method: Publish
        topics: ["clients/{principal.clientId}/#", "users/{principal.username}", "sites/{principal.attributes.site}/data"]
      - method: Subscribe
        topics: ["clients/{principal.clientId}/#", "users/{principal.username}", "sites/{principal.attributes.site}/data"]
`)
	dev := func(id, user, site string) *auth.Principal {
		a := map[string]string{"role": "device"}
		if site != "\xff" {
			a["site"] = site
		}
		return principal(id, user, a)
	}
	tests := []struct {
		name string
		p    *auth.Principal
		a    auth.Action
	}{
		{"username_hash_subscribe_hash", dev("c", "#", "s"), sub("users/#")},
		{"username_hash_subscribe_literal_hash_level", dev("c", "#", "s"), sub("users/#")},
		{"username_plus_subscribe_plus", dev("c", "+", "s"), sub("users/+")},
		{"username_plus_publish_any", dev("c", "+", "s"), pub("users/bob")},
		{"username_with_slash_publish", dev("c", "a/b", "s"), pub("users/a/b")},
		{"clientid_with_slash_publish", dev("a/b", "u", "s"), pub("clients/a/b/x")},
		{"clientid_with_slash_subscribe", dev("a/b", "u", "s"), sub("clients/a/b/#")},
		{"clientid_with_slash_parent_topic", dev("a/b", "u", "s"), pub("clients/a")},
		{"clientid_plus_subscribe", dev("+", "u", "s"), sub("clients/+/#")},
		{"clientid_hash_subscribe", dev("#", "u", "s"), sub("clients/#")},
		{"clientid_nul", dev("a\x00", "u", "s"), pub("clients/a\x00/x")},
		{"empty_attribute_publish_empty_level", dev("c", "u", ""), pub("sites//data")},
		{"missing_attribute_publish_empty_level", dev("c", "u", "\xff"), pub("sites//data")},
		{"attribute_hash", dev("c", "u", "#"), sub("sites/#")},
		{"attribute_plus", dev("c", "u", "+"), sub("sites/+/data")},
		{"attribute_slash", dev("c", "u", "x/y"), pub("sites/x/y/data")},
		{"empty_username_prefix_glob_connect", dev("anything", "", "s"), pub("users/")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := x.Authorize(ctx, tt.p, tt.a)
			require.False(t, d.Allowed, "allowed by %s", d.Rule)
			require.False(t, x.Explain(tt.p, tt.a).Decision.Allowed)
		})
	}

	t.Run("connect_with_empty_username_and_glob_does_not_match_everything", func(t *testing.T) {
		y := mustParse(t, `
rules:
  - principals: {attributes: [{role: device}]}
    brokerResources: [{method: Connect, clientIds: ["{principal.username}*"]}]
`)
		require.False(t, y.Authorize(ctx, principal("any", "", map[string]string{"role": "device"}), connect).Allowed)
		require.False(t, y.Authorize(ctx, principal("a/b-1", "a/b", map[string]string{"role": "device"}), connect).Allowed)
		require.True(t, y.Authorize(ctx, principal("bob-1", "bob", map[string]string{"role": "device"}), connect).Allowed)
	})

	t.Run("valid_values_still_work", func(t *testing.T) {
		p := dev("dev-1", "bob", "s1")
		require.True(t, x.Authorize(ctx, p, pub("clients/dev-1/x/y")).Allowed)
		require.True(t, x.Authorize(ctx, p, sub("clients/dev-1/#")).Allowed)
		require.True(t, x.Authorize(ctx, p, pub("users/bob")).Allowed)
		require.True(t, x.Authorize(ctx, p, pub("sites/s1/data")).Allowed)
		require.True(t, x.Authorize(ctx, p, connect).Allowed)
	})
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		rule  int
		field string
		err   error
	}{
		{"unknown_top_level_field", "rule: []", -1, "rule", abac.ErrUnknownField},
		{"unknown_rule_field", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect}], extra: 1}]", 0, "extra", abac.ErrUnknownField},
		{"unknown_principal_field", "rules: [{principals: {username: [a]}, brokerResources: [{method: Connect}]}]", 0, "principals.username", abac.ErrUnknownField},
		{"unknown_resource_field", `rules:
- principals: {usernames: [a]}
  brokerResources: [{method: Connect}]
- principals: {usernames: [a]}
  brokerResources: [{method: Connect}, {method: Publish, topic: [a]}]`, 1, "brokerResources[1].topic", abac.ErrUnknownField},
		{"variable_not_whole_level", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish, topics: [ok, 'client-{principal.clientId}/x']}]}]", 0, "brokerResources[0].topics[1]", abac.ErrInvalidVariable},
		{"unknown_variable", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish, topics: ['{principal.name}']}]}]", 0, "brokerResources[0].topics[0]", abac.ErrInvalidVariable},
		{"empty_attribute_variable", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Subscribe, topics: ['{principal.attributes.}']}]}]", 0, "brokerResources[0].topics[0]", abac.ErrInvalidVariable},
		{"hash_not_last", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Subscribe, topics: ['a/#/b']}]}]", 0, "brokerResources[0].topics[0]", abac.ErrInvalidTopic},
		{"mixed_wildcard", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish, topics: ['a/b+']}]}]", 0, "brokerResources[0].topics[0]", abac.ErrInvalidTopic},
		{"empty_topic", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish, topics: ['']}]}]", 0, "brokerResources[0].topics[0]", abac.ErrInvalidTopic},
		{"share_prefix_in_policy", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Subscribe, topics: ['$share/g/a']}]}]", 0, "brokerResources[0].topics[0]", abac.ErrInvalidTopic},
		{"empty_rules", "rules: []", -1, "rules", abac.ErrEmptyPolicy},
		{"no_rules_key", "{}", -1, "rules", abac.ErrEmptyPolicy},
		{"deny_all_with_rules", "denyAll: true\nrules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect}]}]", -1, "denyAll", abac.ErrInvalidValue},
		{"unknown_method", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: publish, topics: [a]}]}]", 0, "brokerResources[0].method", abac.ErrInvalidValue},
		{"missing_method", "rules: [{principals: {usernames: [a]}, brokerResources: [{topics: [a]}]}]", 0, "brokerResources[0].method", abac.ErrMissing},
		{"publish_without_topics", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish}]}]", 0, "brokerResources[0].topics", abac.ErrMissing},
		{"topics_on_connect", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect, topics: [a]}]}]", 0, "brokerResources[0].topics", abac.ErrInvalidValue},
		{"clientids_on_publish", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish, topics: [a], clientIds: [x]}]}]", 0, "brokerResources[0].clientIds", abac.ErrInvalidValue},
		{"connect_glob_in_middle", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect, clientIds: ['a*b']}]}]", 0, "brokerResources[0].clientIds[0]", abac.ErrInvalidValue},
		{"connect_variable_not_whole", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect, clientIds: ['x-{principal.username}']}]}]", 0, "brokerResources[0].clientIds[0]", abac.ErrInvalidVariable},
		{"no_principals", "rules: [{principals: {}, brokerResources: [{method: Connect}]}]", 0, "principals", abac.ErrMissing},
		{"empty_username", "rules: [{principals: {usernames: ['']}, brokerResources: [{method: Connect}]}]", 0, "principals.usernames[0]", abac.ErrInvalidValue},
		{"empty_attribute_map", "rules: [{principals: {attributes: [{}]}, brokerResources: [{method: Connect}]}]", 0, "principals.attributes[0]", abac.ErrInvalidValue},
		{"no_resources", "rules: [{principals: {usernames: [a]}}]", 0, "brokerResources", abac.ErrMissing},
		{"wrong_type", "rules: [{principals: {usernames: a}, brokerResources: [{method: Connect}]}]", 0, "principals.usernames", abac.ErrSyntax},
		{"duplicate_key", "rules: [{principals: {usernames: [a]}, brokerResources: [{method: Connect}]}]\nrules: []", -1, "", abac.ErrSyntax},
		{"not_yaml", "rules: [", -1, "", abac.ErrSyntax},
		{"wrong_kind", "kind: BrokerAuthentication\nspec: {authorizationPolicies: {rules: []}}", -1, "kind", abac.ErrInvalidValue},
		{"resource_unknown_spec_field", "kind: BrokerAuthorization\nspec: {authorizationPolicies: {rules: []}, foo: 1}", -1, "spec.foo", abac.ErrUnknownField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := abac.Parse([]byte(tt.doc))
			require.Error(t, err)
			require.ErrorIs(t, err, tt.err)
			var pe *abac.PolicyError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tt.rule, pe.Rule, err.Error())
			if tt.field != "" || tt.rule >= 0 {
				require.Equal(t, tt.field, pe.Field, err.Error())
			}
			require.Regexp(t, `^abac: `, err.Error())
			_, err = abac.ParseSpec([]byte(tt.doc))
			require.Error(t, err)
		})
	}

	t.Run("message_names_rule_and_field", func(t *testing.T) {
		_, err := abac.Parse([]byte("rules: [{principals: {usernames: [a]}, brokerResources: [{method: Publish, topics: ['client-{principal.clientId}']}]}]"))
		require.EqualError(t, err, `abac: rules[0].brokerResources[0].topics[0]: invalid variable: "client-{principal.clientId}": a variable must fill a whole topic level`)
	})
}

// TestRulesArray: the bare rules array that the Azure portal takes (seed
// 003) is a policy document.
func TestRulesArray(t *testing.T) {
	x := mustParse(t, `[ { "principals": { "usernames": [ "heater" ] }, "brokerResources": [ { "method": "Connect" }, { "method": "Subscribe", "topics": [ "telemetry/temperature" ] } ] } ]`)
	require.True(t, x.Authorize(ctx, principal("h", "heater", nil), sub("telemetry/temperature")).Allowed)
	require.Equal(t, "rules[0].brokerResources[1]", x.Authorize(ctx, principal("h", "heater", nil), sub("telemetry/temperature")).Rule)
	_, err := abac.Parse([]byte(`[ { "principals": { "usernames": [ "heater" ] } } ]`))
	require.ErrorContains(t, err, "rules[0]")
	_, err = abac.Parse([]byte(`"rules"`))
	require.ErrorContains(t, err, "rules array")
}

func TestDenyAll(t *testing.T) {
	x := mustParse(t, "denyAll: true")
	require.False(t, x.Authorize(ctx, principal("a", "b", nil), connect).Allowed)
	require.Empty(t, x.Explain(principal("a", "b", nil), connect).Steps)
}

func TestResourceShape(t *testing.T) {
	x := mustParse(t, `
apiVersion: connectivity.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata:
  name: my-authz-policies
  namespace: azure-iot-operations
spec:
  authorizationPolicies:
    cache: Enabled
    rules:
      - principals:
          clientIds: ["temperature-sensor", "humidity-sensor"]
          attributes:
            - city: "seattle"
              organization: "contoso"
        brokerResources:
          - method: Connect
          - method: Publish
            topics: ["/sensor/{principal.clientId}", "/sensor/{principal.attributes.organization}"]
          - method: Subscribe
            topics: ["/commands/{principal.attributes.organization}"]
`)
	p := principal("temperature-sensor", "", nil)
	require.Equal(t, "rules[0].brokerResources[1]", x.Authorize(ctx, p, pub("/sensor/temperature-sensor")).Rule)
	require.False(t, x.Authorize(ctx, p, pub("/sensor/contoso")).Allowed)
	q := principal("other", "", map[string]string{"city": "seattle", "organization": "contoso"})
	require.True(t, x.Authorize(ctx, q, sub("/commands/contoso")).Allowed)
	require.Len(t, x.Spec().Rules, 1)
}

func TestExplain(t *testing.T) {
	x := mustParse(t, authtest.TutorialPolicy)
	p := principal("thermostat", "thermostat", map[string]string{"group": "thermostat_group", "manufacturer": "fabrikam"})
	e := x.Explain(p, pub("telemetry/humidity"))
	require.False(t, e.Decision.Allowed)
	require.Equal(t, []abac.Step{
		{Ref: "rules[0].brokerResources[1]", Rule: 0, Resource: 1, Selector: "attributes[0]", Pattern: "telemetry/temperature", Resolved: "telemetry/temperature"},
		{Ref: "rules[2].brokerResources[1]", Rule: 2, Resource: 1, Selector: "attributes[0]", Pattern: "health/heartbeat", Resolved: "health/heartbeat"},
	}, e.Steps)

	e = x.Explain(p, sub("telemetry/temperature"))
	require.Equal(t, []abac.Step{
		{Ref: "rules[0]", Rule: 0, Resource: -1, Selector: "attributes[0]"},
		{Ref: "rules[2]", Rule: 2, Resource: -1, Selector: "attributes[0]"},
	}, e.Steps)

	y := mustParse(t, `rules: [{principals: {clientIds: [a/b]}, brokerResources: [{method: Publish, topics: ["c/{principal.clientId}"]}]}]`)
	e = y.Explain(principal("a/b", "", nil), pub("c/a/b"))
	require.Equal(t, []abac.Step{{Ref: "rules[0].brokerResources[0]", Rule: 0, Resource: 0, Selector: "clientIds[0]", Pattern: "c/{principal.clientId}"}}, e.Steps)
}

func TestCache(t *testing.T) {
	x := mustParse(t, authtest.TutorialPolicy)
	y := mustParse(t, "denyAll: true")
	var cur abac.Source = x
	src := sourceFunc(func() *abac.Policy { return cur.Current() })
	c := abac.NewCache(src, 2)
	p := principal("thermostat", "", map[string]string{"group": "thermostat_group"})

	require.True(t, c.Authorize(ctx, p, connect).Allowed)
	require.True(t, c.Authorize(ctx, p, pub("telemetry/temperature")).Allowed)
	require.False(t, c.Authorize(ctx, p, pub("telemetry/humidity")).Allowed)
	require.Equal(t, 3, c.Len())
	require.True(t, c.Authorize(ctx, p, pub("telemetry/temperature")).Allowed)
	require.False(t, c.Authorize(ctx, p, pub("a")).Allowed) // full: dropped, then one entry
	require.Equal(t, 2, c.Len())

	// Re-authentication: a new principal pointer drops the cache.
	p2 := principal("thermostat", "", map[string]string{"group": "hygrometer_group"})
	require.False(t, c.Authorize(ctx, p2, pub("telemetry/temperature")).Allowed)
	require.Equal(t, 1, c.Len())

	// Policy change drops it too.
	require.True(t, c.Authorize(ctx, p2, pub("telemetry/humidity")).Allowed)
	cur = y
	require.False(t, c.Authorize(ctx, p2, pub("telemetry/humidity")).Allowed)
	require.False(t, c.Authorize(ctx, p2, connect).Allowed)
	require.False(t, c.Authorize(ctx, nil, connect).Allowed)

	allocs := testing.AllocsPerRun(100, func() { c.Authorize(ctx, p2, pub("telemetry/humidity")) })
	require.Zero(t, allocs)
}

type sourceFunc func() *abac.Policy

func (f sourceFunc) Current() *abac.Policy { return f() }

func TestZeroAllocs(t *testing.T) {
	x := mustParse(t, `
rules:
  - principals: {attributes: [{role: device, site: s1}], clientIds: [dev-1], usernames: [u]}
    brokerResources:
      - method: Connect
        clientIds: ["{principal.clientId}*"]
      - method: Publish
        topics: ["clients/{principal.clientId}/#", "sites/{principal.attributes.site}/+/x"]
      - method: Subscribe
        topics: ["clients/{principal.clientId}/#"]
`)
	p := principal("dev-1", "u", map[string]string{"role": "device", "site": "s1", "z": "z"})
	for _, a := range []auth.Action{connect, pub("clients/dev-1/a/b"), pub("sites/s1/q/x"), pub("nope"), sub("$share/g/clients/dev-1/+"), sub("#")} {
		x.Authorize(ctx, p, a)
		require.Zero(t, testing.AllocsPerRun(100, func() { x.Authorize(ctx, p, a) }), "%v %q", a.Kind, a.Topic)
	}
}

func TestPolicyErrorString(t *testing.T) {
	e := &abac.PolicyError{Rule: -1, Err: abac.ErrSyntax}
	require.Equal(t, "abac: document: syntax error", e.Error())
	require.True(t, errors.Is(e, abac.ErrSyntax))
	require.Equal(t, "rules[2]", (&abac.PolicyError{Rule: 2}).Location())
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
