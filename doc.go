// Package mqttauth is MQTT authentication and authorization for Go brokers:
// X.509 client certificates with attribute mapping, Kubernetes service
// account tokens, a custom authentication server, attribute-based
// authorization, and the MQTT v5 enhanced-authentication state machine with
// multi-step exchanges, re-authentication and expiry.
//
// This package holds no code; the library lives in its subpackages:
//
//   - [github.com/mqttauth/mqttauth/auth]: the core contract. Authenticator,
//     Chain, Principal, Authorizer, and the per-connection Session that a
//     broker adapter drives.
//   - [github.com/mqttauth/mqttauth/auth/authtest]: test helpers (a fake
//     clock, a recording connection).
//   - [github.com/mqttauth/mqttauth/aioconfig]: the configuration, Azure IoT
//     Operations BrokerListener, BrokerAuthentication and
//     BrokerAuthorization resources built into a chain, a policy and TLS
//     per port.
//   - Credentials: [github.com/mqttauth/mqttauth/x509auth] (client
//     certificates), [github.com/mqttauth/mqttauth/truststore] (their CAs
//     and CRLs, reloaded), [github.com/mqttauth/mqttauth/revocation] (OCSP
//     and CRL distribution points), [github.com/mqttauth/mqttauth/satauth]
//     (Kubernetes service account tokens),
//     [github.com/mqttauth/mqttauth/jwtauth] (OpenID Connect / JWT),
//     [github.com/mqttauth/mqttauth/scramauth] (SCRAM),
//     [github.com/mqttauth/mqttauth/customauth] (a custom authentication
//     server), and [github.com/mqttauth/mqttauth/throttle] in front of them
//     (brute-force defence).
//   - [github.com/mqttauth/mqttauth/abac]: attribute-based authorization.
//   - [github.com/mqttauth/mqttauth/mqttconn]: the connection layer every
//     way into a broker shares (admission, CONNECT, the exchange, refusals
//     per protocol version, the Will, shutdown); the conformance suite in
//     auth/authtest/conformance is its specification.
//   - The brokers, on that layer: [github.com/mqttauth/mqttauth/gateway],
//     all of it in front of any MQTT broker, and the mochi-mqtt hook, the
//     module github.com/mqttauth/mqttauth/adapters/mochi.
//   - [github.com/mqttauth/mqttauth/admin]: health, readiness, metrics and
//     profiling over HTTP for operators; the Prometheus exporter is the
//     module github.com/mqttauth/mqttauth/metrics/prometheus.
//
// Under the connection layer, an adapter uses an [auth.Manager] once and an
// [auth.Session] per connection, hands it the CONNECT and AUTH packets, and
// sends what it returns:
//
//	m, err := auth.NewManager(auth.Config{
//		Authenticator: auth.Chain{first, second, third},
//		Authorizer:    policy,
//	})
//	if err != nil {
//		return err
//	}
//	s := m.NewSession(conn)
//	resp := s.Connect(ctx, &auth.Request{ClientID: id, AuthMethod: method, AuthData: data})
//
// See the README for the design, the configuration and the gateway.
package mqttauth
