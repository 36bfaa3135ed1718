// Package auth is the core contract of mqttauth: authentication,
// authorization and the MQTT v5 enhanced-authentication state machine,
// independent of any broker.
//
// The model has four parts:
//
//   - An [Authenticator] judges the credentials of a [Request] and returns a
//     [Result]: NotRelevant, Pass (with a [Principal]), Fail (with a reason
//     code), Continue (a challenge of a multi-step exchange) or Unavailable.
//     A [Chain] of authenticators is an authenticator with
//     relevance-then-validity semantics.
//   - An [Authorizer] decides whether a Principal may Connect, Publish or
//     Subscribe, and says which rule decided. One that keeps per-connection
//     state, such as a decision cache, implements [SessionAuthorizer]: each
//     Session then gets its own Authorizer ([Session.Authorizer]), which
//     [Session.Authorize] asks and which is reset after re-authentication
//     and after each re-check. abac's *Policy and *Watcher give each session
//     an abac.Cache this way, so adapters decide Publish and Subscribe
//     through the Session and need no authorizer of their own.
//   - A [Session], one per connection, runs CONNECT, AUTH exchanges,
//     re-authentication and expiry, enforcing the MQTT v5 rules, and tells
//     the broker adapter what to send and when to close.
//   - A [Manager] creates sessions from a [Config] and keeps the live ones,
//     so that a new truststore, revocation list or policy can re-check them
//     all ([Manager.Recheck]) and disconnect exactly those that lost access.
//     Every reloadable source offers one change signal, [Notifier]; a
//     Manager built with [Config.Watches] subscribes to its sources itself
//     and re-checks on each change, so a reload never meets a Manager that
//     is not built yet.
//
// An adapter connects a broker to a Session: it passes CONNECT and AUTH
// packets in, sends the returned packets, closes when told, and gives the
// Session a [Conn] so it can end the connection on its own.
//
//	m, err := auth.NewManager(auth.Config{
//		Authenticator: auth.Chain{customAuthn, satAuthn, x509Authn},
//		Authorizer:    policy,
//	})
//	...
//	s := m.NewSession(conn) // on a new connection
//	resp := s.Connect(ctx, &auth.Request{ClientID: id, AuthMethod: method, AuthData: data})
//	send(resp.Packet)
//	if resp.Close { closeConn() }
//
// # Observing
//
// Config.Observer receives what the sessions do, for metrics: the outcome
// and latency of each method of the chain for each packet, each
// authorization decision of [Session.Authorize], connects, refusals,
// re-authentications, disconnects with their cause, the live count and
// re-check runs. Components take an Observer too (truststore, abac and
// scramauth reloads, customauth and satauth backend calls). Events are
// small values: reporting one allocates nothing. The metrics/prometheus
// module exports them.
//
// Config.Logger is the audit log: one record per authentication decision
// and per authorization deny (see [AuditConfig] for the keys, the levels
// and the sampling of allows), with the client certificate's serial and
// SHA-256 fingerprint where there is one, never a secret. The Connect
// authorization (at CONNECT, re-authentication and [Session.Update]) is
// observed and audited exactly as Publish and Subscribe are; a deny
// record names the method, the user name, the listener, the policy
// (Decision.Policy) and why ("no rule matched").
//
// # Choices where MQTT leaves room
//
// These are decisions, documented and tested, where the specification
// allows more than one behaviour:
//
//   - An Authentication Method that no authenticator supports is refused
//     with CONNACK 0x8C (Bad authentication method) [MQTT-4.12.0-1].
//   - A named method must be run by an authenticator that implements it:
//     a Pass whose principal names another method (X.509, from a client
//     certificate, when the client named SCRAM-SHA-256) is refused with
//     0x8C, in a CONNACK at CONNECT and in a DISCONNECT at
//     re-authentication, and the method is not echoed. Authenticators that
//     verify something other than the Authentication Data (x509auth) are
//     NotRelevant when a method is named, so a Chain moves on to one that
//     implements it. A principal with no method is taken to come from the
//     named one.
//   - An AUTH packet whose method differs from CONNECT's is answered with
//     0x8C, in a CONNACK before CONNACK and in a DISCONNECT after it: Table
//     2-6 lists 0x8C for DISCONNECT. Other protocol errors use 0x82, and an
//     AUTH reason code MQTT does not define uses 0x81 (Malformed Packet).
//   - When no authenticator is relevant but one was Unavailable, CONNECT is
//     refused with 0x88 (Server unavailable) rather than 0x87: the client
//     learns that retrying may help.
//   - A Fail code that a DISCONNECT cannot carry (0x86 is CONNACK only)
//     becomes 0x87 after CONNACK.
//   - A re-authentication that is Unavailable is answered with AUTH 0x18
//     carrying no data and a reason string. The client may start again with
//     AUTH 0x19, or answer the 0x18 with AUTH 0x18, which is taken as one
//     retry. If the retry is Unavailable too, the Session sends nothing:
//     clients whose auth handler must answer every AUTH 0x18 (paho.golang)
//     would otherwise ping-pong with the server while the backend is down.
//     The connection keeps its principal either way.
//   - A client that leaves a challenge unanswered for Config.ExchangeTimeout
//     gets CONNACK 0x87 before CONNACK, or DISCONNECT 0x87 during
//     re-authentication.
//   - Authentication Method and Data are bounded (Config.MaxMethodLength,
//     Config.MaxDataLength): too long a method is 0x8C, too much data 0x95
//     (Packet too large).
//   - A credential that has already expired at CONNECT, or at the end of a
//     re-authentication, is refused with 0x87.
//   - Authentication Data without an Authentication Method in CONNECT is a
//     Protocol Error (CONNACK 0x82).
package auth
