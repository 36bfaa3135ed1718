package gateway

import (
	"encoding/binary"
	"net"
)

// proxySignature begins every PROXY protocol v2 header.
var proxySignature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyHeader returns the PROXY protocol v2 header that tells the broker
// the client's address (src) and the address it connected to (dst). When
// either is not a TCP address, or the families differ, it is a LOCAL
// header (the broker uses the connection's own addresses).
func proxyHeader(src, dst net.Addr) []byte {
	h := append([]byte(nil), proxySignature...)
	s, ok1 := src.(*net.TCPAddr)
	d, ok2 := dst.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return append(h, 0x20, 0x00, 0, 0) // v2 LOCAL, UNSPEC, no addresses
	}
	if s4, d4 := s.IP.To4(), d.IP.To4(); s4 != nil && d4 != nil {
		h = append(h, 0x21, 0x11) // v2 PROXY, TCP over IPv4
		h = binary.BigEndian.AppendUint16(h, 12)
		h = append(h, s4...)
		h = append(h, d4...)
	} else {
		h = append(h, 0x21, 0x21) // v2 PROXY, TCP over IPv6
		h = binary.BigEndian.AppendUint16(h, 36)
		h = append(h, s.IP.To16()...)
		h = append(h, d.IP.To16()...)
	}
	h = binary.BigEndian.AppendUint16(h, uint16(s.Port))
	return binary.BigEndian.AppendUint16(h, uint16(d.Port))
}
