package gateway_test

import (
	"context"
	"testing"

	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
	"github.com/mqttauth/mqttauth/gateway"
)

// TestConformance runs the adapter conformance suite against the gateway
// in front of a real mosquitto 2.0 broker, which knows nothing of the
// suite's methods: every enhanced-authentication exchange, re-authentication,
// expiry and revocation is the gateway's.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(tb testing.TB, s conformance.Setup) conformance.Broker {
		st := startStack(tb, s.Auth, "", func(gc *gateway.Config) {
			gc.MaxPacketSize = int(s.Limits.MaxPacketSize)
			gc.ConnectTimeout = s.Limits.ConnectTimeout
			gc.WriteTimeout = s.Limits.WriteTimeout
			gc.MaxPending = s.Limits.MaxPending
			// Limits.MaxPendingPerSource has no counterpart in gateway.Config.
		})
		// Close is the only shutdown the gateway has: no DISCONNECT, no
		// drain.
		stop := func(context.Context) error { return st.Gateway.Close() }
		return conformance.Broker{
			Addr:     st.Addr,
			Manager:  st.Manager,
			Shutdown: stop,
			Drain:    func(ctx context.Context, _ string) error { return stop(ctx) },
			Stop:     func() { _ = st.Gateway.Close() },
		}
	})
}
