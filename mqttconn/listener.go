package mqttconn

import (
	"context"
	"net"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// listenerPoll is how often ShutdownListener looks whether the clients of
// the listener are gone.
const listenerPoll = 10 * time.Millisecond

// ShutdownListener shuts one listener of the server down, as Shutdown does
// the whole server, while the server and its other listeners go on
// serving: it closes ln (its Serve returns ErrClosed), closes the
// connections ln accepted that have not sent their CONNECT, sends
// DISCONNECT 0x8B (Server shutting down) to every connected MQTT 5 client
// of the listener (the name given to [Server.NewClient]) and closes the
// connection of every connected client of it, lets its authentication
// exchanges in flight finish, and waits until its clients are gone or ctx
// ends; then it closes what is left and returns ctx's error. It is how a
// program stops serving a port removed from its configuration
// (aioconfig.Broker.Apply).
func (s *Server) ShutdownListener(ctx context.Context, ln net.Listener, listener string) error {
	s.mu.Lock()
	s.markClosed(ln)
	s.mu.Unlock()
	_ = ln.Close()
	s.mu.Lock()
	var unread []*pendingConn
	for pc := range s.pending {
		if !pc.client.Load() && sameListener(ln.Addr(), pc.LocalAddr()) {
			unread = append(unread, pc)
		}
	}
	s.mu.Unlock()
	for _, pc := range unread {
		_ = pc.Close()
	}
	t := time.NewTicker(listenerPoll)
	defer t.Stop()
	for {
		clients := s.clientsOf(listener)
		if len(clients) == 0 {
			return nil
		}
		// Again at each look: a client whose exchange passed meanwhile
		// is connected now.
		for _, c := range clients {
			if c.isConnected() {
				c.disconnectFor(auth.ServerShuttingDown, "")
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			for _, c := range s.clientsOf(listener) {
				c.t.Close()
			}
			return ctx.Err()
		}
	}
}

// CloseListener closes one listener of the server at once, as Close does
// the whole server, while the server and its other listeners go on: it
// closes ln (its Serve returns ErrClosed, and a connection it accepted
// meanwhile is closed rather than served) and every connection ln
// accepted whose handler has not returned, without a DISCONNECT, whether
// its CONNECT was read or not. An adapter calls it when its broker closes
// the listener, after the broker's own close of its clients: a
// connection still authenticating then, or judged but not yet known to
// the broker, would otherwise be served after that sweep and keep the
// broker waiting for it (mochi's Close waits for every connection it
// has begun to establish).
func (s *Server) CloseListener(ln net.Listener) {
	s.mu.Lock()
	s.markClosed(ln)
	var conns []*pendingConn
	for pc := range s.pending {
		if sameListener(ln.Addr(), pc.LocalAddr()) {
			conns = append(conns, pc)
		}
	}
	s.mu.Unlock()
	_ = ln.Close()
	for _, pc := range conns {
		_ = pc.Close()
	}
}

// markClosed records that ln was closed by ShutdownListener or
// CloseListener, also before its Serve has begun (Serve then returns
// ErrClosed at once and forgets it, as it does when it ends). s.mu is
// held.
func (s *Server) markClosed(ln net.Listener) { s.lns[ln] = true }

// listenerClosed reports whether ShutdownListener or CloseListener
// closed ln.
func (s *Server) listenerClosed(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lns[ln]
}

// clientsOf returns the clients of a listener.
func (s *Server) clientsOf(listener string) []*Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Client
	for c := range s.clients {
		if c.listener == listener {
			out = append(out, c)
		}
	}
	return out
}

// sameListener reports whether a connection's local address is one of a
// listener's: the same port, and the same IP unless the listener is bound
// to every address.
func sameListener(ln, local net.Addr) bool {
	a, ok1 := ln.(*net.TCPAddr)
	b, ok2 := local.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return ln.String() == local.String()
	}
	return a.Port == b.Port && (a.IP.IsUnspecified() || a.IP.Equal(b.IP))
}
