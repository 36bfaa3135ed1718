package satauth

import (
	"context"

	iflight "github.com/mqttauth/mqttauth/internal/flight"
)

// flight merges concurrent calls for the same key into one; see
// internal/flight, which it wraps so that satauth.go keeps its unexported
// name.
type flight[K comparable, V any] struct {
	g iflight.Group[K, V]
}

// do runs fn once for all concurrent callers with key.
func (f *flight[K, V]) do(ctx context.Context, key K, fn func(context.Context) (V, error)) (V, error, bool) {
	return f.g.Do(ctx, key, fn)
}
