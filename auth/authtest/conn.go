package authtest

import (
	"sync"

	"github.com/mqttauth/mqttauth/auth"
)

// Conn is an [auth.Conn] that records how the session ended it.
type Conn struct {
	mu     sync.Mutex
	closed bool
	final  auth.Packet
	calls  int
	done   chan struct{}
}

// NewConn returns a Conn that has not been closed.
func NewConn() *Conn { return &Conn{done: make(chan struct{})} }

// Close records final and marks the connection closed.
func (c *Conn) Close(final auth.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.closed {
		return
	}
	c.closed, c.final = true, final
	close(c.done)
}

// Final returns the packet the session sent when it ended the connection
// and whether it has ended it.
func (c *Conn) Final() (auth.Packet, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.final, c.closed
}

// Calls returns how many times Close was called; a Session calls it at most
// once.
func (c *Conn) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// Done is closed when the session ends the connection.
func (c *Conn) Done() <-chan struct{} { return c.done }
