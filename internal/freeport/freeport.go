// Package freeport finds loopback ports for test servers that run in other
// processes, which must be told a port before they bind it.
//
// Asking the kernel for port 0 and closing the listener returns a port from
// the ephemeral range, the one every outgoing connection and every other
// test's "127.0.0.1:0" listener also draws from, so on a busy machine
// another socket can take it before the server binds it. Loopback picks
// ports below that range instead, where only explicit binds land.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// base is the lowest port Loopback picks; below it are well-known and
// registered services.
const base = 10000

// Loopback returns a port on 127.0.0.1 that nothing listened on when it
// checked. It tries random ports between 10000 and the start of the
// kernel's ephemeral range, and falls back to a kernel-chosen port when
// that range is too small or crowded. A caller that starts a server on the
// port should still treat "address already in use" as a reason to try
// again with a new port.
func Loopback() (int, error) {
	if lo := ephemeralLow(); lo > base+1000 {
		for range 20 {
			port := base + rand.IntN(lo-base)
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err == nil {
				l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of Linux's ephemeral range, or 32768
// (Linux's default) where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
