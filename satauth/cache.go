package satauth

import (
	"container/list"
	"sync"
	"time"
)

// lru is a bounded cache whose entries also expire. Capacity 0 disables it.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front = most recently used
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key   K
	val   V
	until time.Time
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, ll: list.New(), items: make(map[K]*list.Element)}
}

// get returns the value for key if it is present and now is before its end.
func (c *lru[K, V]) get(key K, now time.Time) (V, bool) {
	var zero V
	if c.max <= 0 {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*lruEntry[K, V])
	if !now.Before(e.until) {
		c.ll.Remove(el)
		delete(c.items, key)
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// put stores val for key until the given time, evicting the least recently
// used entry when full.
func (c *lru[K, V]) put(key K, val V, until time.Time) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*lruEntry[K, V])
		e.val, e.until = val, until
		c.ll.MoveToFront(el)
		return
	}
	for c.ll.Len() >= c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*lruEntry[K, V]).key)
	}
	c.items[key] = c.ll.PushFront(&lruEntry[K, V]{key: key, val: val, until: until})
}

// len returns the number of entries, expired or not.
func (c *lru[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// update replaces the value of key, keeping its place, when key is cached;
// it reports whether it was.
func (c *lru[K, V]) update(key K, val V, until time.Time) bool {
	if c.max <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return false
	}
	e := el.Value.(*lruEntry[K, V])
	e.val, e.until = val, until
	return true
}

// removeIf removes every entry for which drop returns true and returns how
// many it removed. It walks the whole cache: for rare events (a deleted
// account or pod), not for the hot path.
func (c *lru[K, V]) removeIf(drop func(K, V) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for el := c.ll.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*lruEntry[K, V])
		if drop(e.key, e.val) {
			c.ll.Remove(el)
			delete(c.items, e.key)
			n++
		}
		el = next
	}
	return n
}
