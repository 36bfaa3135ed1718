package abac

import (
	"cmp"
	"slices"
	"strings"

	"github.com/mqttauth/mqttauth/auth"
)

// Grant is one topic filter that a policy allows a principal to publish
// to or subscribe to, with the principal's values substituted for the
// variables.
type Grant struct {
	// Filter is the MQTT topic filter, '+' and '#' included, with the
	// principal's client id, user name and attributes in place of the
	// variables.
	Filter string
	// Rule names the first broker resource, in policy order, that grants
	// Filter: "rules[3].brokerResources[1]".
	Rule string
}

// Grants returns every topic filter that x allows p for kind (auth.Publish
// or auth.Subscribe), for a broker whose permissions are lists of subjects
// fixed when the client connects (NATS) rather than a question asked per
// message. They are the filters of the resources of that method in the
// rules whose principals select p, with p's values substituted; a filter
// whose variable has no usable value for p (missing, empty, or holding '+',
// '#', '/' or NUL) allows nothing and is left out, as [Policy.Authorize]
// would never match it. Each filter appears once, with the first resource
// that grants it; the list is in policy order, then by filter.
//
// A topic is allowed by Authorize exactly when one of the filters matches
// it (for Publish), or covers the requested filter (for Subscribe). The
// cost depends on the rules that select p, not on the size of the policy.
// Connect and other kinds return nil.
func (x *Policy) Grants(p *auth.Principal, kind auth.ActionKind) []Grant {
	if x == nil || p == nil || (kind != auth.Publish && kind != auth.Subscribe) {
		return nil
	}
	found := make(map[string]int32)
	var levels []string
	for _, b := range x.selection(p).buckets {
		root := b.pub
		if kind == auth.Subscribe {
			root = b.sub
		}
		if root != nil {
			root.grants(p, levels, found)
		}
	}
	out := make([]Grant, 0, len(found))
	for f, ref := range found {
		out = append(out, Grant{Filter: f, Rule: x.refs[ref]})
	}
	slices.SortFunc(out, func(a, b Grant) int {
		return cmp.Or(cmp.Compare(found[a.Filter], found[b.Filter]), strings.Compare(a.Filter, b.Filter))
	})
	return out
}

// Grants returns the grants of the policy in force; see [Policy.Grants].
func (w *Watcher) Grants(p *auth.Principal, kind auth.ActionKind) []Grant {
	return w.f.Current().Grants(p, kind)
}

// grants adds to found every filter that ends in n's subtree, below the
// levels already walked, with the lowest ref that grants it.
func (n *node) grants(p *auth.Principal, levels []string, found map[string]int32) {
	add := func(f string, ref int32) {
		if old, ok := found[f]; !ok || ref < old {
			found[f] = ref
		}
	}
	if n.end != none && len(levels) > 0 {
		add(strings.Join(levels, "/"), n.end)
	}
	if n.hash != none {
		add(strings.Join(append(levels[:len(levels):len(levels)], "#"), "/"), n.hash)
	}
	for _, k := range n.kids {
		k.child.grants(p, append(levels, k.name), found)
	}
	for name, c := range n.kmap {
		c.grants(p, append(levels, name), found)
	}
	if n.plus != nil {
		n.plus.grants(p, append(levels, "+"), found)
	}
	for _, e := range n.vars {
		if v, ok := e.v.value(p); ok {
			e.child.grants(p, append(levels, v), found)
		}
	}
}
