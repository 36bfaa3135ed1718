package mochi

import (
	"crypto/tls"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttauth/mqttauth/x509auth"
)

// TLSListener returns a mochi TCP listener with id and address whose TLS
// configuration is a.ServerTLSConfig(base): it requires a client certificate
// and verifies it against the x509auth trust store as it is at each
// handshake, so a reloaded truststore applies to the next client without a
// restart. base supplies the server certificate. The handshake is complete
// when the hook sees the client, so the session's Request carries the
// connection state and x509auth authenticates the client.
func TLSListener(id, address string, a *x509auth.Authenticator, base *tls.Config) *listeners.TCP {
	return listeners.NewTCP(listeners.Config{
		Type:      listeners.TypeTCP,
		ID:        id,
		Address:   address,
		TLSConfig: a.ServerTLSConfig(base),
	})
}
