package abac

import (
	"context"
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/mqttauth/mqttauth/auth"
)

// Policy is a compiled, immutable authorization policy. It is an
// [auth.Authorizer], safe for concurrent use, and allocates nothing to
// decide.
//
// The rules are indexed twice: by principal selector (client id, user name
// and attribute map), so that only the rules that name a principal are
// looked at, and within each selector by a trie over topic levels whose
// variable levels are resolved against the principal while matching. A
// decision therefore costs about as much for a policy of 100,000 per-device
// rules as for one of ten.
type Policy struct {
	spec   Spec
	res    [][]compiledResource // per rule, per resource
	refs   []string             // "rules[i].brokerResources[j]", in policy order
	refLoc [][2]int             // (i, j) of each ref

	byClient map[string]*bucket
	byUser   map[string]*bucket
	byAttr   []attrIndex // by the name of each attribute map's first pair

	seed       maphash.Seed
	selections [selectionCacheSize]atomic.Pointer[selected]

	gen  uint64
	name string // auth.Decision.Policy of its decisions
}

var _ auth.Authorizer = (*Policy)(nil)

// attrIndex holds the attribute maps whose first pair (by name) has this
// name, by that pair's value.
type attrIndex struct {
	name    string
	byValue map[string][]*attrBucket
}

// Spec returns a copy of the policy's rules.
func (x *Policy) Spec() Spec { return cloneSpec(x.spec) }

// Generation returns the generation a [Watcher] gave the policy when it
// loaded it: 1 for the first load, one more for each change. It is 0 for a
// policy compiled directly.
func (x *Policy) Generation() uint64 { return x.gen }

// Current returns x: a fixed policy is its own [Source].
func (x *Policy) Current() *Policy { return x }

// Authorize decides whether p may perform a. It allows when a rule whose
// principals select p has a broker resource of a's method that covers a:
//
//   - Connect: the resource has no clientIds, or one of them matches p's
//     client id (exactly, or as a prefix when it ends in '*').
//   - Publish: one of the resource's topic filters matches the topic name.
//   - Subscribe: one of the resource's topic filters matches every topic
//     that the requested filter can match. A shared subscription
//     $share/GROUP/FILTER is checked on FILTER.
//
// The Decision names the first such resource in policy order, and the
// policy's name (ParseNamed, WatchConfig.Name) allow or deny. Invalid
// topics and filters, and a nil principal, are denied.
func (x *Policy) Authorize(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	if r := x.decide(p, a); r != none {
		return auth.Decision{Allowed: true, Rule: x.refs[r], Policy: x.name}
	}
	return auth.Decision{Policy: x.name}
}

// Name returns the name the policy gives its decisions (ParseNamed,
// WatchConfig.Name); empty when it has none.
func (x *Policy) Name() string { return x.name }

// decide returns the ref of the first resource that allows a, or none.
func (x *Policy) decide(p *auth.Principal, a auth.Action) int32 {
	if x == nil || p == nil {
		return none
	}
	topic := a.Topic
	switch a.Kind {
	case auth.Connect:
	case auth.Publish:
		if !validTopicName(topic) {
			return none
		}
	case auth.Subscribe:
		var ok bool
		if topic, ok = subscriptionFilter(topic); !ok {
			return none
		}
	default:
		return none
	}
	best := int32(none)
	for _, b := range x.selection(p).buckets {
		best = b.decide(p, a.Kind, topic, best)
	}
	return best
}

// selectionCacheSize is the number of principals whose selection a Policy
// remembers (a power of two).
const selectionCacheSize = 1024

// selected is the buckets that select one principal: its client id's, its
// user name's, and those of the attribute maps it satisfies.
type selected struct {
	p       *auth.Principal
	buckets []*bucket
}

// selection returns the buckets that select p. A principal never changes,
// nor does a Policy, so the answer is remembered in a direct-mapped,
// lock-free cache keyed by the principal's pointer: a decision then hashes
// none of the principal's strings. An entry keeps its principal alive, so an
// address cannot be reused by another principal while it is cached. A miss
// allocates once per principal and policy; a hit allocates nothing.
func (x *Policy) selection(p *auth.Principal) *selected {
	slot := &x.selections[maphash.Comparable(x.seed, p)&(selectionCacheSize-1)]
	if s := slot.Load(); s != nil && s.p == p {
		return s
	}
	s := &selected{p: p}
	if id := p.ClientID(); id != "" {
		if b := x.byClient[id]; b != nil {
			s.buckets = append(s.buckets, b)
		}
	}
	if u := p.Username(); u != "" {
		if b := x.byUser[u]; b != nil {
			s.buckets = append(s.buckets, b)
		}
	}
	for i := range x.byAttr {
		ai := &x.byAttr[i]
		v, ok := p.Attribute(ai.name)
		if !ok {
			continue
		}
		for _, ab := range ai.byValue[v] {
			if ab.selects(p) {
				s.buckets = append(s.buckets, &ab.bucket)
			}
		}
	}
	slot.Store(s)
	return s
}

// Explanation says how a Policy decided: the decision, and each broker
// resource it considered, in policy order.
type Explanation struct {
	Decision auth.Decision
	Steps    []Step
}

// Step is one pattern of one broker resource of a rule whose principals
// select the principal.
type Step struct {
	// Ref names the resource: "rules[3].brokerResources[0]". It is
	// "rules[3]" when the rule has no resource of the action's method.
	Ref string
	// Rule and Resource are the indexes; Resource is -1 when the rule has no
	// resource of the action's method.
	Rule, Resource int
	// Selector is the part of the rule's principals that selected the
	// principal: "clientIds[0]", "usernames[1]" or "attributes[0]".
	Selector string
	// Pattern is the topic filter or client id pattern, as written; empty
	// for a Connect resource without clientIds.
	Pattern string
	// Resolved is Pattern with the principal's values substituted; empty
	// when a variable has no usable value (missing, empty, or holding '+',
	// '#', '/' or NUL).
	Resolved string
	// Match says whether this pattern allows the action.
	Match bool
}

// Explain returns how x decides whether p may perform a: the rules whose
// principals select p and, for each, the patterns of its resources of a's
// method and whether they match. It is slow and allocates: it is for logs,
// tests and tooling, never for the decision path; its Decision always equals
// Authorize's.
func (x *Policy) Explain(p *auth.Principal, a auth.Action) Explanation {
	var e Explanation
	if x == nil || p == nil {
		e.Decision = auth.Deny
		return e
	}
	topic := a.Topic
	valid := true
	switch a.Kind {
	case auth.Publish:
		valid = validTopicName(topic)
	case auth.Subscribe:
		topic, valid = subscriptionFilter(topic)
	case auth.Connect:
	default:
		valid = false
	}
	var levels []string
	if a.Kind != auth.Connect {
		levels = strings.Split(topic, "/")
	}
	for i, r := range x.spec.Rules {
		sel, ok := selector(r.Principals, p)
		if !ok {
			continue
		}
		any := false
		for j, br := range r.BrokerResources {
			cr := x.res[i][j]
			if cr.method != a.Kind {
				continue
			}
			any = true
			ref := "rules[" + itoa(i) + "].brokerResources[" + itoa(j) + "]"
			step := func(pattern, resolved string, match bool) {
				e.Steps = append(e.Steps, Step{Ref: ref, Rule: i, Resource: j, Selector: sel,
					Pattern: pattern, Resolved: resolved, Match: match && valid})
				if match && valid && !e.Decision.Allowed {
					e.Decision = auth.Allow(ref)
				}
			}
			if a.Kind == auth.Connect {
				if len(cr.clientIDs) == 0 {
					step("", "", true)
				}
				for k, c := range cr.clientIDs {
					resolved := br.ClientIDs[k]
					if c.isVar {
						v, ok := c.v.value(p)
						if !ok {
							resolved = ""
						} else if c.glob {
							resolved = v + "*"
						} else {
							resolved = v
						}
					}
					step(br.ClientIDs[k], resolved, c.matches(p.ClientID(), p))
				}
				continue
			}
			for k, pat := range cr.topics {
				resolved, _ := resolve(pat, p)
				step(br.Topics[k], resolved, covers(pat, levels, p))
			}
		}
		if !any {
			e.Steps = append(e.Steps, Step{Ref: "rules[" + itoa(i) + "]", Rule: i, Resource: -1, Selector: sel})
		}
	}
	return e
}

// selector returns which part of pr selects p.
func selector(pr Principals, p *auth.Principal) (string, bool) {
	if id := p.ClientID(); id != "" {
		for j, c := range pr.ClientIDs {
			if c == id {
				return idx("clientIds", j), true
			}
		}
	}
	if u := p.Username(); u != "" {
		for j, c := range pr.Usernames {
			if c == u {
				return idx("usernames", j), true
			}
		}
	}
outer:
	for j, m := range pr.Attributes {
		if len(m) == 0 {
			continue
		}
		for k, v := range m {
			if got, ok := p.Attribute(k); !ok || got != v {
				continue outer
			}
		}
		return idx("attributes", j), true
	}
	return "", false
}
