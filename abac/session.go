package abac

import "github.com/mqttauth/mqttauth/auth"

// A *Policy and a *Watcher are auth.SessionAuthorizers: given to
// auth.Config.Authorizer, every auth.Session gets its own Cache of
// DefaultCacheSize decisions per method, which Session.Authorize asks.
var (
	_ auth.SessionAuthorizer = (*Policy)(nil)
	_ auth.SessionAuthorizer = (*Watcher)(nil)
)

// NewSessionAuthorizer returns a new [Cache] of x for one session; it
// implements [auth.SessionAuthorizer].
func (x *Policy) NewSessionAuthorizer() auth.Authorizer { return NewCache(x, 0) }

// NewSessionAuthorizer returns a new [Cache] of the watched policy for one
// session, which follows reloads; it implements [auth.SessionAuthorizer].
func (w *Watcher) NewSessionAuthorizer() auth.Authorizer { return NewCache(w, 0) }

// Reset drops every remembered decision. auth.Session calls it after a
// re-authentication and after a re-check that kept the session.
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.principal, c.policy = nil, nil
	c.hasConn = false
	clear(c.pub)
	clear(c.sub)
}
