package gateway_test

import (
	"testing"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
)

// TestConformance runs the adapter conformance suite against the gateway
// in front of a real mosquitto 2.0 broker, which knows nothing of the
// suite's methods: every enhanced-authentication exchange, re-authentication,
// expiry and revocation is the gateway's.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(tb testing.TB, cfg auth.Config) conformance.Broker {
		s := startStack(tb, cfg, "", nil)
		return conformance.Broker{Addr: s.Addr, Manager: s.Manager, Stop: func() {}}
	})
}
