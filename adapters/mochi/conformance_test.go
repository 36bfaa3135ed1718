package mochi_test

import (
	"testing"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, func(tb testing.TB, cfg auth.Config) conformance.Broker {
		m := newManager(tb, cfg)
		b, _, addr := startBroker(tb, mochi.Config{Manager: m})
		return conformance.Broker{Addr: addr, Manager: m, Stop: b.Stop}
	})
}
