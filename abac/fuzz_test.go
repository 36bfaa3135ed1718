package abac_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

// refMatch is the plain definition of MQTT topic matching, the reference
// the compiled index is checked against: filter matches topic name.
func refMatch(filter, topic string) bool {
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (f[0] == "+" || f[0] == "#") {
		return false // [MQTT-4.7.2-1]
	}
	for i, fl := range f {
		if fl == "#" {
			return true // also the parent: "a/#" matches "a" [MQTT-4.7.1-2]
		}
		if i >= len(t) || (fl != "+" && fl != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}

func refValidFilter(s string) bool {
	if s == "" || strings.ContainsRune(s, 0) {
		return false
	}
	lv := strings.Split(s, "/")
	for i, l := range lv {
		if (strings.ContainsAny(l, "+#") && len(l) > 1) || (l == "#" && i != len(lv)-1) {
			return false
		}
	}
	return true
}

const fresh = "\x01fresh\x02"

// refCovers reports whether every topic filter f matches is matched by
// pattern, by trying witness topics: each '+' becomes a level no pattern
// names, and '#' becomes zero or more such levels.
func refCovers(pattern, f string) bool {
	levels := strings.Split(f, "/")
	base := levels
	hash := levels[len(levels)-1] == "#"
	if hash {
		base = levels[:len(levels)-1]
	}
	for i, l := range base {
		if l == "+" {
			base[i] = fresh
		}
	}
	prefix := strings.Join(base, "/")
	if !hash {
		return refMatch(pattern, prefix)
	}
	// Up to one level more than the pattern has beyond the prefix.
	n := max(0, strings.Count(pattern, "/")+1-len(base)) + 1
	for k := 0; k <= n; k++ {
		var parts []string
		if len(base) > 0 {
			parts = append(parts, prefix)
		}
		for range k {
			parts = append(parts, fresh)
		}
		if len(parts) == 0 {
			continue // "#" matches topics of at least one level
		}
		if !refMatch(pattern, strings.Join(parts, "/")) {
			return false
		}
	}
	return true
}

func safeValue(s string) bool { return s != "" && !strings.ContainsAny(s, "+#/\x00") }

// FuzzTopicMatch checks the compiled index against refMatch (publish) and
// refCovers (subscribe) for one pattern, with variables substituted as the
// reference expects and unsafe values never filling a variable.
func FuzzTopicMatch(f *testing.F) {
	for _, s := range [][3]string{
		{"a/+/c", "a/b/c", "u"}, {"a/#", "a", "u"}, {"#", "$SYS/x", "u"}, {"+/x", "$a/x", "u"},
		{"$SYS/#", "$SYS/a/b", "u"}, {"users/{principal.username}/#", "users/+/#", "+"},
		{"users/{principal.username}", "users/#", "#"}, {"c/{principal.clientId}/x", "c/dev/x", "u"},
		{"s/{principal.attributes.site}/+", "s/s1/#", "u"}, {"a/b", "a/+", "u"}, {"+/+", "#", "u"},
		{"a/#", "$share/g/a/b", "u"}, {"/", "/", "u"}, {"a//b", "a/+/b", "u"}, {"#", "#", "u"},
		{"users/{principal.username}/x", "users/a/b/x", "a/b"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, topic, username string) {
		x, err := abac.Compile(abac.Spec{Rules: []abac.Rule{{
			Principals: abac.Principals{ClientIDs: []string{"dev"}},
			BrokerResources: []abac.BrokerResource{
				{Method: abac.MethodPublish, Topics: []string{pattern}},
				{Method: abac.MethodSubscribe, Topics: []string{pattern}},
			},
		}}})
		if err != nil {
			return
		}
		p := principal("dev", username, map[string]string{"site": "s1"})
		ref := pattern
		// A variable with an unsafe value fills nothing: "\x00" is a
		// level no topic or filter can contain.
		uv := username
		if !safeValue(uv) {
			uv = "\x00"
		}
		ref = strings.ReplaceAll(ref, "{principal.username}", uv)
		ref = strings.ReplaceAll(ref, "{principal.clientId}", "dev")
		ref = strings.ReplaceAll(ref, "{principal.attributes.site}", "s1")
		if strings.Contains(ref, "{") {
			ref = "\x00" // another attribute: the principal has none
		}

		wantPub := topic != "" && !strings.ContainsAny(topic, "+#\x00") && len(topic) <= 65535 && refMatch(ref, topic)
		require.Equal(t, wantPub, x.Authorize(ctx, p, pub(topic)).Allowed, "publish %q to %q", topic, ref)

		filter := topic
		valid := true
		if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
			group, fl, found := strings.Cut(rest, "/")
			valid = found && group != "" && !strings.ContainsAny(group, "+#\x00")
			filter = fl
		}
		wantSub := valid && refValidFilter(filter) && len(filter) <= 65535 && refCovers(ref, filter)
		require.Equal(t, wantSub, x.Authorize(ctx, p, sub(topic)).Allowed, "subscribe %q under %q", topic, ref)
		require.Equal(t, wantSub, x.Explain(p, sub(topic)).Decision.Allowed)
	})
}

// FuzzParse feeds the loader arbitrary documents: it must never panic, and
// a policy it accepts must round-trip through JSON and decide exactly as
// Explain (the plain, unindexed evaluation) does.
func FuzzParse(f *testing.F) {
	f.Add([]byte(authtest.TutorialPolicy), "thermostat", "heater", "thermostat_group", "telemetry/temperature", uint8(1))
	f.Add([]byte(`rules: [{principals: {clientIds: [a], attributes: [{g: x, h: y}]}, brokerResources: [{method: Connect, clientIds: ["{principal.attributes.g}*"]}, {method: Subscribe, topics: ["a/{principal.clientId}/#", "+/x"]}]}]`), "a", "u", "x", "$share/q/a/a/+", uint8(2))
	f.Add([]byte("denyAll: true"), "a", "b", "c", "d", uint8(0))
	f.Add([]byte("kind: BrokerAuthorization\nspec: {authorizationPolicies: {cache: Enabled, rules: [{principals: {usernames: [u]}, brokerResources: [{method: Publish, topics: ['#']}]}]}}"), "a", "u", "c", "x/y", uint8(1))
	f.Fuzz(func(t *testing.T, doc []byte, clientID, username, attr, topic string, kind uint8) {
		x, err := abac.Parse(doc)
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "abac: "), err.Error())
			return
		}
		spec := x.Spec()
		js, err := json.Marshal(spec)
		require.NoError(t, err)
		y, err := abac.Parse(js)
		require.NoError(t, err, "%s", js)

		a := auth.Action{Kind: auth.ActionKind(kind % 4), Topic: topic}
		for _, p := range []*auth.Principal{
			principal(clientID, username, map[string]string{"g": attr, "group": attr, "site": attr}),
			principal(clientID, username, nil),
			principal(attr, clientID, map[string]string{"h": "y", "g": "x", "group": username}),
		} {
			d := x.Authorize(ctx, p, a)
			require.Equal(t, x.Explain(p, a).Decision, d)
			require.Equal(t, d, y.Authorize(ctx, p, a))
		}
	})
}
