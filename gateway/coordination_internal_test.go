package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func testCoordinator(t *testing.T, cfg Coordination) *coordinator {
	t.Helper()
	g := &Gateway{cfg: Config{UpstreamProtocol: UpstreamV311}, log: slog.New(slog.DiscardHandler)}
	k, err := newCoordinator(g, cfg)
	require.NoError(t, err)
	return k
}

// The rule of brokerClosed: 0x8E when the client identifier was admitted
// again (a notice from another gateway, or this gateway's own later
// admission) after this connection's admission, no more than Window
// before the broker closed the leg, waiting up to Grace for it; else 0x80.
func TestTakenOverRule(t *testing.T) {
	const id = "twin"
	ctx := context.Background()
	// other is another gateway: what it publishes is what this one reads.
	other := testCoordinator(t, Coordination{})

	t.Run("notice_before_close", func(t *testing.T) {
		k := testCoordinator(t, Coordination{})
		seq := k.record(keyOf(id))
		k.received(other.payload(keyOf(id)))
		start := time.Now()
		require.True(t, k.takenOver(ctx, id, seq, time.Now()))
		require.Less(t, time.Since(start), k.cfg.Grace, "no wait when the notice is there")
	})

	t.Run("notice_after_close_within_grace", func(t *testing.T) {
		k := testCoordinator(t, Coordination{Grace: 5 * time.Second})
		seq := k.record(keyOf(id))
		closed := time.Now()
		go func() {
			time.Sleep(50 * time.Millisecond)
			k.received(other.payload(keyOf(id)))
		}()
		require.True(t, k.takenOver(ctx, id, seq, closed))
		require.Less(t, time.Since(closed), 4*time.Second, "woken by the notice, not by the end of Grace")
	})

	t.Run("notice_after_grace_0x80", func(t *testing.T) {
		k := testCoordinator(t, Coordination{Grace: 20 * time.Millisecond})
		seq := k.record(keyOf(id))
		require.False(t, k.takenOver(ctx, id, seq, time.Now()))
		k.received(other.payload(keyOf(id))) // too late for that close
	})

	t.Run("no_notice_0x80", func(t *testing.T) {
		k := testCoordinator(t, Coordination{Grace: 20 * time.Millisecond})
		seq := k.record(keyOf(id))
		k.received(other.payload(keyOf("another-client")))
		start := time.Now()
		require.False(t, k.takenOver(ctx, id, seq, time.Now()))
		require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond, "waited Grace")
	})

	t.Run("own_notice_ignored", func(t *testing.T) {
		k := testCoordinator(t, Coordination{Grace: 20 * time.Millisecond})
		seq := k.record(keyOf(id))
		k.received(k.payload(keyOf(id))) // the broker's echo of its own notice
		require.False(t, k.takenOver(ctx, id, seq, time.Now()))
	})

	t.Run("own_later_admission_counts", func(t *testing.T) {
		// A second connection with the same identifier through the same
		// gateway.
		k := testCoordinator(t, Coordination{Grace: 20 * time.Millisecond})
		first := k.record(keyOf(id))
		second := k.record(keyOf(id))
		require.True(t, k.takenOver(ctx, id, first, time.Now()))
		require.False(t, k.takenOver(ctx, id, second, time.Now()), "the second is not taken over by itself")
	})

	t.Run("notice_before_admission_ignored", func(t *testing.T) {
		// This connection took the session over from the other gateway's
		// client: that notice is older than this admission.
		k := testCoordinator(t, Coordination{Grace: 20 * time.Millisecond})
		k.received(other.payload(keyOf(id)))
		seq := k.record(keyOf(id))
		require.False(t, k.takenOver(ctx, id, seq, time.Now()))
	})

	t.Run("notice_older_than_window_ignored", func(t *testing.T) {
		k := testCoordinator(t, Coordination{Grace: 20 * time.Millisecond, Window: time.Minute})
		now := time.Now()
		k.now = func() time.Time { return now }
		seq := k.record(keyOf(id))
		k.received(other.payload(keyOf(id)))
		// The broker closes the leg an hour later: the admission it
		// announced did not take this session over (its CONNECT was
		// refused, or it was not the cause).
		require.False(t, k.takenOver(ctx, id, seq, now.Add(time.Hour)))
		require.True(t, k.takenOver(ctx, id, seq, now.Add(time.Minute)))
	})

	t.Run("malformed_notices_ignored", func(t *testing.T) {
		k := testCoordinator(t, Coordination{Grace: 20 * time.Millisecond})
		seq := k.record(keyOf(id))
		for _, p := range []string{"", "1", "2 abc 00", "1 abc zz", "1 abc 0011", "1 abc " + string(other.payload(keyOf(id))[2:])} {
			k.received([]byte(p))
		}
		require.False(t, k.takenOver(ctx, id, seq, time.Now()))
	})

	t.Run("ends_with_the_gateway", func(t *testing.T) {
		k := testCoordinator(t, Coordination{Grace: time.Hour})
		seq := k.record(keyOf(id))
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		require.False(t, k.takenOver(ctx, id, seq, time.Now()))
	})
}

// The notices name a hash of the client identifier, never the identifier.
func TestNoticePayload(t *testing.T) {
	k := testCoordinator(t, Coordination{})
	p := k.payload(keyOf("device-42"))
	require.NotContains(t, string(p), "device-42")
	gw, key, ok := parseNotice(p)
	require.True(t, ok)
	require.Equal(t, k.id, gw)
	require.Equal(t, keyOf("device-42"), key)
	require.NotEqual(t, keyOf("device-42"), keyOf("device-43"))
}

// Which topic names and filters reach the coordination topic, as the
// broker matches them.
func TestCoordinationReserved(t *testing.T) {
	for topic, want := range map[string]map[string]bool{
		"$mqttauth/takeover": {
			"$mqttauth/takeover": true, "$mqttauth/takeover/x": true, "$mqttauth/#": true,
			"$mqttauth/+": true, "$mqttauth/takeover/#": true, "$mqttauth/+/#": true, "$mqttauth/takeover/+": true,
			"$mqttauth": false, "$mqttauth/other": false, "$mqttauth/takeoverx": false, "$mqttauth/+/x/y": true,
			// A leading wildcard matches no '$' topic [MQTT-4.7.2-1].
			"#": false, "+/takeover": false, "+/#": false,
			"ok/x": false, "mqttauth/takeover": false, "": false,
		},
		"mqttauth/takeover": {
			"#": true, "+/takeover": true, "+/#": true, "mqttauth/#": true, "mqttauth/takeover": true,
			"+/+": true, "+": false, "mqttauth": false, "ok/#": false, "$mqttauth/takeover": false,
		},
		"/a": {
			"/a": true, "/#": true, "#": true, "+/a": true, "/b": false, "": false,
		},
	} {
		k := testCoordinator(t, Coordination{Topic: topic})
		for f, w := range want {
			require.Equal(t, w, k.reserved(f), "topic %q, filter %q", topic, f)
		}
	}
}

func TestCoordinationConfig(t *testing.T) {
	g := &Gateway{cfg: Config{UpstreamProtocol: UpstreamAuto}, log: slog.New(slog.DiscardHandler)}
	_, err := newCoordinator(g, Coordination{})
	require.ErrorIs(t, err, ErrCoordination, "an MQTT 5 broker says 0x8E itself")
	g.cfg.UpstreamProtocol = UpstreamV311
	for _, c := range []Coordination{{Topic: "a/#"}, {Topic: "a/+/b"}, {Grace: -1}, {Window: -1}, {NoticeTimeout: -1}} {
		_, err := newCoordinator(g, c)
		require.ErrorIs(t, err, ErrCoordination, "%+v", c)
	}
	k, err := newCoordinator(g, Coordination{})
	require.NoError(t, err)
	require.Equal(t, DefaultCoordinationTopic, k.cfg.Topic)
	require.Equal(t, DefaultTakeoverGrace, k.cfg.Grace)
	require.Regexp(t, "^mqttauth-gw-[0-9a-f]{16}$", k.clientID)
	k2, err := newCoordinator(g, Coordination{})
	require.NoError(t, err)
	require.NotEqual(t, k.clientID, k2.clientID, "every gateway's control connection has its own identifier")
}

// The notices a coordinator remembers shrink back: those older than
// Window go at the next prune (when the map has doubled since the last),
// and no more than maxNotices are kept at once.
func TestNoticesPruned(t *testing.T) {
	k := testCoordinator(t, Coordination{Window: time.Second})
	now := time.Unix(1_000_000, 0)
	k.now = func() time.Time { return now }
	for i := range 5000 {
		k.record(keyOf(fmt.Sprint("burst-", i)))
	}
	require.Len(t, k.notices, 5000, "within Window, all are kept")
	now = now.Add(2 * time.Second) // all of them are past Window
	// The last of these finds the map at the prune threshold.
	later := k.prune - len(k.notices) + 1
	for i := range later {
		k.record(keyOf(fmt.Sprint("later-", i)))
	}
	require.Len(t, k.notices, later, "the burst was pruned")
	for key := range k.notices {
		require.Equal(t, now, k.notices[key].at, "only notices within Window remain")
	}

	k.notices = make(map[noticeKey]notice)
	k.prune = maxNotices + 1 // no prune: the bound alone holds
	for i := range maxNotices + 10 {
		k.record(keyOf(fmt.Sprint("flood-", i)))
	}
	require.Len(t, k.notices, maxNotices, "at most maxNotices are kept")
}
