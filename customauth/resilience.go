package customauth

import (
	"container/list"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// breaker is a consecutive-failure circuit breaker with a single half-open
// probe.
type breaker struct {
	threshold int
	coolDown  time.Duration
	now       func() time.Time
	log       *slog.Logger
	onChange  func(auth.ComponentEventKind) // nil when not observed

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
}

// allow reports whether a request may be made and whether it is the
// half-open probe.
func (b *breaker) allow() (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return true, false
	}
	if b.probing || b.now().Before(b.openUntil) {
		return false, false
	}
	b.probing = true
	b.changed(auth.BreakerHalfOpen)
	return true, true
}

// open reports whether a request would be refused now, without claiming
// the probe: a cheap check before any work is started.
func (b *breaker) open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures >= b.threshold && (b.probing || b.now().Before(b.openUntil))
}

// record notes the outcome of a request.
func (b *breaker) record(reachable, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if reachable {
		if b.failures >= b.threshold {
			b.log.Info("customauth: circuit breaker closed: the server answers again")
			b.changed(auth.BreakerClosed)
		}
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.threshold && (probe || b.failures == b.threshold) {
		b.openUntil = b.now().Add(b.coolDown)
		b.log.Warn("customauth: circuit breaker open: the server is unreachable",
			slog.Int("failures", b.failures), slog.Duration("cool_down", b.coolDown))
		b.changed(auth.BreakerOpen)
	}
}

// flights coalesces identical concurrent requests: one HTTP call, one
// verdict for all callers.
type flights struct {
	mu     sync.Mutex
	m      map[[32]byte]*flight
	shared func() // nil when not observed
}

type flight struct {
	done chan struct{}
	v    verdict
}

// do runs fn once for all concurrent callers with the same key. A caller
// whose context ends stops waiting; the call goes on for the others.
func (g *flights) do(ctx context.Context, key [32]byte, fn func() verdict) (verdict, error) {
	g.mu.Lock()
	f, ok := g.m[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		g.m[key] = f
		g.mu.Unlock()
		go func() {
			// The call runs apart from the first caller so that its
			// cancellation does not fail the others; it is bounded by the
			// request ceiling, so it does not outlive it.
			f.v = fn()
			g.mu.Lock()
			delete(g.m, key)
			g.mu.Unlock()
			close(f.done)
		}()
	} else {
		g.mu.Unlock()
		if g.shared != nil {
			g.shared()
		}
	}
	select {
	case <-f.done:
		return f.v, nil
	case <-ctx.Done():
		return verdict{}, ctx.Err()
	}
}

// cache keeps Pass verdicts until min(expiry, TTL), least recently used
// first out.
type cache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu  sync.Mutex
	lru *list.List // of *cacheEntry, most recent first
	m   map[[32]byte]*list.Element
}

type cacheEntry struct {
	key   [32]byte
	v     verdict
	until time.Time
}

func newCache(ttl time.Duration, max int, now func() time.Time) *cache {
	return &cache{ttl: ttl, max: max, now: now, lru: list.New(), m: map[[32]byte]*list.Element{}}
}

func (c *cache) get(key [32]byte) (verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return verdict{}, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.until) {
		c.lru.Remove(el)
		delete(c.m, key)
		return verdict{}, false
	}
	c.lru.MoveToFront(el)
	return e.v, true
}

func (c *cache) put(key [32]byte, v verdict) {
	if v.outcome != auth.Pass {
		return // failures and errors are never cached
	}
	until := c.now().Add(c.ttl)
	if !v.expiry.IsZero() && v.expiry.Before(until) {
		until = v.expiry
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		el.Value.(*cacheEntry).v, el.Value.(*cacheEntry).until = v, until
		c.lru.MoveToFront(el)
		return
	}
	c.m[key] = c.lru.PushFront(&cacheEntry{key: key, v: v, until: until})
	for c.lru.Len() > c.max {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.m, last.Value.(*cacheEntry).key)
	}
}
