package revocation

import (
	"sync"
	"sync/atomic"
)

// item is what an lru holds: something that remembers when it was last
// used.
type item interface {
	lastUsed() int64
}

// lru is a map bounded to max entries. When full, adding evicts the least
// recently used of a sample of entries (Go's map iteration order is
// random), which costs O(sample) rather than a list maintained on every
// lookup: lookups take a read lock only.
type lru[T item] struct {
	mu        sync.RWMutex
	m         map[string]T
	max       int
	evictions atomic.Uint64
}

const evictionSample = 16

func newLRU[T item](max int) *lru[T] {
	return &lru[T]{m: make(map[string]T), max: max}
}

func (l *lru[T]) get(key string) T {
	l.mu.RLock()
	v := l.m[key]
	l.mu.RUnlock()
	return v
}

// getBytes looks key up without allocating.
func (l *lru[T]) getBytes(key []byte) T {
	l.mu.RLock()
	v := l.m[string(key)]
	l.mu.RUnlock()
	return v
}

// add returns the entry under key, creating it with mk (evicting another
// when full) if absent.
func (l *lru[T]) add(key string, mk func() T) T {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := l.m[key]; ok {
		return v
	}
	for len(l.m) >= l.max {
		var (
			oldKey string
			oldAt  int64
			n      int
		)
		for k, v := range l.m {
			if at := v.lastUsed(); n == 0 || at < oldAt {
				oldKey, oldAt = k, at
			}
			if n++; n == evictionSample {
				break
			}
		}
		delete(l.m, oldKey)
		l.evictions.Add(1)
	}
	v := mk()
	l.m[key] = v
	return v
}

func (l *lru[T]) all() []T {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]T, 0, len(l.m))
	for _, v := range l.m {
		out = append(out, v)
	}
	return out
}

func (l *lru[T]) len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.m)
}
