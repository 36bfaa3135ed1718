package satauth

import (
	"context"
	"sync"
)

// flight merges concurrent calls for the same key into one, as
// golang.org/x/sync/singleflight does: the first caller runs fn, the others
// wait for its answer. fn runs with a context that no caller's cancellation
// ends (it has its own timeout), so one impatient client cannot fail the
// others; a waiter whose own context ends stops waiting.
type flight[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*call[V]
}

type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// do runs fn once for all concurrent callers with key. shared reports
// whether this caller waited for another's call.
func (g *flight[K, V]) do(ctx context.Context, key K, fn func(context.Context) (V, error)) (v V, err error, shared bool) {
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
