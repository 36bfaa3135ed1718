// Package customauth authenticates MQTT clients with a custom
// authentication server over HTTPS, as the Azure IoT Operations broker does:
// the custom authentication API 0.5.0 (POST <endpoint>?api-version=0.5.0).
//
// An [Authenticator] is an auth.Authenticator that forwards every
// credential the client presented and turns the server's answer into a
// Result:
//
//   - At CONNECT it sends {"type":"connect"} with the user name, the
//     password (base64), the client's certificate chain (PEM) and, when the
//     client named an Authentication Method, "enhancedAuthentication"
//     {method, data (base64)}. Each later AUTH packet (re-authentication)
//     sends {"type":"auth"} with enhancedAuthentication only.
//   - 200 is a Pass with the server's attributes (strings only) and its
//     optional expiry (RFC 3339), after which the session disconnects the
//     client. The principal's user name is the CONNECT user name, which the
//     server judged together with the password.
//   - 403 is a Fail with the server's reason code when it is a CONNACK
//     failure code, else 0x87; the server's message is logged.
//   - 422 is retried once with a version from supportedVersions that this
//     package speaks, which is then remembered.
//   - Anything else is Unavailable: transport and TLS errors, timeouts,
//     5xx, other 4xx, redirects (never followed: they could carry
//     credentials elsewhere), and a 200 whose body is not JSON with an
//     attributes object of strings, has a bad expiry, the wrong content
//     type or is larger than Config.MaxResponseBytes. Unavailable is never
//     a Pass.
//
// Every client is relevant to custom authentication. In an auth.Chain an
// Unavailable at CONNECT lets the next method try (the server being down
// counts as "not relevant", as in Azure IoT Operations); during
// re-authentication the Session answers AUTH 0x18 and the client stays
// connected on its old credential.
//
// # Resilience
//
// A circuit breaker stops calling a server that failed Config.Breaker.Failures
// times in a row, so that a reconnect storm against a dead server costs
// microseconds per client instead of a timeout each; after the cool-down
// (Config.Breaker.CoolDown, 10 s by default) one probe request decides
// whether it closes. A failure is a transport or TLS error, a timeout, a
// 5xx, or a malformed answer: a 200 that is not the API's JSON (garbage,
// no attributes object, the wrong content type), an unreadable 403 or 422
// body, an oversized body. A server answering 200 with garbage is as
// broken as a dead one and trips the breaker the same way (the clients
// refused by an unreadable 403 stay refused). A well-formed 403 and other
// 4xx statuses are answers and keep the breaker closed. Identical concurrent requests
// (same credentials) share one HTTP call. Config.MaxConcurrent bounds the
// requests in flight. An optional cache keeps Pass results until the
// credential's expiry or Config.Cache.TTL, whichever comes first; failures
// and errors are never cached, and entries are keyed by a keyed hash of the
// request, not by the credentials.
//
// # Transport
//
// HTTPS only: the server's certificate is verified against Config.RootCAs
// (or the system roots), the broker may present a client certificate
// (mutual TLS), extra headers are sent with every request, connections are
// reused, and each request is bounded by the caller's context and
// Config.Timeout. Plain HTTP needs Config.InsecureAllowHTTP.
// Passwords, tokens and Authentication Data never reach a log or an error.
//
// Package [github.com/mqttauth/mqttauth/customauth/authserver] is a
// reference server for tests, examples and a start of your own.
//
//	a, err := customauth.New(customauth.Config{
//		Endpoint: "https://auth.example.com/",
//		RootCAs:  serverCAs,
//		Headers:  http.Header{"X-Api-Key": {key}},
//	})
//	chain := auth.Chain{a, satAuthn, x509Authn}
package customauth
