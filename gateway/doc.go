// Package gateway puts MQTT v5 enhanced authentication, re-authentication
// and attribute-based authorization in front of any MQTT broker (mosquitto,
// EMQX, VerneMQ, a mochi without hooks). It is the second user of
// [auth.Session], next to the in-process adapter adapters/mochi.
//
// # Model
//
// The gateway owns the client leg; the broker sees only authenticated
// clients, under their verified identity:
//
//   - It accepts a client (TLS with the configuration of
//     (*x509auth.Authenticator).ServerTLSConfig, or plain TCP), reads its
//     CONNECT and runs the CONNECT and AUTH exchanges through an
//     [auth.Session] (X.509, Kubernetes service account tokens, a custom
//     server, SCRAM: any [auth.Authenticator]). Refusals get the Session's
//     CONNACK code (the 3.1.1 return code for MQTT 3.1.1 clients).
//   - Only then it dials the broker (Config.Upstream, plain TCP or TLS,
//     optionally announcing the client's address with the PROXY protocol
//     v2) and sends a CONNECT whose User Name is the principal's user name
//     (as mosquitto's use_identity_as_username), with the client's client
//     identifier, clean start, keep alive, Will and properties, but never
//     its password nor the Authentication Method and Data.
//   - The broker's CONNACK is relayed (session present, Server Keep Alive,
//     Receive Maximum, Retain Available…) with the Session's Authentication
//     Method and Data added, the Maximum Packet Size capped to the
//     gateway's, and the gateway's own Topic Alias Maximum: the gateway
//     resolves the client's topic aliases (it must know the topic to
//     authorize it) and sends full topic names upstream, so the broker's
//     alias map for that direction stays empty. The client's Topic Alias
//     Maximum goes upstream unchanged, and broker-to-client packets are
//     relayed byte for byte (but for the case of a withheld delivery,
//     below), so the aliases the broker uses towards the client stay
//     consistent.
//   - Every PUBLISH is authorized with the current principal; a denied QoS
//     1 or 2 publish is answered with PUBACK or PUBREC 0x87 by the gateway
//     and never reaches the broker, a denied QoS 0 publish is dropped.
//     Every SUBSCRIBE filter is authorized; only the allowed ones are
//     forwarded and the broker's SUBACK is merged with the gateway's 0x87
//     codes in the client's order (when none is allowed, the gateway
//     answers the SUBACK itself). The Will topic is authorized at CONNECT
//     as a Publish: a Will the principal may not publish is refused with
//     CONNACK 0x87. Decisions come from auth.Session.Authorize: the
//     Manager's Authorizer, with a decision cache per connection when it
//     gives one (auth.SessionAuthorizer; abac policies do).
//   - Every delivery from the broker is authorized as a Subscribe of its
//     topic name (as adapters/mochi does), so a policy change or a
//     re-authentication that removes a subscription stops its messages at
//     once: a withheld QoS 1 or 2 message is acknowledged to the broker by
//     the gateway (PUBACK, or PUBREC then PUBCOMP), so the broker's
//     in-flight window never fills. The broker's topic aliases are tracked;
//     when the packet that set an alias was withheld, the next relayed one
//     carries the topic again.
//   - AUTH 0x19 (re-authentication) is answered by the Session and never
//     forwarded. When the credential expires, a re-check
//     ([auth.Manager.Recheck]) revokes access or re-authentication fails,
//     an MQTT v5 client gets DISCONNECT with the reason code and both legs
//     close. The broker's DISCONNECT (for example 0x8E, session taken over)
//     is relayed and both legs close.
//
// # Resources
//
// A connection has one goroutine before it is authenticated and two after
// (one per direction); Close waits for all of them. Each goroutine relays
// what it read to the other leg before it would block reading again
// (several packets that are already buffered go out in one writev, at most
// 64 packets or 64 KiB), so a leg is read only as fast as the other
// accepts writes: there is no unbounded buffer. Keep alive is the broker's:
// the client's PINGREQ goes upstream, and when the broker drops a silent
// client the client leg closes with the broker leg. Limits are the
// connection layer's (Config.Limits, an mqttconn.Limits, the same names
// and defaults as the mochi adapter): MaxPacketSize (1 MiB on both legs; a
// larger declared Remaining Length is refused before anything is
// allocated), ConnectTimeout (10 s for the TLS handshake and CONNECT),
// MaxPending (256 connections not yet judged, at most MaxPendingPerSource,
// 32, from one IPv4 address or IPv6 /64; more are closed at once) and
// WriteTimeout (10 s per write).
//
// # The connection layer
//
// CONNECT, the authentication exchange, refusals per protocol version,
// re-authentication, the Will and shutdown are the connection layer's
// (package mqttconn), shared with the mochi adapter; the conformance suite
// runs against the gateway in front of a real mosquitto. The Will goes to
// the broker in the upstream CONNECT (it publishes it); when the client's
// connection ends without a DISCONNECT the broker saw, the gateway asks
// the layer whether the Will may still be published (the principal and the
// policy in force then) and, if not, sends the broker a normal DISCONNECT
// first, which deletes it. Malformed packets (invalid UTF-8 or U+0000 in a
// string, a wildcard in a PUBLISH topic, a bad SUBSCRIBE filter) close the
// connection, after DISCONNECT 0x81 for MQTT 5; nothing is forwarded.
// [Gateway.Shutdown] sends MQTT 5 clients DISCONNECT 0x8B and
// [Gateway.Drain] 0x9C (Use another server) with a Server Reference.
//
// # Running it in front of mosquitto or EMQX
//
// The broker must trust only the gateway: whoever reaches the broker's
// listener directly can claim any identity. Bind that listener to loopback
// or a private network, or make it TLS and require the gateway's client
// certificate (Config.UpstreamTLS with Certificates).
//
// mosquitto 2.0 (which cannot run multi-step AUTH itself):
//
//	listener 1883 127.0.0.1
//	allow_anonymous true        # the gateway authenticated the client
//	acl_file /etc/mosquitto/acl # optional: rules keyed on the identities ("user thermostat")
//
// mosquitto 2.1 and EMQX read the PROXY protocol v2 when told to
// (mosquitto: enable_proxy_protocol 2 on the listener; EMQX: proxy_protocol
// = true on the TCP listener); set Config.ProxyProtocol so that their logs
// and rules see the client's address rather than the gateway's. EMQX: a TCP
// listener on a private address with no authenticator (or the built-in
// database with the identities as user names).
//
// # What the broker sees
//
// One MQTT connection per authenticated client, in the client's protocol
// version (3.1.1 or 5): User Name = the principal's user name (the
// certificate's identity, the token's subject, the SCRAM user), Client
// Identifier as the client sent it (an empty one is assigned by the broker
// and relayed in CONNACK), the client's clean start, keep alive, Will,
// session expiry, receive maximum and user properties. Never the password,
// the Authentication Method or the Authentication Data, and no AUTH packet.
// Denied PUBLISH packets and SUBSCRIBE filters never arrive.
//
// # Scaling out
//
// A gateway keeps no state beyond its connections: run stateless replicas
// behind a TCP load balancer in front of a broker cluster (EMQX, VerneMQ,
// HiveMQ). The cluster owns sessions and takeover: a client that reconnects
// through another replica resumes its persistent session, and the
// broker's DISCONNECT 0x8E to the old connection is relayed. Trust bundles,
// CRLs, SCRAM stores and ABAC policies are files that Kubernetes ConfigMaps
// and Secrets distribute to every replica; each replica watches them and
// re-checks its own connections ([auth.Manager.Recheck]). Nothing is
// shared between replicas.
//
// # MQTT 3.1.1
//
// 3.1.1 clients are served with 3.1.1 packets: refusals use the 3.1.1
// return codes ([auth.ReasonCode.ConnackV311]), a denied QoS 1 publish gets
// a plain PUBACK and a denied QoS 2 publish PUBREC then PUBCOMP from the
// gateway (3.1.1 has no failure code for them: the message is dropped), a
// denied subscription the SUBACK failure code 0x80, and an ending session
// closes the connection without a DISCONNECT. paho.golang's packets package
// decodes MQTT v5 only, so the gateway frames every packet itself and
// decodes the 3.1.1 forms of CONNECT, PUBLISH, SUBSCRIBE and SUBACK.
//
// # Use
//
//	m, _ := auth.NewManager(auth.Config{Authenticator: auth.Chain{x509Authn}, Authorizer: policy})
//	g, _ := gateway.New(gateway.Config{
//		Manager:  m,
//		Upstream: "127.0.0.1:1883", // mosquitto bound to loopback
//		TLS:      x509Authn.ServerTLSConfig(&tls.Config{Certificates: serverCerts}),
//	})
//	ln, _ := net.Listen("tcp", ":8883")
//	go g.Serve(ln)
//	defer g.Close()
package gateway
