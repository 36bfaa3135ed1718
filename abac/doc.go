// Package abac is attribute-based authorization for MQTT brokers, with the
// policy language of the Azure IoT Operations BrokerAuthorization resource,
// so that a policy written for that broker works here.
//
// A policy is a list of rules. Each rule names principals, by client id, user
// name or attribute maps, and the broker resources they may use: Connect
// (optionally limited to client ids), Publish and Subscribe (limited to topic
// filters). Nothing else is allowed: a policy only allows, and what no rule
// allows is denied.
//
//	rules:
//	  - principals:
//	      attributes:
//	        - group: thermostat_group
//	    brokerResources:
//	      - method: Connect
//	      - method: Publish
//	        topics: ["telemetry/temperature", "clients/{principal.clientId}/#"]
//
// Compile or load it, and use it as the broker's [auth.Authorizer]:
//
//	policy, err := abac.LoadFile("policy.yaml")
//	d := policy.Authorize(ctx, principal, auth.Action{Kind: auth.Publish, Topic: "telemetry/temperature"})
//	// d.Allowed, d.Rule == "rules[0].brokerResources[1]"
//
// A [Watcher] reloads the file when it changes; give it to the Manager as a
// watch so that the sessions that lost Connect permission are disconnected:
//
//	w, err := abac.NewWatcher(abac.WatchConfig{Path: "/etc/mqtt/policy.yaml"})
//	manager, err := auth.NewManager(auth.Config{
//		Authenticator: authn, Authorizer: w,
//		Watches: []auth.Watch{{Name: "abac policy", Source: w, Check: auth.CheckConnect(w)}},
//	})
//
// # Semantics
//
//   - A rule's principals are alternatives: a client id in clientIds, a user
//     name in usernames, or an attribute map in attributes. Within one map
//     every pair must match; the maps are alternatives. Matching is exact
//     and case-sensitive.
//   - Connect clientIds match exactly, or by prefix when they end in '*'
//     ("sensor-*"). Without clientIds a Connect resource allows any client
//     id.
//   - Topics are MQTT topic filters with '+' and '#'. A policy filter that
//     begins with a wildcard does not match a topic beginning with '$'
//     [MQTT-4.7.2-1], so "#" does not allow $SYS topics; name them.
//   - Variables {principal.clientId}, {principal.username} and
//     {principal.attributes.NAME} fill a whole topic level
//     ("clients/{principal.clientId}/#"), or a whole Connect client id,
//     optionally followed by '*'. They take the principal's value when the
//     decision is made. A value that is missing, empty, or holds '+', '#',
//     '/' or NUL never fills a variable: the pattern does not match, so a
//     user named "#" or a client id "a/b" cannot widen its access.
//   - Subscribe: a filter is allowed only when one policy filter matches
//     every topic the requested filter can match. Subscribing "#" when only
//     "a/#" is allowed is denied (SUBACK 0x87), as is "a/+" when only "a/b"
//     is. Coverage by several policy filters together ("a" and "a/+/#" for
//     "a/#") is not considered: the check fails closed. MQTT leaves this
//     open and Azure IoT Operations does not document it; a broader filter
//     would deliver messages the client may not read.
//   - A shared subscription $share/GROUP/FILTER is checked on FILTER
//     [MQTT-4.8.2].
//   - Every allow names the first resource in policy order that allowed it,
//     "rules[3].brokerResources[0]"; a deny names no rule. [Policy.Explain]
//     lists the rules considered, for logs and tooling.
//
// # Strict loading
//
// [Parse], [LoadFile] and [Compile] refuse a policy that might not mean what
// it says, with a [*PolicyError] naming the rule index and field: unknown
// fields, duplicate keys, a variable that does not fill a whole topic level,
// an invalid topic filter, an unknown method, an empty principal value or
// attribute map, clientIds on Publish or Subscribe, topics on Connect, and an
// empty rule list. A policy that allows nothing must say so:
//
//	denyAll: true
//
// A file may be the bare document above or the whole BrokerAuthorization
// resource, whose spec.authorizationPolicies is read.
//
// # Performance
//
// A [Policy] is compiled into an index: rules are grouped by the client id,
// user name or attribute map that selects them, and each group holds a trie
// over topic levels whose variable levels are compared with the principal's
// values while matching. A decision looks only at the groups that select the
// principal, and allocates nothing, so per-device policies of 100,000 rules
// decide as fast as small ones. Which groups select a principal is worked
// out once per principal and policy and remembered in a small lock-free
// cache keyed by the principal (principals never change), so a decision
// hashes none of the principal's strings: it is the trie walks alone.
// A [Cache] per session remembers decisions,
// for brokers that authorize every delivered message; it forgets them when
// the session re-authenticates or the policy changes.
package abac
