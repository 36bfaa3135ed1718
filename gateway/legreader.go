package gateway

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"

	"github.com/mqttauth/mqttauth/mqttconn"
)

// readerPool holds the read buffers of the legs (readBufferSize bytes
// each). A leg holds one only while it has bytes read and not yet
// consumed: an idle connection holds none (issue 23: memory per idle
// client), a busy one keeps its buffer from packet to packet.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// waitReadSize is what an idle leg reads without a buffer from the pool:
// a whole acknowledgement or a small PUBLISH, so that a packet arriving
// alone costs one read, as it did with a buffer of its own.
const waitReadSize = 64

// legReader reads the packets of one leg. While the leg is idle it waits
// in wait, which reads into the legReader's own small array; the packet
// is then read through a buffer from readerPool (which reads that array
// first, then the connection), and the buffer goes back to the pool as
// soon as nothing read is left in it. It is used by one goroutine at a
// time.
type legReader struct {
	nc    net.Conn
	br    *bufio.Reader // from readerPool while it holds unread bytes, else nil
	small [waitReadSize]byte
	r, w  int // small[r:w] is read from nc and not yet given to br
	// tls: nc is a client's *tls.Conn, whose records already received
	// buffered reads without waiting (mqttconn.ReadReady); noWait makes
	// Read do that.
	tls, noWait bool
}

// newLegReader returns the reader of the broker leg nc.
func newLegReader(nc net.Conn) *legReader { return &legReader{nc: nc} }

// newClientReader returns the reader of the client leg nc, accepted by
// the connection layer.
func newClientReader(nc net.Conn) *legReader {
	_, isTLS := nc.(*tls.Conn)
	return &legReader{nc: nc, tls: isTLS}
}

// readPacket reads one packet of at most max bytes (see readPacket).
func (l *legReader) readPacket(max int) (packet, error) {
	if l.idle() {
		if err := l.wait(); err != nil {
			return packet{}, err
		}
	}
	return l.next(max)
}

// idle reports that the leg holds no buffer and no unread byte: the next
// packet starts with wait.
func (l *legReader) idle() bool { return l.br == nil }

// wait blocks until the leg has bytes to read, and reads some into
// l.small: where an idle leg's goroutine blocks, with no buffer held.
// The relay loops call it themselves, with small frames: the runtime
// halves an idle goroutine's stack at a GC only when less than a quarter
// of it is in use (under 1,248 bytes, stackNosplit included, for 8 KiB
// to become 4 KiB), and a goroutine that ran the TLS handshake and the
// authentication grew to 8 KiB or more. Behind TLS, crypto/tls's own
// read frames exceed that bound: conn.serve reads the client leg on a
// goroutine that starts small.
func (l *legReader) wait() error {
	for {
		n, err := l.nc.Read(l.small[:])
		if n > 0 {
			l.r, l.w = 0, n
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// next reads a packet of at most max bytes, after wait or from the
// buffer.
func (l *legReader) next(max int) (packet, error) {
	if l.br == nil {
		l.br = readerPool.Get().(*bufio.Reader)
		l.br.Reset(l)
	}
	p, err := readPacket(l.br, max)
	if err != nil || (l.br.Buffered() == 0 && l.r == l.w) {
		l.release()
	}
	return p, err
}

// Read is the source of the pooled buffer: the bytes wait read, then the
// connection (in buffered, only what it gives without waiting).
func (l *legReader) Read(b []byte) (int, error) {
	if l.r < l.w {
		n := copy(b, l.small[l.r:l.w])
		l.r += n
		return n, nil
	}
	if l.noWait {
		n, err := mqttconn.ReadReady(l.nc, b)
		if n == 0 && err == nil {
			err = errNotReady
		}
		return n, err
	}
	return l.nc.Read(b)
}

// errNotReady ends a read of buffered: nothing more is there without
// waiting.
var errNotReady = errors.New("gateway: nothing ready")

// release gives the buffer back to the pool.
func (l *legReader) release() {
	if l.br != nil {
		l.br.Reset(nil)
		readerPool.Put(l.br)
		l.br = nil
	}
}

// buffered reports whether a whole packet has been read and not yet
// consumed (see packetBuffered), reading first, on a TLS leg, the records
// crypto/tls has already received: a client that writes each packet as a
// record of its own (MQTT.js does) sends several in one segment, and the
// relay then writes them to the other leg in one batch rather than one
// write each. Bytes wait read are always in the buffer by then: it reads
// all of them in its first fill.
func (l *legReader) buffered() bool {
	for {
		if l.br != nil && packetBuffered(l.br) {
			return true
		}
		if !l.tls || !l.readReady() {
			return false
		}
	}
}

// readReady reads into the buffer a record crypto/tls has already
// received, and reports whether there was one. It never waits. An error
// is left for the next blocking read: crypto/tls returns it again.
func (l *legReader) readReady() bool {
	if l.br == nil {
		l.br = readerPool.Get().(*bufio.Reader)
		l.br.Reset(l)
	}
	n := l.br.Buffered()
	if n == l.br.Size() {
		return false // a packet larger than the buffer: readPacket reads on
	}
	l.noWait = true
	_, err := l.br.Peek(n + 1)
	l.noWait = false
	if err != nil {
		if n == 0 {
			l.release()
		}
		return false
	}
	return true
}
