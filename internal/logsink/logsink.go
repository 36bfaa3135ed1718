package logsink

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// DefaultInterval bounds how long a record waits in the buffer.
const DefaultInterval = 100 * time.Millisecond

// bufferSize is the buffer: a full buffer is written at once.
const bufferSize = 64 << 10

// Writer is a buffered io.Writer safe for concurrent use: the writes of
// several handlers never interleave within a record, and reach the
// underlying writer in order.
type Writer struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a Writer in front of w that flushes every interval (zero
// means DefaultInterval). Close it to stop its goroutine and flush.
func New(w io.Writer, interval time.Duration) *Writer {
	if interval <= 0 {
		interval = DefaultInterval
	}
	s := &Writer{w: bufio.NewWriterSize(w, bufferSize), stop: make(chan struct{}), done: make(chan struct{})}
	go s.flusher(interval)
	return s
}

func (s *Writer) flusher(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.Flush()
		}
	}
}

// Write buffers p.
func (s *Writer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Flush writes what is buffered.
func (s *Writer) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}

// Close stops the periodic flush and flushes. Writes after Close are
// buffered and written by a later Flush.
func (s *Writer) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
	})
	return s.Flush()
}
