package logsink_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/internal/logsink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingWriter counts the writes it gets.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func (c *countingWriter) state() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.writes
}

// Records written concurrently reach the writer whole, in few writes,
// within the interval, and all of them by Close.
func TestWriter(t *testing.T) {
	cw := &countingWriter{}
	w := logsink.New(cw, 20*time.Millisecond)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 250 {
				fmt.Fprintf(w, "g=%d i=%d %s\n", g, i, strings.Repeat("x", 40))
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool { s, _ := cw.state(); return strings.Count(s, "\n") == 1000 }, 2*time.Second, 5*time.Millisecond,
		"flushed within the interval without Close")
	_, writes := cw.state()
	require.Less(t, writes, 100, "1000 records in a few large writes")
	fmt.Fprintln(w, "last")
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "twice is harmless")
	s, _ := cw.state()
	require.True(t, strings.HasSuffix(s, "last\n"))
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		require.True(t, line == "last" || strings.HasSuffix(line, strings.Repeat("x", 40)), "a record cut: %q", line)
	}
}
