package gateway_test

import (
	"testing"

	"github.com/stretchr/testify/require"

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

// TestConformanceRabbitMQ runs the suite for MQTT 5 clients through the
// gateway speaking MQTT 3.1.1 (Config.UpstreamProtocol) to RabbitMQ's
// rabbitmq_mqtt, which knows neither MQTT 5 nor AUTH packets. One node
// serves every case (it takes seconds to start); each case has its own
// gateway.
func TestConformanceRabbitMQ(t *testing.T) {
	r := startRabbitMQ(t)
	conformance.Run(t, func(tb testing.TB, cfg auth.Config) conformance.Broker {
		s := startGateway(tb, cfg, r.Addr, nil)
		return conformance.Broker{Addr: s.Addr, Manager: s.Manager, Stop: func() {}}
	})
	require.True(t, r.Saw(conformance.UserAlice), "the broker never saw the principal's identity")
}
