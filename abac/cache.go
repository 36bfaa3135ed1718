package abac

import (
	"context"
	"strings"
	"sync"

	"github.com/mqttauth/mqttauth/auth"
)

// Source gives the current policy. A [*Policy] is its own source; a
// [*Watcher] gives the last good policy loaded from its file.
type Source interface {
	Current() *Policy
}

// DefaultCacheSize is the number of topics a [Cache] remembers per method
// when NewCache is given no size.
const DefaultCacheSize = 64

// Cache remembers the decisions of one session, so that a broker asking on
// every delivered message pays a map lookup instead of a policy walk.
//
// It is keyed by the principal pointer and the policy: re-authentication
// swaps the session's *auth.Principal and a reload swaps the *Policy, and
// either drops every remembered decision on the next call. Azure IoT
// Operations caches decisions per (client, action, resource) in the same
// way. A Cache is safe for concurrent use (deliveries to one session may
// come from several publishers' goroutines); a hit allocates nothing.
type Cache struct {
	src  Source
	size int

	mu        sync.Mutex
	principal *auth.Principal
	policy    *Policy
	connect   auth.Decision
	hasConn   bool
	pub, sub  map[string]auth.Decision
}

var _ auth.Authorizer = (*Cache)(nil)

// NewCache returns an empty Cache for one session that asks src. size bounds
// the topics remembered per method (Publish, Subscribe); zero means
// DefaultCacheSize. When a method's entries are full they are all dropped.
func NewCache(src Source, size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache{src: src, size: size}
}

// Authorize returns the decision of the source's current policy for p and a,
// from the cache when it has it.
func (c *Cache) Authorize(ctx context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	x := c.src.Current()
	if x == nil || p == nil {
		return auth.Deny
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.principal != p || c.policy != x {
		c.principal, c.policy = p, x
		c.hasConn = false
		clear(c.pub)
		clear(c.sub)
	}
	var m *map[string]auth.Decision
	switch a.Kind {
	case auth.Connect:
		if !c.hasConn {
			c.connect, c.hasConn = x.Authorize(ctx, p, a), true
		}
		return c.connect
	case auth.Publish:
		m = &c.pub
	case auth.Subscribe:
		m = &c.sub
	default:
		return auth.Deny
	}
	if d, ok := (*m)[a.Topic]; ok {
		return d
	}
	d := x.Authorize(ctx, p, a)
	if *m == nil {
		// No size hint: most sessions use a topic or two, and an idle
		// client's cache is part of what it costs (a hint of 16 made
		// every map about 2 KiB).
		*m = make(map[string]auth.Decision)
	} else if len(*m) >= c.size {
		clear(*m)
	}
	// Clone: the topic may share memory with a packet buffer.
	(*m)[strings.Clone(a.Topic)] = d
	return d
}

// Len returns the number of remembered decisions.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.pub) + len(c.sub)
	if c.hasConn {
		n++
	}
	return n
}
