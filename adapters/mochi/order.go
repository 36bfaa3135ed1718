package mochi

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Resent messages in publish order (see the package documentation,
// "Resumed sessions").
//
// When a client resumes a session, mochi v2.7.9 resends the session's
// unacknowledged and queued PUBLISH packets (Client.ResendInflightMessages,
// clients.go:304) in the order of Inflight.GetAll (inflight.go:74), which
// ranges over a map and sorts on uint16(Created): Created is in whole
// seconds, so the messages of one second come out in the map's random
// order (and the order wraps every 65,536 s). And mochi registers the new
// connection (server.go:458) before it writes the CONNACK and resends
// (server.go:460, 468): a message delivered meanwhile is written at once
// by the connection's write loop (server.go:1101), before the CONNACK or
// among the resent messages.
//
// mochi writes every resent packet itself, on the connection's goroutine,
// each through OnPacketEncode, and it marks only those packets DUP: a live
// delivery is a copy with DUP 0 (packets/packets.go:191). So the hook
// reorders what is written, without touching mochi's state. In
// OnSessionEstablish, before mochi registers the new connection, it takes
// the PUBLISH packets of the session about to be resumed in publish order
// (the plan); at each PUBLISH that mochi resends, it writes the next packet
// of the plan instead, then those mochi queued after the plan was made.
// The same packets, ids and count go out, in order; mochi's bookkeeping
// (the inflight map, quotas, acknowledgements by packet id) is unchanged.
// Live deliveries to the connection wait in OnPacketEncode, on the write
// loop, until OnSessionEstablished: mochi has then written the CONNACK and
// resent the session.

// resumeTimeout bounds how long live deliveries to a resuming connection
// wait when mochi never finishes the resumption (the connection failed
// before OnSessionEstablished): they are then written as mochi would.
const resumeTimeout = 10 * time.Second

// closePoll is how often a held live delivery checks whether its
// connection has closed, so that mochi's write loop ends with it.
const closePoll = 20 * time.Millisecond

// resuming counts the resumptions in progress in the process, over all
// hooks: while it is zero, a live PUBLISH costs OnPacketEncode one atomic
// load and no lookup.
var resuming atomic.Int64

// resumption is the hook's state for a connection that resumes a session,
// from OnSessionEstablish to OnSessionEstablished.
type resumption struct {
	plan  *resendPlan   // read and written on the connection's goroutine only
	gate  chan struct{} // closed when the resend has ended, or after resumeTimeout
	once  sync.Once
	timer *time.Timer
}

// newResumption returns the state for a connection about to resume old's
// session, or nil when mochi will discard that session (an MQTT 3 Clean
// Session 1 client's, server.go:565).
func newResumption(old *mqtt.Client) *resumption {
	if old.Properties.Clean && old.Properties.ProtocolVersion < 5 {
		return nil
	}
	r := &resumption{plan: planOf(old.State.Inflight.GetAll(false)), gate: make(chan struct{})}
	resuming.Add(1)
	r.timer = time.AfterFunc(resumeTimeout, r.open)
	return r
}

// done is called by OnSessionEstablished: mochi has written the CONNACK
// and resent the session. It releases the live deliveries. r may be nil.
func (r *resumption) done() {
	if r == nil {
		return
	}
	r.timer.Stop()
	r.plan = nil
	r.open()
}

// wait returns when the resend has ended or cl has closed: mochi gives no
// channel for the latter, so it is polled, and only here.
func (r *resumption) wait(cl *mqtt.Client) {
	select {
	case <-r.gate:
		return
	default:
	}
	tick := time.NewTicker(closePoll)
	defer tick.Stop()
	for !cl.Closed() {
		select {
		case <-r.gate:
			return
		case <-tick.C:
		}
	}
}

func (r *resumption) open() {
	r.once.Do(func() {
		close(r.gate)
		resuming.Add(-1)
	})
}

// resendInOrder is called by OnPacketEncode for every packet. While the
// client resumes its session, it replaces each PUBLISH that mochi resends
// with the next one in publish order, and holds live PUBLISH packets
// until the resend has ended. Other packets pass untouched.
func (h *Hook) resendInOrder(cl *mqtt.Client, pk *packets.Packet) {
	if pk.FixedHeader.Dup || resuming.Load() != 0 {
		h.resume(cl, pk)
	}
}

func (h *Hook) resume(cl *mqtt.Client, pk *packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	c := h.lookup(cl)
	if c == nil {
		return
	}
	r := c.resume.Load()
	if r == nil {
		return
	}
	if !pk.FixedHeader.Dup {
		r.wait(cl) // a live delivery, on the write loop
		return
	}
	if r.plan != nil {
		r.plan.next(cl, pk)
	}
}

// resendPlan is the publish order of a resumed session's PUBLISH packets,
// made in OnSessionEstablish and used by the resend that follows, on the
// same goroutine.
type resendPlan struct {
	queue   []packets.Packet // the session's packets not yet written, in publish order
	created map[uint16]int64 // the ids of those packets, with Created
	last    uint16           // the packet id of the plan's last packet, 0 if none
	later   []packets.Packet // packets queued after the plan was made, not yet written
	started bool             // later has been taken
}

// planOf returns the plan for the PUBLISH packets among pks.
func planOf(pks []packets.Packet) *resendPlan {
	queue := slices.DeleteFunc(pks, func(pk packets.Packet) bool {
		return pk.FixedHeader.Type != packets.Publish
	})
	publishOrder(queue)
	p := &resendPlan{queue: queue, created: make(map[uint16]int64, len(queue))}
	for _, pk := range queue {
		p.created[pk.PacketID] = pk.Created
		p.last = pk.PacketID
	}
	return p
}

// after orders packets queued after the plan was made: by packet id, on
// the cycle of ids, from the plan's last. Those queued to the old
// connection before mochi copied its session have ids from its counter,
// just after the plan's; those queued to the new connection have ids from
// that connection's counter, which starts again at 1 and skips the ids in
// use, so they come after.
func (p *resendPlan) after(a, b packets.Packet) int {
	const cycle = 65535 // mochi's ids run from 1 to 65535
	da := (int(a.PacketID) - int(p.last) + cycle) % cycle
	db := (int(b.PacketID) - int(p.last) + cycle) % cycle
	return cmp.Compare(da, db)
}

// next replaces pk, a PUBLISH that mochi is resending, with the next packet
// in publish order that the session still holds: the plan's first, then
// those queued after the plan was made, taken from the session when the
// resend starts (mochi has then taken its own list) and ordered by after.
// Those queued after mochi took its list may not fit: mochi writes them
// live, once OnSessionEstablished has released them. The packet is
// prepared as mochi prepared pk (WritePacket, clients.go:526). When all
// have been written, pk goes out as it is.
func (p *resendPlan) next(cl *mqtt.Client, pk *packets.Packet) {
	if !p.started {
		p.started = true
		for _, pk := range cl.State.Inflight.GetAll(false) {
			if created, ok := p.created[pk.PacketID]; pk.FixedHeader.Type == packets.Publish && (!ok || created != pk.Created) {
				p.later = append(p.later, pk)
			}
		}
		slices.SortFunc(p.later, p.after)
	}
	for {
		var out packets.Packet
		switch {
		case len(p.queue) > 0:
			out, p.queue = p.queue[0], p.queue[1:]
		case len(p.later) > 0:
			out, p.later = p.later[0], p.later[1:]
		default:
			return
		}
		// Acknowledged on the old connection, or dropped by mochi's expiry
		// sweep, since it was planned.
		if held, ok := cl.State.Inflight.Get(out.PacketID); !ok || held.Created != out.Created {
			continue
		}
		out.FixedHeader.Dup = true // [MQTT-3.3.1-1]
		out.ProtocolVersion = pk.ProtocolVersion
		out.Mods = pk.Mods
		if out.Expiry > 0 { // as WritePacket does [MQTT-3.3.2-6]
			out.Properties.MessageExpiryInterval = uint32(max(out.Expiry-time.Now().Unix(), 1))
		}
		*pk = out
		return
	}
}

func byCreatedID(a, b packets.Packet) int {
	return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.PacketID, b.PacketID))
}

// publishOrder sorts the PUBLISH packets of one session in the order mochi
// queued them: by Created (whole seconds), then, within one second, by
// packet id in the order mochi allocates them (Client.NextPacketID,
// clients.go:276: increasing, wrapping after the maximum to 1). The ids of
// one second form an arc of that cycle: it starts after the widest gap.
func publishOrder(pks []packets.Packet) {
	slices.SortFunc(pks, byCreatedID)
	for i := 0; i < len(pks); {
		j := i + 1
		for j < len(pks) && pks[j].Created == pks[i].Created {
			j++
		}
		rotateAtWidestGap(pks[i:j])
		i = j
	}
}

// rotateAtWidestGap rotates run, sorted by packet id, so that it starts
// after the widest gap between consecutive ids on the cycle of ids.
func rotateAtWidestGap(run []packets.Packet) {
	n := len(run)
	if n < 2 {
		return
	}
	const cycle = 65535
	start := 0
	widest := int(run[0].PacketID) + cycle - int(run[n-1].PacketID) // from the last, wrapping, to the first
	for k := 1; k < n; k++ {
		if gap := int(run[k].PacketID) - int(run[k-1].PacketID); gap > widest {
			start, widest = k, gap
		}
	}
	if start > 0 {
		slices.Reverse(run[:start])
		slices.Reverse(run[start:])
		slices.Reverse(run)
	}
}
