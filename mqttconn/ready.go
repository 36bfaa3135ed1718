package mqttconn

import (
	"crypto/tls"
	"errors"
	"net"
)

// ReadReady reads into b what nc can give without waiting for the
// network: for a TLS connection accepted by [Server.Serve], the plaintext
// of a record crypto/tls has already received (a client that writes a
// record per packet often sends several in one segment, and crypto/tls
// reads them from the socket at once but returns one per Read). It never
// blocks and makes no system call. It returns 0 and no error when nothing
// is ready, and always on a connection Serve did not accept, without TLS
// (there, one Read already takes all the socket holds), or before
// [Server.NewClient] was called for it.
//
// A relay uses it to write what it has read in one batch rather than a
// write per record. Only the goroutine that reads nc may call it. An error
// is the connection's own (crypto/tls keeps it, and the next Read returns
// it again).
func ReadReady(nc net.Conn, b []byte) (int, error) {
	tc, ok := nc.(*tls.Conn)
	if !ok || len(b) == 0 {
		return 0, nil
	}
	pc, ok := tc.NetConn().(*pendingConn)
	// Before its CONNECT was read (NewClient) the handshake may not be
	// done, and crypto/tls keeps a handshake's error.
	if !ok || !pc.client.Load() {
		return 0, nil
	}
	pc.noWait.Store(true)
	n, err := tc.Read(b)
	pc.noWait.Store(false)
	if errors.Is(err, errNotReady) {
		err = nil
	}
	return n, err
}

// errNotReady is what pendingConn.Read returns inside ReadReady: a
// temporary timeout, which crypto/tls does not keep as the connection's
// error, with the record it was reading left intact in its buffer.
var errNotReady net.Error = notReady{}

type notReady struct{}

func (notReady) Error() string   { return "mqttconn: no data ready" }
func (notReady) Timeout() bool   { return true }
func (notReady) Temporary() bool { return true }
