package mochi

import (
	"cmp"
	"slices"
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
// order (and the order wraps every 65,536 s).
//
// mochi writes every resent packet itself, on the connection's goroutine,
// each through OnPacketEncode, and it marks only those packets DUP: a live
// delivery is a copy with DUP 0 (packets/packets.go:191). So the hook
// reorders what is written, without touching mochi's state: in
// OnSessionEstablish it takes the PUBLISH packets of the session about to
// be resumed in publish order (the plan), and at each resent PUBLISH of the
// plan that mochi writes, it writes the next packet of the plan instead.
// The same packets, ids and count go out, in order; mochi's bookkeeping
// (the inflight map, quotas, acknowledgements by packet id) is unchanged.
//
// The plan is made before mochi registers the new connection
// (server.go:455, 458), not on its CONNACK: work done there widens the
// window in which mochi writes a live PUBLISH before the CONNACK
// (server.go:458-460, the connection's write loop).

// resendPlan is the publish order of a resumed session's PUBLISH packets,
// made in OnSessionEstablish and used by the resend that follows, on the
// same goroutine.
type resendPlan struct {
	queue   []packets.Packet // not yet written, in publish order
	created map[uint16]int64 // the plan's packet ids, with Created
	left    int              // resent packets of the plan mochi has yet to write
}

// resendInOrder is called by OnPacketEncode for every packet: it replaces
// each PUBLISH that mochi resends with the next one of the client's plan.
// Other packets pass untouched.
func (h *Hook) resendInOrder(cl *mqtt.Client, pk *packets.Packet) {
	if pk.FixedHeader.Dup && pk.FixedHeader.Type == packets.Publish {
		h.resendNext(cl, pk)
	}
}

func (h *Hook) resendNext(cl *mqtt.Client, pk *packets.Packet) {
	if c := h.lookup(cl); c != nil && c.resend != nil && c.resend.next(cl, pk) {
		c.resend = nil
	}
}

// newResendPlan returns the plan for the PUBLISH packets of old, the
// session a new connection is about to resume, or nil when there is
// nothing to order or mochi will discard the session (an MQTT 3 Clean
// Session 1 client's, server.go:565).
func newResendPlan(old *mqtt.Client) *resendPlan {
	if old.Properties.Clean && old.Properties.ProtocolVersion < 5 {
		return nil
	}
	return planOf(old.State.Inflight.GetAll(false))
}

// planOf returns the plan for the PUBLISH packets among pks, or nil when
// there are fewer than two.
func planOf(pks []packets.Packet) *resendPlan {
	queue := slices.DeleteFunc(pks, func(pk packets.Packet) bool {
		return pk.FixedHeader.Type != packets.Publish
	})
	if len(queue) < 2 {
		return nil
	}
	publishOrder(queue)
	p := &resendPlan{queue: queue, created: make(map[uint16]int64, len(queue)), left: len(queue)}
	for _, pk := range queue {
		p.created[pk.PacketID] = pk.Created
	}
	return p
}

// next replaces pk, a resent PUBLISH that mochi is writing, with the first
// packet of the plan still held in the session, prepared as mochi prepared
// pk (WritePacket, clients.go:526). A packet that is not in the plan (mochi
// queued it after the plan was made) passes untouched. It reports whether
// the plan is done.
func (p *resendPlan) next(cl *mqtt.Client, pk *packets.Packet) bool {
	if created, ok := p.created[pk.PacketID]; !ok || created != pk.Created {
		return false
	}
	p.left--
	for len(p.queue) > 0 {
		out := p.queue[0]
		p.queue = p.queue[1:]
		// Acknowledged on the old connection, or dropped by mochi's expiry
		// sweep, since the plan was made.
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
		break
	}
	return p.left == 0
}

// publishOrder sorts the PUBLISH packets of one session in the order mochi
// queued them: by Created (whole seconds), then, within one second, by
// packet id in the order mochi allocates them (Client.NextPacketID,
// clients.go:276: increasing, wrapping after the maximum to 1). The ids of
// one second form an arc of that cycle: it starts after the widest gap.
func publishOrder(pks []packets.Packet) {
	slices.SortFunc(pks, func(a, b packets.Packet) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.PacketID, b.PacketID))
	})
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
	const cycle = 65535 // mochi's ids run from 1 to 65535
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
