package gateway_test

import (
	"strings"
	"testing"

	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
	"github.com/mqttauth/mqttauth/gateway"
)

// TestConformance runs the conformance suite against the gateway in front
// of a real mosquitto 2.0 broker, which knows nothing of the suite's
// methods: every enhanced-authentication exchange, re-authentication,
// expiry and revocation is the gateway's, and the Wills are mosquitto's
// to publish. Setup.TLS is the gateway's Config.TLS.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(tb testing.TB, s conformance.Setup) conformance.Broker {
		st := startStack(tb, s.Auth, "", func(gc *gateway.Config) { gc.Limits, gc.TLS = s.Limits, s.TLS })
		return conformance.Broker{
			Addr:     st.Addr,
			Manager:  st.Manager,
			Shutdown: st.Gateway.Shutdown,
			Drain:    st.Gateway.Drain,
			Stop:     func() { _ = st.Gateway.Close() },
			// mosquitto logs "New client connected from ... as ID (...)".
			Saw: func(id string) bool { return strings.Contains(st.Broker.Out.String(), " as "+id+" (") },
		}
	})
}
