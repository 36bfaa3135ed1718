package flight

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDo: a caller that arrives during a call joins it; when its context
// ends it stops waiting without cancelling the call for the first caller.
func TestDo(t *testing.T) {
	var g Group[string, int]
	var runs atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		if runs.Add(1) == 1 {
			close(started)
		}
		<-release
		return 42, ctx.Err()
	}
	var wg sync.WaitGroup
	results := make(chan int, 10)
	wg.Go(func() {
		v, err, _ := g.Do(context.Background(), "k", fn)
		require.NoError(t, err)
		results <- v
	})
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err, shared := g.Do(ctx, "k", fn)
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, shared)
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		require.Equal(t, 42, v, "the impatient caller did not cancel the shared call")
	}
	require.EqualValues(t, 1, runs.Load())
}
