package gateway

import (
	"bufio"
	"net"
	"sync"
)

// readerPool holds the read buffers of the legs (readBufferSize bytes
// each). A leg holds one only while it has bytes read and not yet
// consumed: an idle connection holds none (issue 23: memory per idle
// client), a busy one keeps its buffer from packet to packet.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// legReader reads the packets of one leg. While the leg is idle it waits
// for the first byte of the next packet with no buffer: it reads that
// byte into first, then takes a buffer from readerPool for the rest, and
// gives the buffer back as soon as nothing read is left in it. It is used
// by one goroutine at a time.
type legReader struct {
	nc    net.Conn
	br    *bufio.Reader // from readerPool while it holds unread bytes, else nil
	first [1]byte       // the next packet's first byte, read without a buffer
}

func newLegReader(nc net.Conn) *legReader { return &legReader{nc: nc} }

// readPacket reads one packet of at most max bytes (see readPacket).
func (l *legReader) readPacket(max int) (packet, error) {
	if l.idle() {
		if err := l.wait(); err != nil {
			return packet{}, err
		}
	}
	return l.next(max)
}

// idle reports that the leg holds no buffer: the next packet starts with
// wait.
func (l *legReader) idle() bool { return l.br == nil }

// next reads a packet of at most max bytes after wait, or from the
// buffer.
func (l *legReader) next(max int) (packet, error) {
	var first byte
	if l.br == nil {
		l.br = readerPool.Get().(*bufio.Reader)
		l.br.Reset(l.nc)
		first = l.first[0]
	} else {
		b, err := l.br.ReadByte()
		if err != nil {
			l.release()
			return packet{}, err
		}
		first = b
	}
	p, err := readPacketAfter(l.br, first, max)
	if err != nil || l.br.Buffered() == 0 {
		l.release()
	}
	return p, err
}

// wait reads the first byte of the next packet into l.first: where an
// idle leg's goroutine blocks, with no buffer held. The relay loops call
// it themselves, with small frames: the runtime halves an idle
// goroutine's stack at a GC only when less than a quarter of it is in
// use (less than 1,248 bytes for 8 KiB to become 4 KiB, stackNosplit
// included), and a client goroutine grows to 8 KiB or more during the
// TLS handshake and the authentication. Behind a plain-TCP client leg
// the wait then fits; behind TLS, crypto/tls's own read frames do not.
func (l *legReader) wait() error {
	for {
		n, err := l.nc.Read(l.first[:])
		if n == 1 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// release gives the buffer back to the pool.
func (l *legReader) release() {
	if l.br != nil {
		l.br.Reset(nil)
		readerPool.Put(l.br)
		l.br = nil
	}
}

// buffered reports whether a whole packet has been read and not yet
// consumed (see packetBuffered).
func (l *legReader) buffered() bool {
	return l.br != nil && packetBuffered(l.br)
}
