package mochi

import (
	"context"
	"fmt"
)

// ServeListener adds l to the hook's server and serves it: a listener
// added after srv.Serve, for a port added to the configuration while the
// broker runs (aioconfig.Broker.Apply). Before Serve, srv.AddListener is
// enough.
func (h *Hook) ServeListener(l *Listener) error {
	if err := h.srv.AddListener(l); err != nil {
		return fmt.Errorf("mochi: %w", err)
	}
	h.srv.Listeners.Serve(l.ID(), h.srv.EstablishConnection)
	return nil
}

// RemoveListener stops serving the listener id, made by [Hook.Listener],
// while the server and its other listeners go on: through the connection
// layer (mqttconn.Server.ShutdownListener) it stops accepting, sends
// DISCONNECT 0x8B (Server shutting down) to the listener's connected MQTT
// 5 clients and closes their connections, lets its exchanges in flight
// finish, and waits until its clients are gone or ctx ends. The listener
// is removed from the server, so that its id may be added again.
func (h *Hook) RemoveListener(ctx context.Context, id string) error {
	got, ok := h.srv.Listeners.Get(id)
	if !ok {
		return fmt.Errorf("mochi: no listener %q", id)
	}
	l, ok := got.(*Listener)
	if !ok {
		return fmt.Errorf("mochi: listener %q was not made by Hook.Listener", id)
	}
	h.srv.Listeners.Delete(id)
	l.end.Store(true) // mochi's own Close of it closes no client
	// Its exchanges in flight have finished, or been cut at ctx's end,
	// when ShutdownListener returns: its context can go.
	defer l.cancel()
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	if ln == nil {
		return nil
	}
	return h.conn.ShutdownListener(ctx, ln, id)
}
