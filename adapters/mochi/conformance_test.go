package mochi_test

import (
	"context"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
)

// TestConformance runs the conformance suite against mochi with the hook
// on the hook's own listener, with the limits and the TLS configuration of
// the case.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(tb testing.TB, s conformance.Setup) conformance.Broker {
		m := newManager(tb, s.Auth)
		srv := mqtt.New(&mqtt.Options{Logger: quiet, InlineClient: true})
		h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet, Limits: s.Limits})
		require.NoError(tb, err)
		ln := h.Listener("tcp", "127.0.0.1:0", s.TLS)
		require.NoError(tb, srv.AddListener(ln))
		require.NoError(tb, srv.Serve())
		// Shutdown, Drain and Stop each end the server; mochi's Close may
		// run once only.
		var once sync.Once
		end := func(f func() error) (err error) {
			once.Do(func() { err = f() })
			return err
		}
		stop := func() {
			// mochi counts each connection in Listeners.ClientsWg from
			// EstablishConnection on and waits for it in Close: a
			// connection still being established when Close runs is a
			// WaitGroup Add racing Wait inside mochi. The layer's Pending
			// count orders them.
			require.Eventually(tb, func() bool { return h.Stats().Pending == 0 }, 5*time.Second, 10*time.Millisecond,
				"connections still pending before Close")
			_ = end(func() error { return closeServer(tb, srv) })
		}
		tb.Cleanup(func() {
			stop()
			require.Eventually(tb, func() bool { return h.Len() == 0 && h.Stats().Clients == 0 && m.Len() == 0 }, 5*time.Second, 10*time.Millisecond,
				"hook, connection layer or manager still holds clients: %d, %+v, %d", h.Len(), h.Stats(), m.Len())
		})
		return conformance.Broker{
			Addr:     ln.Address(),
			Manager:  m,
			Shutdown: func(ctx context.Context) error { return end(func() error { return h.Shutdown(ctx) }) },
			Drain: func(ctx context.Context, ref string) error {
				return end(func() error { return h.Drain(ctx, ref) })
			},
			Stop: stop,
		}
	})
}
