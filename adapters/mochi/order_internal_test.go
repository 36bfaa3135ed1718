package mochi

import (
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// queued is a PUBLISH as mochi holds it in a session: payload names it.
func queued(created int64, id uint16) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "t", Payload: []byte{byte(id), byte(id >> 8)},
		Created: created, PacketID: id,
	}
}

type stamp struct {
	created int64
	id      uint16
}

func stamps(pks []packets.Packet) []stamp {
	out := make([]stamp, len(pks))
	for i, pk := range pks {
		out[i] = stamp{pk.Created, pk.PacketID}
	}
	return out
}

// TestPublishOrder: the session's packets in the order mochi queued them,
// from any starting order [MQTT-4.6.0-6].
func TestPublishOrder(t *testing.T) {
	const s = 1_800_000_000
	for _, tc := range []struct {
		name string
		want []stamp // in publish order
	}{
		{"one_second", []stamp{{s, 1}, {s, 2}, {s, 3}, {s, 4}, {s, 5}, {s, 6}, {s, 7}, {s, 8}, {s, 9}, {s, 10}}},
		{"ids_skip_held_ones", []stamp{{s, 3}, {s, 4}, {s, 9}, {s, 12}, {s, 13}}},
		// Client.NextPacketID wraps from 65535 to 1.
		{"ids_wrap_in_one_second", []stamp{{s, 65533}, {s, 65534}, {s, 65535}, {s, 1}, {s, 2}}},
		{"ids_wrap_across_seconds", []stamp{{s, 65534}, {s, 65535}, {s, 1}, {s + 1, 2}, {s + 1, 3}, {s + 2, 4}}},
		// uint16(Created), mochi's sort key, wraps here: 65535 then 0.
		{"created_wraps_uint16", []stamp{{65535, 7}, {65535, 8}, {65536, 9}, {65537, 10}}},
		{"older_session_ids_higher", []stamp{{s, 500}, {s, 501}, {s + 3, 1}, {s + 3, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				pks := make([]packets.Packet, len(tc.want))
				for i, st := range tc.want {
					pks[i] = queued(st.created, st.id)
				}
				rand.Shuffle(len(pks), func(i, j int) { pks[i], pks[j] = pks[j], pks[i] })
				publishOrder(pks)
				require.Equal(t, tc.want, stamps(pks))
			}
		})
	}
}

// TestResendPlan: what the plan writes at each PUBLISH mochi resends, when
// the session changes between the plan and the resend.
func TestResendPlan(t *testing.T) {
	const s = 1_800_000_000
	p1, p2, p3 := queued(s, 1), queued(s, 2), queued(s, 3)
	later4, later5 := queued(s+1, 4), queued(s+1, 5)
	for _, tc := range []struct {
		name    string
		mochi   []packets.Packet // what mochi resends, in its order
		drop    map[int]uint16   // before position i, the session drops this id
		written []uint16
	}{
		{name: "same_packets", mochi: []packets.Packet{p3, p1, p2}, written: []uint16{1, 2, 3}},
		// Queued after the plan was made: after the plan's, in publish order.
		{name: "queued_after_plan", mochi: []packets.Packet{p1, later5, later4, p2, p3}, written: []uint16{1, 2, 3, 4, 5}},
		{name: "dropped_before_resend", mochi: []packets.Packet{p3, p1}, drop: map[int]uint16{0: 2}, written: []uint16{1, 3}},
		// mochi still writes p2's turn: p3 is not lost, and the turn left
		// goes to the next packet queued after the plan.
		{name: "dropped_during_resend", mochi: []packets.Packet{p2, p3, p1}, drop: map[int]uint16{1: 2}, written: []uint16{1, 3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := &mqtt.Client{}
			cl.State.Inflight = mqtt.NewInflights()
			for _, pk := range []packets.Packet{p1, p2, p3} {
				cl.State.Inflight.Set(pk)
			}
			plan := planOf(cl.State.Inflight.GetAll(false))
			cl.State.Inflight.Set(later4)
			cl.State.Inflight.Set(later5)
			var written []uint16
			for i, pk := range tc.mochi {
				if id, ok := tc.drop[i]; ok {
					cl.State.Inflight.Delete(id)
				}
				pk.FixedHeader.Dup = true
				pk.ProtocolVersion = 5
				plan.next(cl, &pk)
				require.True(t, pk.FixedHeader.Dup)
				require.Equal(t, byte(5), pk.ProtocolVersion)
				require.Equal(t, []byte{byte(pk.PacketID), 0}, pk.Payload, "packet id and payload of different messages")
				written = append(written, pk.PacketID)
			}
			require.Equal(t, tc.written, written)
		})
	}
}

// TestResendPlanTwoCounters: packets queued after the plan was made, to the
// old connection (its counter goes on after the plan's last id) and to the
// new one (its counter starts again at 1 and skips the ids in use), come
// after the plan's, old connection's first, whatever mochi's order and
// however their ids compare.
func TestResendPlanTwoCounters(t *testing.T) {
	const s = 1_800_000_000
	for _, tc := range []struct {
		name             string
		plan, old, newer []uint16
	}{
		{"old_ids_high", []uint16{100, 101, 102}, []uint16{103, 104}, []uint16{1, 2, 3}},
		{"old_ids_low", []uint16{1, 2, 3}, []uint16{4, 5}, []uint16{6, 7}},
		{"old_ids_wrap", []uint16{65534, 65535, 1}, []uint16{2, 3}, []uint16{4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				cl := &mqtt.Client{}
				cl.State.Inflight = mqtt.NewInflights()
				var want []uint16
				for _, id := range tc.plan {
					cl.State.Inflight.Set(queued(s, id))
					want = append(want, id)
				}
				plan := planOf(cl.State.Inflight.GetAll(false))
				var mochiOrder []packets.Packet
				for _, id := range append(append([]uint16{}, tc.old...), tc.newer...) {
					cl.State.Inflight.Set(queued(s, id))
					want = append(want, id)
				}
				mochiOrder = cl.State.Inflight.GetAll(false) // one second: map order
				var written []uint16
				for _, pk := range mochiOrder {
					pk.FixedHeader.Dup = true
					plan.next(cl, &pk)
					written = append(written, pk.PacketID)
				}
				require.Equal(t, want, written)
			}
		})
	}
}

// TestResumptionGate: a live delivery held for a resuming connection goes
// on when mochi has resent the session (done), or when the connection
// closes, so that mochi's write loop ends with it; the count of
// resumptions in progress returns to zero.
func TestResumptionGate(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	old := &mqtt.Client{}
	old.State.Inflight = mqtt.NewInflights()
	base := resuming.Load()
	for _, tc := range []struct {
		name    string
		release func(r *resumption, cl *mqtt.Client)
	}{
		{"resent", func(r *resumption, _ *mqtt.Client) { r.done() }},
		{"closed", func(_ *resumption, cl *mqtt.Client) { cl.Stop(errors.New("gone")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, peer := net.Pipe()
			t.Cleanup(func() { _ = peer.Close() })
			cl := srv.NewClient(conn, "test", "resuming", false)
			r := newResumption(old)
			require.Equal(t, base+1, resuming.Load())
			released := make(chan struct{})
			go func() {
				r.wait(cl)
				close(released)
			}()
			select {
			case <-released:
				t.Fatal("a live delivery went out during the resumption")
			case <-time.After(3 * closePoll):
			}
			tc.release(r, cl)
			select {
			case <-released:
			case <-time.After(30 * time.Second): // liveness only
				t.Fatal("the live delivery is still held")
			}
			r.done()
			require.Equal(t, base, resuming.Load())
		})
	}
	var none *resumption
	none.done() // OnSessionEstablished of a connection that resumed nothing
}
