package mochi_test

import (
	"context"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
)

// TestConformance runs the adapter conformance suite against mochi with
// the hook on the hook's own listener, which applies the limits of the
// case.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(tb testing.TB, s conformance.Setup) conformance.Broker {
		m := newManager(tb, s.Auth)
		srv := mqtt.New(&mqtt.Options{Logger: quiet, InlineClient: true})
		h, err := mochi.Attach(srv, mochi.Config{
			Manager:        m,
			Logger:         quiet,
			MaxPacketSize:  s.Limits.MaxPacketSize,
			ConnectTimeout: s.Limits.ConnectTimeout,
			WriteTimeout:   s.Limits.WriteTimeout,
			MaxPending:     s.Limits.MaxPending,
			// Limits.MaxPendingPerSource has no counterpart in mochi.Config.
		})
		require.NoError(tb, err)
		ln := h.Listener("tcp", "127.0.0.1:0", nil)
		require.NoError(tb, srv.AddListener(ln))
		require.NoError(tb, srv.Serve())
		b := &broker{Server: srv}
		tb.Cleanup(func() {
			b.Stop()
			require.Eventually(tb, func() bool { return h.Len() == 0 }, 5*time.Second, 10*time.Millisecond, "hook still holds clients")
		})
		closeServer := func() {
			// mochi counts each connection in Listeners.ClientsWg from
			// EstablishConnection on and waits for it in Close: a
			// connection still being established (a silent one) when
			// Close runs is a WaitGroup Add racing Wait, inside mochi.
			// The hook's Pending count orders them (its atomic is
			// updated when EstablishConnection returns).
			require.Eventually(tb, func() bool { return h.Stats().Pending == 0 }, 5*time.Second, 10*time.Millisecond,
				"connections still pending before Close")
			b.Stop()
		}
		// mochi's Close is the only shutdown the hook has: it sends
		// DISCONNECT 0x8B to MQTT 5 clients and has no drain.
		shutdown := func(context.Context) error { closeServer(); return nil }
		return conformance.Broker{
			Addr:     ln.Address(),
			Manager:  m,
			Shutdown: shutdown,
			Drain:    func(ctx context.Context, _ string) error { return shutdown(ctx) },
			Stop:     closeServer,
		}
	})
}
