package gateway_test

import (
	"crypto/tls"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
)

// tlsConnect is conformance.ConnectTLS: a TLS dial, an MQTT 5 CONNECT as
// id and its CONNACK, for the mTLS benchmarks.
func tlsConnect(addr string, cfg *tls.Config, id string) (tls.ConnectionState, *packets.Connack, error) {
	return conformance.ConnectTLS(addr, cfg, id)
}
