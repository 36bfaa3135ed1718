package gateway

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// Defaults for the zero fields of a [Coordination].
const (
	// DefaultCoordinationTopic is the topic of the takeover notices. It
	// begins with '$', so that the broker matches it with no filter that
	// begins with a wildcard ("#", "+/…") [MQTT-4.7.2-1].
	DefaultCoordinationTopic = "$mqttauth/takeover"
	// DefaultCoordinationClientIDPrefix begins the client identifier of
	// every gateway's control connection (the rest is the gateway's random
	// instance identifier). Clients whose identifier begins with it are
	// refused.
	DefaultCoordinationClientIDPrefix = "mqttauth-gw-"
	// DefaultCoordinationUsername is the control connection's User Name.
	DefaultCoordinationUsername = "mqttauth-gateway"
	// DefaultNoticeTimeout bounds waiting for the broker's PUBACK of a
	// notice, which an admitted client waits for before its broker leg is
	// dialed.
	DefaultNoticeTimeout = time.Second
	// DefaultTakeoverGrace is how long after the broker closed a client's
	// leg the gateway waits for another admission's notice.
	DefaultTakeoverGrace = 250 * time.Millisecond
	// DefaultTakeoverWindow is how long before the broker closed a
	// client's leg a notice still counts.
	DefaultTakeoverWindow = 10 * time.Second
)

// Reason codes the gateway sends itself that package auth does not name.
const (
	sessionTakenOver        auth.ReasonCode = 0x8E // Session taken over
	clientIdentifierInvalid auth.ReasonCode = 0x85 // Client Identifier not valid
)

// ErrCoordination: takeover coordination is misconfigured, or a notice
// could not be published (the client is served anyway).
var ErrCoordination = errors.New("gateway: takeover coordination")

// coordKeepAlive is the control connection's Keep Alive; a PINGREQ goes
// every half of it and the connection is replaced when nothing came back
// for a whole one.
const coordKeepAlive = 30 * time.Second

// maxNotices bounds the notices a gateway remembers; beyond it (after
// those older than the window are forgotten) new ones are not recorded:
// a takeover is then told as 0x80.
const maxNotices = 1 << 17

// maxInFlightNotices bounds the notices published and not yet
// acknowledged; beyond it a notice is not published.
const maxInFlightNotices = 4096

// Coordination makes gateways in front of one MQTT 3.1.1 broker (or
// cluster) tell each other, through the broker, which client identifiers
// they admit, so that an MQTT 5 client whose session a connection through
// another gateway took over gets DISCONNECT 0x8E (Session taken over)
// rather than 0x80. An MQTT 3.1.1 broker closes the connection it takes a
// session from without saying why; an MQTT 5 broker says 0x8E itself (the
// gateway relays it), so Coordination needs Config.UpstreamProtocol
// UpstreamV311. See the package documentation's TAKEOVER section.
//
// Off unless set: it costs every gateway a connection to the broker and
// every admitted client a round trip to it (a QoS 1 PUBLISH and its
// PUBACK, bounded by NoticeTimeout) before its own leg is dialed, and it
// needs the broker's ACL to reserve Topic to the gateways' Username.
type Coordination struct {
	// Topic is where the notices are published, and what the control
	// connection subscribes to; the gateway refuses its clients every
	// topic at or under it (publish, subscribe, Will), whatever the
	// policy says. Empty means DefaultCoordinationTopic. No wildcards.
	Topic string
	// ClientIDPrefix begins the control connection's client identifier
	// (the rest is random, per gateway); clients whose identifier begins
	// with it are refused (CONNACK 0x85), so that none can take a control
	// connection over. Empty means DefaultCoordinationClientIDPrefix.
	ClientIDPrefix string
	// Username is the control connection's User Name. Use an identity no
	// client principal can have, and let only it publish and subscribe to
	// Topic in the broker's ACL. Empty means DefaultCoordinationUsername.
	Username string
	// Password is the control connection's Password; nil means
	// Config.UpstreamPassword. Never logged.
	Password []byte
	// NoticeTimeout bounds waiting for the broker's PUBACK of a notice;
	// past it (or at once when the control connection is down) the client
	// is connected anyway and a takeover of its session elsewhere is told
	// as 0x80. Zero means DefaultNoticeTimeout.
	NoticeTimeout time.Duration
	// Grace is how long, after the broker closed an MQTT 5 client's leg,
	// the gateway waits for a notice of another admission of its client
	// identifier before it says 0x80. Zero means DefaultTakeoverGrace.
	Grace time.Duration
	// Window is how long before the broker closed the leg a notice still
	// counts. Zero means DefaultTakeoverWindow.
	Window time.Duration
}

// noticeKey stands for a client identifier in notices: the first 16 bytes
// of its SHA-256, so that notices do not carry identifiers in clear (they
// are not secret: a hash of a guessable identifier is guessable too).
type noticeKey [16]byte

func keyOf(clientID string) noticeKey {
	h := sha256.Sum256([]byte("mqttauth takeover\x00" + clientID))
	return noticeKey(h[:16])
}

// notice is the latest admission of a client identifier: seq orders it
// among every admission the gateway recorded (its own and others'
// notices), at is when it was recorded.
type notice struct {
	seq uint64
	at  time.Time
}

// coordinator is a gateway's control connection and the notices it saw.
//
// Goroutines: run (dials, then pings and reconnects with backoff) and,
// while connected, one reading the broker; both end with the gateway's
// context, and Close waits for them.
type coordinator struct {
	g        *Gateway
	cfg      Coordination // defaults applied
	id       string       // this gateway's instance identifier, hex
	clientID string
	levels   []string // of cfg.Topic
	now      func() time.Time

	mu      sync.Mutex
	nc      net.Conn // the control connection, nil while down
	next    uint16
	pending map[uint16]chan error // notices awaiting PUBACK
	notices map[noticeKey]notice
	seq     uint64
	prune   int           // len(notices) at which old ones are forgotten
	changed chan struct{} // closed when a notice is recorded

	wmu      sync.Mutex // serializes writes to nc
	lastRead atomic.Int64
	done     chan struct{}
}

func newCoordinator(g *Gateway, cfg Coordination) (*coordinator, error) {
	if g.cfg.UpstreamProtocol != UpstreamV311 {
		return nil, fmt.Errorf("%w: needs UpstreamProtocol 3.1.1 (an MQTT 5 broker says 0x8E itself)", ErrCoordination)
	}
	if cfg.NoticeTimeout < 0 || cfg.Grace < 0 || cfg.Window < 0 {
		return nil, fmt.Errorf("%w: negative duration", ErrCoordination)
	}
	cfg.Topic = cmp.Or(cfg.Topic, DefaultCoordinationTopic)
	if err := mqttconn.CheckTopicName(cfg.Topic); err != nil {
		return nil, fmt.Errorf("%w: topic %q: %w", ErrCoordination, cfg.Topic, err)
	}
	cfg.ClientIDPrefix = cmp.Or(cfg.ClientIDPrefix, DefaultCoordinationClientIDPrefix)
	cfg.Username = cmp.Or(cfg.Username, DefaultCoordinationUsername)
	if cfg.Password == nil {
		cfg.Password = g.cfg.UpstreamPassword
	}
	cfg.NoticeTimeout = cmp.Or(cfg.NoticeTimeout, DefaultNoticeTimeout)
	cfg.Grace = cmp.Or(cfg.Grace, DefaultTakeoverGrace)
	cfg.Window = cmp.Or(cfg.Window, DefaultTakeoverWindow)
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	return &coordinator{
		g:        g,
		cfg:      cfg,
		id:       id,
		clientID: cfg.ClientIDPrefix + id,
		levels:   strings.Split(cfg.Topic, "/"),
		now:      time.Now,
		pending:  make(map[uint16]chan error),
		notices:  make(map[noticeKey]notice),
		prune:    1024,
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
	}, nil
}

// reserved reports whether a topic name or filter reaches the
// coordination topic or a topic under it, as the broker matches: a filter
// beginning with a wildcard does not match a topic beginning with '$'
// [MQTT-4.7.2-1]. Deliveries are checked with the same function (as the
// Subscribe of their topic name), so a broker that matched "#" with it
// anyway would still deliver nothing.
func (k *coordinator) reserved(topic string) bool {
	rest := topic
	for i, level := range k.levels {
		var f string
		var more bool
		f, rest, more = strings.Cut(rest, "/")
		switch {
		case f == "#":
			return i > 0 || level == "" || level[0] != '$'
		case f == "+":
			if i == 0 && level != "" && level[0] == '$' {
				return false
			}
		case f != level:
			return false
		}
		if !more {
			// The filter ends: it matches the topic itself (at the last
			// level) or nothing under it.
			return i == len(k.levels)-1
		}
	}
	return true // a level under the topic
}

// refuses returns the CONNACK code of a CONNECT the gateway refuses
// because of coordination, or 0: a client identifier that could take a
// control connection over, a Will on the coordination topic.
func (k *coordinator) refuses(cp *packets.Connect) (auth.ReasonCode, error) {
	if strings.HasPrefix(cp.ClientID, k.cfg.ClientIDPrefix) {
		return clientIdentifierInvalid, fmt.Errorf("%w: client identifier with the control connections' prefix", ErrCoordination)
	}
	if cp.WillFlag && k.reserved(cp.WillTopic) {
		return auth.NotAuthorized, fmt.Errorf("%w: Will on the coordination topic", ErrCoordination)
	}
	return 0, nil
}

// admit records an admission of clientID by this gateway and announces it
// to the others (bounded by NoticeTimeout; a failure is logged and does not
// stop the client). It returns the admission's sequence number for
// takenOver.
func (k *coordinator) admit(ctx context.Context, clientID string) uint64 {
	key := keyOf(clientID)
	seq := k.record(key)
	if err := k.announce(ctx, key); err != nil {
		k.g.log.LogAttrs(ctx, slog.LevelDebug, "gateway: takeover notice not published",
			slog.String("client_id", clientID), slog.Any("err", err))
	}
	return seq
}

// record notes an admission of key now and wakes the gateway's waiters.
func (k *coordinator) record(key noticeKey) uint64 {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.notices) >= k.prune {
		for key, n := range k.notices {
			if now.Sub(n.at) > k.cfg.Window {
				delete(k.notices, key)
			}
		}
		k.prune = max(1024, 2*len(k.notices))
	}
	k.seq++
	if _, ok := k.notices[key]; ok || len(k.notices) < maxNotices {
		k.notices[key] = notice{seq: k.seq, at: now}
	}
	close(k.changed)
	k.changed = make(chan struct{})
	return k.seq
}

// takenOver reports whether the client identifier of the admission seq
// was admitted again (by another gateway's notice, or by this gateway)
// after seq and no more than Window before closed, waiting up to Grace for
// such a notice.
func (k *coordinator) takenOver(ctx context.Context, clientID string, seq uint64, closed time.Time) bool {
	key := keyOf(clientID)
	timer := time.NewTimer(k.cfg.Grace)
	defer timer.Stop()
	for {
		k.mu.Lock()
		n, ok := k.notices[key]
		changed := k.changed
		k.mu.Unlock()
		if ok && n.seq > seq && !n.at.Before(closed.Add(-k.cfg.Window)) {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// The notice's payload: "1 <gateway instance id> <key>", in hex.
func (k *coordinator) payload(key noticeKey) []byte {
	return fmt.Appendf(nil, "1 %s %x", k.id, key[:])
}

// parseNotice returns the gateway and the key of a notice's payload.
func parseNotice(b []byte) (gw string, key noticeKey, ok bool) {
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != "1" || hex.DecodedLen(len(f[2])) != len(key) {
		return "", key, false
	}
	if _, err := hex.Decode(key[:], []byte(f[2])); err != nil {
		return "", key, false
	}
	return f[1], key, true
}

// received records a notice read from the broker, unless it is this
// gateway's own (its admissions are recorded when they happen) or
// malformed.
func (k *coordinator) received(payload []byte) {
	if gw, key, ok := parseNotice(payload); ok && gw != k.id {
		k.record(key)
	}
}

// announce publishes key's notice (QoS 1) and waits for the PUBACK.
func (k *coordinator) announce(ctx context.Context, key noticeKey) error {
	k.mu.Lock()
	nc := k.nc
	if nc == nil {
		k.mu.Unlock()
		return fmt.Errorf("%w: the control connection is down", ErrCoordination)
	}
	if len(k.pending) >= maxInFlightNotices {
		k.mu.Unlock()
		return fmt.Errorf("%w: %d notices in flight", ErrCoordination, len(k.pending))
	}
	for {
		k.next++
		if _, used := k.pending[k.next]; k.next != 0 && !used {
			break
		}
	}
	id := k.next
	ch := make(chan error, 1)
	k.pending[id] = ch
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		if k.pending[id] == ch {
			delete(k.pending, id)
		}
		k.mu.Unlock()
	}()

	b := appendString(nil, []byte(k.cfg.Topic))
	b = binary.BigEndian.AppendUint16(b, id)
	if err := k.write(nc, frame(packets.PUBLISH<<4|1<<1, append(b, k.payload(key)...))); err != nil {
		return fmt.Errorf("%w: %w", ErrCoordination, err)
	}
	timer := time.NewTimer(k.cfg.NoticeTimeout)
	defer timer.Stop()
	select {
	case err := <-ch:
		return err
	case <-timer.C:
		return fmt.Errorf("%w: no PUBACK within %v", ErrCoordination, k.cfg.NoticeTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// write writes one packet to the control connection; a failed write
// closes it (run reconnects).
func (k *coordinator) write(nc net.Conn, b []byte) error {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	_ = nc.SetWriteDeadline(time.Now().Add(k.g.lim.WriteTimeout))
	_, err := nc.Write(b)
	if err != nil {
		_ = nc.Close()
	}
	return err
}

// run keeps the control connection up until ctx ends, reconnecting with
// a jittered exponential backoff (100 ms to 10 s).
func (k *coordinator) run(ctx context.Context) {
	defer close(k.done)
	const minBackoff, maxBackoff = 100 * time.Millisecond, 10 * time.Second
	backoff := minBackoff
	for {
		start := time.Now()
		err := k.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = minBackoff
		}
		k.g.log.LogAttrs(ctx, slog.LevelWarn, "gateway: coordination connection down",
			slog.String("upstream", k.g.cfg.Upstream), slog.Any("err", err))
		t := time.NewTimer(backoff/2 + mrand.N(backoff/2))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session runs one control connection: CONNECT (clean session),
// SUBSCRIBE to the topic (QoS 0), then reading notices and PUBACKs and
// pinging until the connection or ctx ends.
func (k *coordinator) session(ctx context.Context) error {
	nc, r, err := k.dial(ctx)
	if err != nil {
		return err
	}
	k.lastRead.Store(time.Now().UnixNano())
	k.mu.Lock()
	k.nc = nc
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.nc = nil
		for id, ch := range k.pending {
			ch <- fmt.Errorf("%w: the control connection closed", ErrCoordination)
			delete(k.pending, id)
		}
		k.mu.Unlock()
	}()
	k.g.log.LogAttrs(ctx, slog.LevelInfo, "gateway: coordination connection up",
		slog.String("upstream", k.g.cfg.Upstream), slog.String("client_id", k.clientID))
	read := make(chan error, 1)
	go func() { read <- k.read(nc, r) }()
	tick := time.NewTicker(coordKeepAlive / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = k.write(nc, []byte{packets.DISCONNECT << 4, 0})
			_ = nc.Close()
			<-read
			return ctx.Err()
		case err := <-read:
			_ = nc.Close()
			return err
		case <-tick.C:
			if time.Since(time.Unix(0, k.lastRead.Load())) > coordKeepAlive {
				_ = nc.Close()
				<-read
				return fmt.Errorf("%w: no answer from the broker within %v", ErrCoordination, coordKeepAlive)
			}
			_ = k.write(nc, []byte{packets.PINGREQ << 4, 0})
		}
	}
}

// dial connects the control connection and subscribes it, within
// Config.UpstreamTimeout.
func (k *coordinator) dial(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	g := k.g
	ctx, cancel := context.WithTimeout(ctx, g.cfg.UpstreamTimeout)
	defer cancel()
	nc, err := g.cfg.Dialer.DialContext(ctx, "tcp", g.cfg.Upstream)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, *bufio.Reader, error) {
		_ = nc.Close()
		return nil, nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	if g.cfg.ProxyProtocol {
		if _, err := nc.Write(proxyHeader(nc.LocalAddr(), nc.RemoteAddr())); err != nil {
			return fail(err)
		}
	}
	if g.cfg.UpstreamTLS != nil {
		tc := tls.Client(nc, g.cfg.UpstreamTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		nc = tc
	}
	cp := &packets.Connect{ProtocolVersion: 4, ClientID: k.clientID, CleanStart: true,
		KeepAlive: uint16(coordKeepAlive / time.Second), Username: k.cfg.Username, UsernameFlag: true}
	if len(k.cfg.Password) > 0 {
		cp.Password, cp.PasswordFlag = k.cfg.Password, true
	}
	r := bufio.NewReaderSize(nc, readBufferSize)
	ca, err := brokerConnect(nc, cp, func() (packet, error) { return readPacket(r, int(g.lim.MaxPacketSize)) })
	if err != nil {
		return fail(err)
	}
	if ca.code != 0 {
		return fail(fmt.Errorf("%w: the broker refused the control connection: %v", ErrCoordination, auth.FromConnackV311(ca.code)))
	}
	const subID = 1
	if _, err := nc.Write(subscribe311(subID, []subscription{{filter: []byte(k.cfg.Topic)}})); err != nil {
		return fail(err)
	}
	for {
		p, err := readPacket(r, int(g.lim.MaxPacketSize))
		if err != nil {
			return fail(err)
		}
		if p.typ() != packets.SUBACK {
			continue // a notice before the SUBACK: too early to matter
		}
		if len(p.body) != 3 || p.body[2] >= 0x80 {
			return fail(fmt.Errorf("%w: the broker refused the subscription to %q", ErrCoordination, k.cfg.Topic))
		}
		break
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, r, nil
}

// read reads the control connection: notices (recorded unless they are
// this gateway's own) and PUBACKs (handed to announce).
func (k *coordinator) read(nc net.Conn, r *bufio.Reader) error {
	for {
		p, err := readPacket(r, int(k.g.lim.MaxPacketSize))
		if err != nil {
			return err
		}
		k.lastRead.Store(time.Now().UnixNano())
		switch p.typ() {
		case packets.PUBLISH:
			pub, err := parsePublish(p, mqttconn.V311)
			if err != nil {
				return err
			}
			if pub.qos == 1 {
				_ = k.write(nc, ack(packets.PUBACK, pub.id, 0, mqttconn.V311))
			}
			// A QoS 2 delivery cannot happen: the subscription is QoS 0.
			if string(pub.topic) != k.cfg.Topic {
				continue
			}
			k.received(pub.payload)
		case packets.PUBACK:
			if id, ok := packetID(p.body); ok {
				k.mu.Lock()
				if ch, ok := k.pending[id]; ok {
					ch <- nil
					delete(k.pending, id)
				}
				k.mu.Unlock()
			}
		}
	}
}

// up reports whether the control connection is up (subscribed).
func (k *coordinator) up() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nc != nil
}

// CoordinationCheck reports whether takeover coordination works: nil when
// Config.Coordination is not set or the control connection is up (connected
// and subscribed), else an error wrapping ErrCoordination. While it is
// down clients are served as usual; a takeover of one of their sessions
// through another gateway is told as 0x80. For a health check or a
// metric, not for readiness.
func (g *Gateway) CoordinationCheck(context.Context) error {
	if g.coord == nil || g.coord.up() {
		return nil
	}
	return fmt.Errorf("%w: the control connection to %s is down", ErrCoordination, g.cfg.Upstream)
}

// start runs the coordinator until the gateway closes.
func (k *coordinator) start(ctx context.Context) {
	go k.run(ctx)
}

// wait waits until the coordinator's goroutines have ended.
func (k *coordinator) wait() { <-k.done }

// coordinate refuses what would break coordination and records and
// announces the admission of c's client identifier, after authentication
// and before the broker leg is dialed. It returns the refusal's error.
func (c *conn) coordinate(cp *packets.Connect) error {
	k := c.g.coord
	if k == nil {
		return nil
	}
	if code, err := k.refuses(cp); code != 0 {
		c.lc.Refuse(code, "", err)
		return err
	}
	if cp.ClientID != "" { // else a random one: nothing to take over
		c.admitted = k.admit(c.g.ctx, cp.ClientID)
	}
	return nil
}

// brokerClosed tells an MQTT 5 client whose 3.1.1 broker closed the
// connection (3.1.1 has no server DISCONNECT), unless the gateway or the
// client ended it: DISCONNECT 0x8E (Session taken over) when coordination
// learns of a later admission of the client identifier (see
// coordinator.takenOver: it may wait Grace for it), else 0x80.
func (c *conn) brokerClosed() {
	if c.tr == nil {
		return
	}
	c.mu.Lock()
	ours := c.closed || c.upDone
	c.brokerGone = !ours
	c.mu.Unlock()
	if ours {
		return
	}
	code, reason := auth.UnspecifiedError, "the broker closed the connection"
	if k := c.g.coord; k != nil && c.admitted != 0 && k.takenOver(c.g.ctx, c.clientID, c.admitted, k.now()) {
		code, reason = sessionTakenOver, "another connection took the session over"
	}
	c.mu.Lock()
	ours = c.closed || c.upDone
	c.mu.Unlock()
	if !ours {
		c.lc.Disconnect(code, reason)
	}
}

// awaitBrokerClosed waits, after the client's relay ended, for the
// downstream goroutine (done) when the broker had closed its leg first:
// brokerClosed is then deciding what to tell the client (for at most
// Grace) and closes both legs itself.
func (c *conn) awaitBrokerClosed(done <-chan struct{}) {
	c.mu.Lock()
	gone := c.brokerGone
	c.mu.Unlock()
	if gone {
		<-done
	}
}
