package abac

import (
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/mqttauth/mqttauth/auth"
)

// none is the ref of "no rule": larger than every real ref, so min works.
const none = math.MaxInt32

// node is a node of a topic trie. Each level of a policy topic filter is an
// edge: a literal, '+', or a variable resolved against the principal when a
// decision is made. A filter ending in '#' marks its parent's hash.
type node struct {
	kids  []litEdge        // literal edges, while few
	kmap  map[string]*node // literal edges, once many
	plus  *node
	vars  []varEdge
	end   int32 // lowest ref of a filter ending here
	hash  int32 // lowest ref of a filter ending here with "/#"
	least int32 // lowest ref anywhere in this subtree
}

type litEdge struct {
	name  string
	child *node
}

type varEdge struct {
	v     variable
	child *node
}

const maxKids = 8

func newNode() *node { return &node{end: none, hash: none, least: none} }

func (n *node) lit(name string) *node {
	if n.kmap != nil {
		return n.kmap[name]
	}
	for i := range n.kids {
		if n.kids[i].name == name {
			return n.kids[i].child
		}
	}
	return nil
}

func (n *node) insert(pat []level, ref int32) {
	n.least = min(n.least, ref)
	if len(pat) == 0 {
		n.end = min(n.end, ref)
		return
	}
	l := pat[0]
	var c *node
	switch l.kind {
	case levelHash:
		n.hash = min(n.hash, ref)
		return
	case levelPlus:
		if n.plus == nil {
			n.plus = newNode()
		}
		c = n.plus
	case levelVar:
		for i := range n.vars {
			if n.vars[i].v == l.v {
				c = n.vars[i].child
			}
		}
		if c == nil {
			c = newNode()
			n.vars = append(n.vars, varEdge{l.v, c})
		}
	case levelLiteral:
		c = n.lit(l.lit)
		if c == nil {
			c = newNode()
			switch {
			case n.kmap != nil:
				n.kmap[l.lit] = c
			case len(n.kids) < maxKids:
				n.kids = append(n.kids, litEdge{l.lit, c})
			default:
				n.kmap = make(map[string]*node, 2*maxKids)
				for _, k := range n.kids {
					n.kmap[k.name] = k.child
				}
				n.kids = nil
				n.kmap[l.lit] = c
			}
		}
	}
	c.insert(pat[1:], ref)
}

// walk returns the lowest ref of a filter in n's subtree that covers every
// topic the remaining filter levels s can match (end: no levels remain).
// best is the lowest ref found so far: subtrees that cannot beat it are
// skipped. It mirrors covers.
func (n *node) walk(s string, end bool, depth int, p *auth.Principal, best int32) int32 {
	if n.least >= best {
		return best
	}
	if end {
		return min(best, n.end, n.hash)
	}
	lvl, rest, more := strings.Cut(s, "/")
	dollar := depth == 0 && len(lvl) > 0 && lvl[0] == '$'
	if !dollar {
		best = min(best, n.hash)
	}
	switch lvl {
	case "#":
		if depth == 0 && n.plus != nil {
			best = min(best, n.plus.hash) // "+/#" covers "#"
		}
		return best
	case "+":
		if n.plus != nil {
			best = n.plus.walk(rest, !more, depth+1, p, best)
		}
		return best
	}
	if c := n.lit(lvl); c != nil {
		best = c.walk(rest, !more, depth+1, p, best)
	}
	if n.plus != nil && !dollar {
		best = n.plus.walk(rest, !more, depth+1, p, best)
	}
	for i := range n.vars {
		e := &n.vars[i]
		if e.child.least >= best {
			continue
		}
		if v, ok := e.v.value(p); ok && v == lvl {
			best = e.child.walk(rest, !more, depth+1, p, best)
		}
	}
	return best
}

// bucket holds what the rules allow one principal selector: a client id, a
// user name or an attribute map.
type bucket struct {
	connectAny    int32
	connectExact  map[string]int32
	connectPrefix []prefixRef
	connectVar    []varIDRef
	pub, sub      *node
}

type prefixRef struct {
	prefix string
	ref    int32
}

type varIDRef struct {
	pat clientIDPattern
	ref int32
}

func newBucket() *bucket { return &bucket{connectAny: none} }

func (b *bucket) connect(p *auth.Principal, best int32) int32 {
	best = min(best, b.connectAny)
	id := p.ClientID()
	if r, ok := b.connectExact[id]; ok {
		best = min(best, r)
	}
	for _, pr := range b.connectPrefix {
		if pr.ref < best && strings.HasPrefix(id, pr.prefix) {
			best = pr.ref
		}
	}
	for _, vr := range b.connectVar {
		if vr.ref < best && vr.pat.matches(id, p) {
			best = vr.ref
		}
	}
	return best
}

func (b *bucket) decide(p *auth.Principal, kind auth.ActionKind, topic string, best int32) int32 {
	switch kind {
	case auth.Connect:
		return b.connect(p, best)
	case auth.Publish:
		if b.pub != nil {
			return b.pub.walk(topic, false, 0, p, best)
		}
	case auth.Subscribe:
		if b.sub != nil {
			return b.sub.walk(topic, false, 0, p, best)
		}
	}
	return best
}

type attrPair struct{ name, value string }

// attrBucket is the bucket of one attribute map of the policy.
type attrBucket struct {
	pairs []attrPair // sorted by name
	bucket
}

func (a *attrBucket) selects(p *auth.Principal) bool {
	for _, pr := range a.pairs {
		if v, ok := p.Attribute(pr.name); !ok || v != pr.value {
			return false
		}
	}
	return true
}

// compiled resource patterns, kept for Explain.
type compiledResource struct {
	method    auth.ActionKind
	topics    [][]level
	clientIDs []clientIDPattern
}

func methodKind(m string) (auth.ActionKind, bool) {
	switch m {
	case MethodConnect:
		return auth.Connect, true
	case MethodPublish:
		return auth.Publish, true
	case MethodSubscribe:
		return auth.Subscribe, true
	}
	return 0, false
}

func ruleErr(i int, field string, err error) error {
	return &PolicyError{Rule: i, Field: field, Err: err}
}

func idx(name string, i int) string { return name + "[" + strconv.Itoa(i) + "]" }

// Compile validates spec and compiles it into a Policy.
func Compile(spec Spec) (*Policy, error) { return compile(spec) }

func compile(spec Spec) (*Policy, error) {
	if len(spec.Rules) == 0 && !spec.DenyAll {
		return nil, docErr("rules", ErrEmptyPolicy)
	}
	if len(spec.Rules) > 0 && spec.DenyAll {
		return nil, docErr("denyAll", fmt.Errorf("%w: denyAll: true cannot be combined with rules", ErrInvalidValue))
	}
	x := &Policy{
		seed:     maphash.MakeSeed(),
		spec:     cloneSpec(spec),
		byClient: make(map[string]*bucket),
		byUser:   make(map[string]*bucket),
		res:      make([][]compiledResource, len(spec.Rules)),
	}
	attrByKey := make(map[string]*attrBucket)
	byAttr := make(map[attrPair][]*attrBucket) // keyed by each map's first pair
	for i, r := range spec.Rules {
		// Principals.
		var buckets []*bucket
		pr := r.Principals
		if len(pr.ClientIDs)+len(pr.Usernames)+len(pr.Attributes) == 0 {
			return nil, ruleErr(i, "principals", fmt.Errorf("%w: at least one of clientIds, usernames and attributes is required", ErrMissing))
		}
		for j, id := range pr.ClientIDs {
			if id == "" {
				return nil, ruleErr(i, idx("principals.clientIds", j), fmt.Errorf("%w: empty client id", ErrInvalidValue))
			}
			b := x.byClient[id]
			if b == nil {
				b = newBucket()
				x.byClient[id] = b
			}
			buckets = append(buckets, b)
		}
		for j, u := range pr.Usernames {
			if u == "" {
				return nil, ruleErr(i, idx("principals.usernames", j), fmt.Errorf("%w: empty user name", ErrInvalidValue))
			}
			b := x.byUser[u]
			if b == nil {
				b = newBucket()
				x.byUser[u] = b
			}
			buckets = append(buckets, b)
		}
		for j, m := range pr.Attributes {
			field := idx("principals.attributes", j)
			if len(m) == 0 {
				return nil, ruleErr(i, field, fmt.Errorf("%w: an empty attribute map would select every principal", ErrInvalidValue))
			}
			pairs := make([]attrPair, 0, len(m))
			for k, v := range m {
				if k == "" || v == "" {
					return nil, ruleErr(i, field, fmt.Errorf("%w: empty attribute name or value", ErrInvalidValue))
				}
				pairs = append(pairs, attrPair{k, v})
			}
			slices.SortFunc(pairs, func(a, b attrPair) int { return strings.Compare(a.name, b.name) })
			var key strings.Builder
			for _, p := range pairs {
				key.WriteString(p.name)
				key.WriteByte(0)
				key.WriteString(p.value)
				key.WriteByte(0)
			}
			ab := attrByKey[key.String()]
			if ab == nil {
				ab = &attrBucket{pairs: pairs, bucket: bucket{connectAny: none}}
				attrByKey[key.String()] = ab
				byAttr[pairs[0]] = append(byAttr[pairs[0]], ab)
			}
			buckets = append(buckets, &ab.bucket)
		}

		// Broker resources.
		if len(r.BrokerResources) == 0 {
			return nil, ruleErr(i, "brokerResources", fmt.Errorf("%w: at least one broker resource is required", ErrMissing))
		}
		x.res[i] = make([]compiledResource, len(r.BrokerResources))
		for j, br := range r.BrokerResources {
			field := idx("brokerResources", j)
			ref := int32(len(x.refs))
			x.refs = append(x.refs, "rules["+strconv.Itoa(i)+"]."+field)
			x.refLoc = append(x.refLoc, [2]int{i, j})
			kind, ok := methodKind(br.Method)
			if !ok {
				if br.Method == "" {
					return nil, ruleErr(i, field+".method", fmt.Errorf("%w: method is required", ErrMissing))
				}
				return nil, ruleErr(i, field+".method", fmt.Errorf("%w: method %q: want Connect, Publish or Subscribe (case-sensitive)", ErrInvalidValue, br.Method))
			}
			cr := compiledResource{method: kind}
			if kind == auth.Connect {
				if br.Topics != nil {
					return nil, ruleErr(i, field+".topics", fmt.Errorf("%w: topics do not apply to Connect", ErrInvalidValue))
				}
				for k, id := range br.ClientIDs {
					c, err := parseClientIDPattern(id)
					if err != nil {
						return nil, ruleErr(i, idx(field+".clientIds", k), err)
					}
					cr.clientIDs = append(cr.clientIDs, c)
					for _, b := range buckets {
						switch {
						case c.isVar:
							b.connectVar = append(b.connectVar, varIDRef{c, ref})
						case c.glob:
							b.connectPrefix = append(b.connectPrefix, prefixRef{c.lit, ref})
						default:
							if b.connectExact == nil {
								b.connectExact = make(map[string]int32)
							}
							if old, ok := b.connectExact[c.lit]; !ok || ref < old {
								b.connectExact[c.lit] = ref
							}
						}
					}
				}
				if br.ClientIDs != nil && len(br.ClientIDs) == 0 {
					return nil, ruleErr(i, field+".clientIds", fmt.Errorf("%w: an empty clientIds list allows nothing; omit it to allow any client id", ErrInvalidValue))
				}
				if len(br.ClientIDs) == 0 {
					for _, b := range buckets {
						b.connectAny = min(b.connectAny, ref)
					}
				}
			} else {
				if br.ClientIDs != nil {
					return nil, ruleErr(i, field+".clientIds", fmt.Errorf("%w: clientIds apply to Connect only", ErrInvalidValue))
				}
				if len(br.Topics) == 0 {
					return nil, ruleErr(i, field+".topics", fmt.Errorf("%w: %s needs at least one topic", ErrMissing, br.Method))
				}
				for k, t := range br.Topics {
					pat, err := parsePattern(t)
					if err != nil {
						return nil, ruleErr(i, idx(field+".topics", k), err)
					}
					cr.topics = append(cr.topics, pat)
					for _, b := range buckets {
						root := &b.pub
						if kind == auth.Subscribe {
							root = &b.sub
						}
						if *root == nil {
							*root = newNode()
						}
						(*root).insert(pat, ref)
					}
				}
			}
			x.res[i][j] = cr
		}
	}
	// Index the attribute maps by name, then value: a decision hashes each
	// of the principal's values once, not a (name, value) pair.
	byName := make(map[string]map[string][]*attrBucket)
	for pair, abs := range byAttr {
		if byName[pair.name] == nil {
			byName[pair.name] = make(map[string][]*attrBucket)
		}
		byName[pair.name][pair.value] = abs
	}
	for name, byValue := range byName {
		x.byAttr = append(x.byAttr, attrIndex{name: name, byValue: byValue})
	}
	slices.SortFunc(x.byAttr, func(a, b attrIndex) int { return strings.Compare(a.name, b.name) })
	return x, nil
}

func cloneSpec(s Spec) Spec {
	c := Spec{DenyAll: s.DenyAll, Rules: make([]Rule, len(s.Rules))}
	for i, r := range s.Rules {
		nr := Rule{
			Principals: Principals{
				ClientIDs: slices.Clone(r.Principals.ClientIDs),
				Usernames: slices.Clone(r.Principals.Usernames),
			},
			BrokerResources: make([]BrokerResource, len(r.BrokerResources)),
		}
		for _, m := range r.Principals.Attributes {
			cm := make(map[string]string, len(m))
			for k, v := range m {
				cm[k] = v
			}
			nr.Principals.Attributes = append(nr.Principals.Attributes, cm)
		}
		for j, br := range r.BrokerResources {
			nr.BrokerResources[j] = BrokerResource{Method: br.Method, Topics: slices.Clone(br.Topics), ClientIDs: slices.Clone(br.ClientIDs)}
		}
		c.Rules[i] = nr
	}
	return c
}
