package mqttconn

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// admission counts the connections accepted and not yet judged, in all and
// per source, and refuses one beyond either bound.
type admission struct {
	max, perSource int

	mu  sync.Mutex
	n   int
	src map[netip.Prefix]int
	all atomic.Int64 // n, readable without the lock
}

type refusal uint8

const (
	overPending refusal = iota
	overSource
)

func (r refusal) String() string {
	if r == overSource {
		return "max_pending_per_source"
	}
	return "max_pending"
}

func (a *admission) init(max, perSource int) {
	a.max, a.perSource = max, perSource
	a.src = make(map[netip.Prefix]int)
}

func (a *admission) pending() int64 { return a.all.Load() }

// source returns the key a remote address is counted under: the IPv4
// address, or the /64 of an IPv6 address (one host, or one customer
// network, usually holds a whole /64). Addresses that are not IP share
// one key.
func source(addr net.Addr) netip.Prefix {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		if addr != nil {
			ap, _ = netip.ParseAddrPort(addr.String())
		}
	}
	ip := ap.Addr().Unmap()
	switch {
	case !ip.IsValid():
		return netip.Prefix{}
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// admit takes a slot for a connection from addr, or reports which bound
// refuses it.
func (a *admission) admit(addr net.Addr) (*slot, refusal) {
	key := source(addr)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n >= a.max {
		return nil, overPending
	}
	if a.src[key] >= a.perSource {
		return nil, overSource
	}
	a.n++
	a.all.Store(int64(a.n))
	a.src[key]++
	return &slot{a: a, key: key}, 0
}

// slot is one admitted, not yet judged connection.
type slot struct {
	a    *admission
	key  netip.Prefix
	once sync.Once
}

// release gives the slot back (once).
func (s *slot) release() {
	s.once.Do(func() {
		a := s.a
		a.mu.Lock()
		a.n--
		a.all.Store(int64(a.n))
		if a.src[s.key]--; a.src[s.key] <= 0 {
			delete(a.src, s.key)
		}
		a.mu.Unlock()
	})
}

// pendingConn is an accepted connection until its CONNECT is judged: it
// holds its admission slot.
type pendingConn struct {
	net.Conn
	slot   *slot
	client atomic.Bool // its CONNECT was read: a Client exists
	judged atomic.Bool
	// noWait makes Read fail at once with errNotReady: set by ReadReady
	// around a read of the *tls.Conn above, on the reading goroutine.
	noWait atomic.Bool
}

// Read reads the connection, or, inside ReadReady, reports that reading
// it would wait.
func (p *pendingConn) Read(b []byte) (int, error) {
	if p.noWait.Load() {
		return 0, errNotReady
	}
	return p.Conn.Read(b)
}

func (p *pendingConn) release() { p.slot.release() }

// pendingOf returns the pendingConn under nc (a *tls.Conn's too), or nil.
func pendingOf(nc net.Conn) *pendingConn {
	for nc != nil {
		switch c := nc.(type) {
		case *pendingConn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}
