// Package flight merges concurrent calls for the same key into one, as
// golang.org/x/sync/singleflight does, with two differences that
// authenticators need: the merged call runs with a context that no caller's
// cancellation ends (it has its own timeout), so one impatient client cannot
// fail the others, and a waiter whose own context ends stops waiting.
//
// It is shared by satauth (TokenReview, ServiceAccount reads) and
// internal/jwks (key set refetches).
package flight

import (
	"context"
	"sync"
)

// Group merges concurrent calls with the same key. The zero Group is ready
// to use.
type Group[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*call[V]
}

type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// Do runs fn once for all concurrent callers with key. shared reports
// whether this caller waited for another's call.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(context.Context) (V, error)) (v V, err error, shared bool) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[K]*call[V])
	}
	c, ok := g.calls[key]
	if !ok {
		c = &call[V]{done: make(chan struct{})}
		g.calls[key] = c
		g.mu.Unlock()
		go func() {
			defer func() {
				g.mu.Lock()
				delete(g.calls, key)
				g.mu.Unlock()
				close(c.done)
			}()
			c.val, c.err = fn(context.WithoutCancel(ctx))
		}()
	} else {
		g.mu.Unlock()
	}
	select {
	case <-c.done:
		return c.val, c.err, ok
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err(), ok
	}
}
